"""What both embedders share: devices and precision, token-budget batches, the OOM-safe batch
loop and the HDF5 output format."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .errors import GpuOutOfMemoryError, InputError, VirNucProError

log = logging.getLogger("virnucpro")

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def add_embedding_arguments(parser, default_batch_tokens: int) -> None:
    """The options that embed_dnabert.py and embed_esm.py share."""
    parser.add_argument("--out", required=True, help="output HDF5 file (datasets 'ids' and 'embeddings')")
    parser.add_argument("--device", default="auto", help="auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS,
        help="auto = bf16 on CUDA GPUs of compute capability >= 8, else fp32; fp32 reproduces the original",
    )
    parser.add_argument(
        "--batch-tokens", type=int, default=default_batch_tokens,
        help="token budget per batch (padded tokens); halved automatically on CUDA out-of-memory",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar on stderr")


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


def state_dict_problems(state: Mapping[str, torch.Tensor], model: torch.nn.Module, shapes_from: str) -> list[str]:
    """What keeps ``state`` from loading into ``model``: missing and unexpected weights, and every
    shape that differs from the one ``shapes_from`` (the model's configuration) implies."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = []
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing:
        problems.append(f"missing weights {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected weights {', '.join(unexpected)}")
    for name, shape in expected.items():
        if name in state and tuple(state[name].shape) != shape:
            problems.append(f"{name} has shape {tuple(state[name].shape)}, {shapes_from} implies {shape}")
    return problems


def peak_gpu_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


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


def embed_in_batches(
    batches: list[list[int]],
    embed_batch: Callable[[list[int]], torch.Tensor],
    count: int,
    dim: int,
    progress: bool,
    description: str,
    source: str = "input",
) -> np.ndarray:
    """Run ``embed_batch`` over every batch and place its rows at the batch's indices.

    On CUDA out-of-memory a batch is split in half and retried; a single sequence that still
    does not fit is a GpuOutOfMemoryError naming ``source`` (the input file).
    """
    result = np.empty((count, dim), dtype=np.float32)
    pending = list(reversed(batches))
    with tqdm(total=count, desc=description, unit="seq", disable=not progress, file=None, mininterval=2.0) as bar:
        while pending:
            batch = pending.pop()
            try:
                rows = embed_batch(batch)
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
            result[batch] = rows.float().cpu().numpy()
            bar.update(len(batch))
    return result


@dataclass(frozen=True)
class Embeddings:
    ids: list[str]
    vectors: np.ndarray
    attributes: Mapping[str, object]


def write_embeddings(path: str | Path, ids: Sequence[str], vectors: np.ndarray, attributes: Mapping[str, object]) -> None:
    """Write ``ids`` and float32 ``vectors`` (N x D) to an HDF5 file, atomically and reproducibly."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but embeddings of shape {vectors.shape}")
    with atomic_path(path) as temporary:
        # track_order and fixed (absent) timestamps keep the bytes identical between runs
        with h5py.File(temporary, "w", track_order=True) as handle:
            handle.create_dataset("ids", data=np.array(list(ids), dtype=object), dtype=h5py.string_dtype("utf-8"), track_times=False)
            handle.create_dataset("embeddings", data=vectors, track_times=False)
            for key, value in attributes.items():
                handle.attrs[key] = value


def read_embeddings(path: str | Path) -> Embeddings:
    try:
        with h5py.File(path, "r") as handle:
            ids = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in handle["ids"][()]]
            vectors = handle["embeddings"][()].astype(np.float32, copy=False)
            attributes = dict(handle.attrs)
    except (OSError, KeyError) as error:
        raise InputError(path, f"not an embeddings HDF5 file with 'ids' and 'embeddings' ({error})") from None
    if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
        raise InputError(path, f"{len(ids)} ids do not match embeddings of shape {vectors.shape}")
    return Embeddings(ids, vectors, attributes)


def iter_chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
