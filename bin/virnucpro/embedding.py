"""The embedding stage, one skeleton for both models (embed_dnabert.py, embed_esm.py).

A model plugs in as two adapters, in the manner of a Hugging Face feature-extraction pipeline:
a ``Checkpoint`` (located, its configuration read: all an empty shard needs) that ``load``s an
``Embedder`` (the built model: ``preprocess`` turns sequences into token ids, ``_forward`` turns
a batch of them into one pooled float32 vector each). ``run`` does the rest the same way for
both: check the FASTA, time the load, the tokenisation and the forward passes, batch by token
budget (halving a batch on CUDA out-of-memory), write the HDF5 file and the metrics.

Checkpoints are read as tensors and settings only (``model_files``): no code from a file runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from . import cli, contracts
from .errors import GpuOutOfMemoryError, InputError, VirNucProError
from .fasta import read_fasta
from .metrics import write_metrics

log = logging.getLogger("virnucpro")

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


# --- the two adapters ------------------------------------------------------------------------


class Embedder(ABC):
    """A built model as ``run`` drives it: ``preprocess`` once, then ``_forward`` per batch."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    @property
    @abstractmethod
    def dim(self) -> int:
        """The size of one embedding."""

    @abstractmethod
    def preprocess(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each sequence (checked by the model's ``sequence_problem`` beforehand)."""

    @abstractmethod
    def tokens(self, token_ids: np.ndarray) -> int:
        """How many positions the model sees for one sequence: what batches are budgeted by."""

    @abstractmethod
    def _forward(self, batch: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
        """The model on one batch, pooled: float32 [len(batch), dim], padding left out."""

    def compile(self, device: torch.device) -> float | None:
        """Compile the model for ``device`` and return the seconds that took; None: not compiled."""
        return None


class Checkpoint(ABC):
    """A located checkpoint whose configuration is read; its weights are read by ``load``."""

    role: ClassVar[str]  # contracts.DNABERT or contracts.ESM
    pooling: ClassVar[str]  # how an embedding is made from the layer's token states, in words
    name: str  # the output's 'model' attribute: not where the checkpoint happens to be staged
    layer: int  # the representation layer (0: the token embeddings; the number of layers: the last)
    dim: int  # the size of one embedding

    @abstractmethod
    def load(self, device: torch.device, dtype: torch.dtype) -> Embedder:
        """Read the weights, check them against the configuration and build the model."""


# --- the skeleton ----------------------------------------------------------------------------


def make_parser(description: str, fasta_help: str, default_batch_tokens: int) -> argparse.ArgumentParser:
    """The options both embedders take; each script adds --model and its own."""
    parser = cli.make_parser(description)
    parser.add_argument("--fasta", required=True, help=fasta_help)
    parser.add_argument("--out", required=True, help="output HDF5 file (datasets 'ids' and 'embeddings')")
    parser.add_argument("--device", default="auto", help="auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS,
        help="auto = bf16 on CUDA GPUs of compute capability >= 8, else fp32; fp32 reproduces the original "
        "(bf16 embeddings are stored as float16, fp32 ones as float32)",
    )
    parser.add_argument(
        "--batch-tokens", type=int, default=default_batch_tokens,
        help="token budget per batch (padded tokens); halved automatically on CUDA out-of-memory",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar on stderr")
    parser.add_argument("--metrics", help="write timings and counts to this JSON file")
    return parser


def run(args: argparse.Namespace, sequence_problem: Callable[[str], str | None], open_checkpoint: Callable[[], Checkpoint]) -> None:
    """Embed every record of ``args.fasta`` and write ``args.out`` (and ``args.metrics``).

    ``sequence_problem`` says why a sequence is not one the model embeds (checked before any
    model is read); ``open_checkpoint`` locates (downloads) the checkpoint and reads its
    configuration. Timings: load_seconds from locating to the built model, tokenize_seconds,
    compile_seconds (None when not compiled) and seconds, the forward passes alone.
    """
    records = list(read_fasta(args.fasta))
    for record in records:
        problem = sequence_problem(record.sequence)
        if problem is not None:
            raise InputError(args.fasta, problem, record.id)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    started = time.perf_counter()
    checkpoint = open_checkpoint()
    if records:
        sequences = [record.sequence for record in records]
        vectors, tokens, timings = _embed(checkpoint, sequences, args, device, dtype, started)
    else:  # an empty shard needs only the embedding size, not the model
        vectors, tokens = np.empty((0, checkpoint.dim), dtype=np.float32), 0
        timings = {"load_seconds": time.perf_counter() - started, "tokenize_seconds": 0.0, "compile_seconds": None, "seconds": 0.0}
    log.info("embedded %d sequences (%d tokens) in %.1f s on %s", len(records), tokens, timings["seconds"], device)

    precision = PRECISION_NAMES[dtype]
    attributes = {"model_role": checkpoint.role, "model": checkpoint.name, "layer": checkpoint.layer,
                  "pooling": checkpoint.pooling, "precision": precision}
    contracts.write_embeddings(args.out, [record.id for record in records], vectors, attributes)
    if args.metrics:
        write_metrics(
            args.metrics, stage=f"embed_{checkpoint.role}", name=Path(args.fasta).stem, items=len(records), tokens=tokens,
            device=str(device), precision=precision, peak_gpu_memory_bytes=peak_gpu_memory(device),
            threads=torch.get_num_threads(), **timings,
        )


def _embed(
    checkpoint: Checkpoint, sequences: list[str], args: argparse.Namespace, device: torch.device, dtype: torch.dtype, started: float
) -> tuple[np.ndarray, int, dict[str, float | None]]:
    """Load, tokenize, compile and embed: the vectors, the token count and each step's seconds
    (the load's counted from ``started``, before the checkpoint was located)."""
    embedder = checkpoint.load(device, dtype)
    loaded = time.perf_counter()
    token_ids = embedder.preprocess(sequences)
    tokenized = time.perf_counter()
    compile_seconds = embedder.compile(device)
    forward = time.perf_counter()
    label = contracts.ROLE_NAMES[checkpoint.role]
    storage = contracts.storage_dtype(PRECISION_NAMES[dtype])  # held as stored: float16 halves the memory too
    vectors = embed_token_ids(embedder, token_ids, device, args.batch_tokens, not args.no_progress, args.fasta, label, storage)
    finished = time.perf_counter()
    timings = {"load_seconds": loaded - started, "tokenize_seconds": tokenized - loaded,
               "compile_seconds": compile_seconds, "seconds": finished - forward}
    return vectors, sum(embedder.tokens(ids) for ids in token_ids), timings


# --- devices and precision -------------------------------------------------------------------


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise VirNucProError(f"--device {spec!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VirNucProError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise VirNucProError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    if device.type not in ("cpu", "cuda"):
        raise VirNucProError(f"--device {spec}: only cpu and cuda devices are supported")
    return device


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return torch.float32


def peak_gpu_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


# --- reading and checking weights ------------------------------------------------------------


def tensor_dict(value: object, path: Path, what: str) -> dict[str, torch.Tensor]:
    """``value``, checked to be a dict of tensors by name: a file holding anything else there (a
    nested or self-referencing structure, numbers) is refused here rather than failing later."""
    if not isinstance(value, dict):
        raise VirNucProError(f"{path}: {what} is of type {type(value).__name__}, not a dict of tensors")
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise VirNucProError(f"{path}: {what} holds a value of type {type(tensor).__name__} under {repr(key)[:80]}, not a tensor")
    return value


def layer_count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many distinct layers the ``pattern`` (capturing the layer number) finds in the keys:
    bounded by the file's size, unlike a count a configuration claims."""
    expression = re.compile(pattern)
    return len({match[1] for match in map(expression.match, state) if match})


def check_sizes(path: Path, source: str, claims: Sequence[tuple[str, int, int | None]]) -> None:
    """Refuse a configuration whose sizes the weights do not have, before any module is built
    (a claim of 200,000 layers would otherwise build for minutes). ``claims`` holds (setting,
    value in ``source``, value the weights imply or None where they do not say)."""
    problems = [f"{setting} {claimed}, the weights have {found}" for setting, claimed, found in claims if found is not None and claimed != found]
    if problems:
        raise VirNucProError(f"{path}: {source} does not match the weights: {source} says {'; '.join(problems)}")


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """Build modules on the meta device with their weights left uninitialised, as transformers'
    no_init_weights: the checkpoint provides every tensor. Skipping normal_ (the embeddings'
    initialiser) matters: torch runs it on meta in Python, whose first use imports torch._dynamo,
    one to three seconds per process."""
    normal = torch.nn.init.normal_
    torch.nn.init.normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        with torch.device("meta"):
            yield
    finally:
        torch.nn.init.normal_ = normal


def state_dict_problems(state: Mapping[str, torch.Tensor], model: torch.nn.Module, shapes_from: str) -> list[str]:
    """What keeps ``state`` from loading into ``model``: missing and unexpected weights, every
    shape that differs from the one ``shapes_from`` (the model's configuration) implies, and
    tensors that are not floating point where the model's are."""
    expected = model.state_dict()
    problems = []
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing:
        problems.append(f"missing weights {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected weights {', '.join(unexpected)}")
    for name, tensor in expected.items():
        if name not in state:
            continue
        if tuple(state[name].shape) != tuple(tensor.shape):
            problems.append(f"{name} has shape {tuple(state[name].shape)}, {shapes_from} implies {tuple(tensor.shape)}")
        elif tensor.is_floating_point() and not state[name].is_floating_point():
            problems.append(f"{name} is {state[name].dtype}, not floating point")
    return problems


def refuse_non_finite(module: torch.nn.Module, path: Path, dtype: torch.dtype) -> None:
    """Refuse weights that hold NaN or Inf (as stored, or after the cast to ``dtype``): they
    would make every embedding NaN. One device synchronisation for all tensors."""
    named = list(module.state_dict().items())
    if not named:
        return
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in named]).cpu()
    if not finite.all():
        name = named[int(torch.nonzero(~finite)[0, 0])][0]
        raise VirNucProError(f"{path}: the weight {name} holds NaN or Inf ({PRECISION_NAMES.get(dtype, dtype)}): not a usable checkpoint")


# --- batches ---------------------------------------------------------------------------------


def token_budget_batches(token_counts: Sequence[int], budget: int) -> list[list[int]]:
    """Group indices into batches whose padded size (count x longest) stays within ``budget``.

    Indices are taken longest first so that each batch holds sequences of similar length; a
    sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(token_counts)), key=lambda i: (-token_counts[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = token_counts[index]
        if current and max(longest, length) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches


def padded_batch(
    token_ids: Sequence[np.ndarray], pad_id: int, device: torch.device, bos_id: int | None = None, eos_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded to the longest row (framed by ``bos_id``/``eos_id`` when given), and the
    length of each row without them, on ``device`` (through pinned memory on CUDA)."""
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    start = 0 if bos_id is None else 1
    tokens = np.full((len(token_ids), lengths.max() + start + (eos_id is not None)), pad_id, dtype=np.int64)
    if bos_id is not None:
        tokens[:, 0] = bos_id
    for row, ids in zip(tokens, token_ids):
        row[start : start + len(ids)] = ids
        if eos_id is not None:
            row[start + len(ids)] = eos_id
    tensors = (torch.from_numpy(tokens), torch.from_numpy(lengths))
    if device.type == "cuda":
        return tuple(tensor.pin_memory().to(device, non_blocking=True) for tensor in tensors)
    return tensors


@torch.inference_mode()
def embed_token_ids(
    embedder: Embedder,
    token_ids: Sequence[np.ndarray],
    device: torch.device,
    batch_tokens: int,
    progress: bool = False,
    source: str | Path = "input",
    label: str = "embedding",
    dtype: np.dtype = np.dtype(np.float32),
) -> np.ndarray:
    """The embedding of each tokenized sequence, [N, dim] of ``dtype`` in input order, computed in
    length-sorted batches of at most ``batch_tokens`` padded tokens.

    On CUDA out-of-memory a batch is split in half and retried; a single sequence that still
    does not fit is a GpuOutOfMemoryError naming ``source`` (the input file).
    """
    batches = token_budget_batches([embedder.tokens(ids) for ids in token_ids], batch_tokens)
    result = np.empty((len(token_ids), embedder.dim), dtype=dtype)
    to = getattr(torch, dtype.name)
    pending = list(reversed(batches))
    with tqdm(total=len(token_ids), desc=label, unit="seq", disable=not progress, mininterval=2.0) as bar:
        while pending:
            batch = pending.pop()
            try:
                rows = embedder._forward([token_ids[i] for i in batch], device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if len(batch) == 1:
                    raise GpuOutOfMemoryError(
                        f"{source}: CUDA out of memory on a single sequence even alone in its batch; "
                        "free GPU memory, use a larger GPU, or lower --batch-tokens"
                    ) from None
                half = len(batch) // 2
                log.warning("CUDA out of memory on a batch of %d; retrying as two of %d and %d", len(batch), half, len(batch) - half)
                pending.extend([batch[half:], batch[:half]])
                continue
            result[batch] = rows.to(to).cpu().numpy()
            bar.update(len(batch))
    return result


def iter_chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
