"""ESM-2 checkpoints, the protein alphabet, and batched per-protein embeddings.

A checkpoint is a fair-esm `.pt` file (a dict with `cfg` and the `model` state dict) or a
fair-esm model name, found in (or fetched into) fair-esm's torch.hub cache. Checkpoints are
read with `torch.load(weights_only=True)`, allowing only `argparse.Namespace` (the type of
fair-esm's `cfg`) besides tensors and containers: no code from the checkpoint runs.

The embedding is the original's (VirNucPro `extract_esm`): the whole protein goes through the
model (the original's batch converter does not truncate), and the representation of the chosen
layer is averaged over residues 1..min(1024, length), BOS and EOS excluded.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import time
import urllib.error
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import embedding
from .embedding import embed_in_batches, state_dict_problems, token_budget_batches
from .errors import InputError, VirNucProError
from .fasta import FastaRecord
from .modeling_esm2 import ESM2Config, ESM2Model

log = logging.getLogger("virnucpro")

DEFAULT_MODEL = "esm2_t36_3B_UR50D"
MODEL_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
MODEL_NAME = re.compile(r"esm2_t\d+_\w+")

# fair-esm's "ESM-1b" alphabet, which ESM-2 uses: specials, the 27 sequence letters, a filler, <mask>
ALPHABET = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)  # fmt: skip
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2
RESIDUE_LETTERS = frozenset(token for token in ALPHABET if len(token) == 1)
# The original pools residues 1..min(truncation_seq_length, length) with truncation_seq_length=1024.
MAX_POOLED_RESIDUES = 1024
# ids of the residue letters by byte value; every other byte maps to -1
_TOKEN_OF_BYTE = np.full(256, -1, dtype=np.int16)
for _index, _token in enumerate(ALPHABET):
    if len(_token) == 1:
        _TOKEN_OF_BYTE[ord(_token)] = _index

# Keys of fair-esm's state dict that embeddings do not use: the masked-LM and contact heads, and
# the rotary frequencies, which ESM2Model computes.
IGNORED_KEY_PATTERN = re.compile(r"^(lm_head|contact_head)\.|\.rot_emb\.inv_freq$")
# fair-esm's upgrade_state_dict removes these prefixes (fairseq's names) before loading.
KEY_PREFIX_PATTERN = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")
REQUIRED_KEYS = ("embed_tokens.weight", "emb_layer_norm_after.weight", "layers.0.self_attn.rot_emb.inv_freq")


@dataclass(frozen=True)
class Checkpoint:
    """An opened checkpoint: its sizes, the layer to represent, and its memory-mapped tensors."""

    path: Path
    name: str  # recorded in outputs: the file's stem, so it does not depend on where it was staged
    config: ESM2Config
    layer: int
    state: dict[str, torch.Tensor]


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_path(model: str) -> Path:
    """The local checkpoint file for ``model``: a path to a `.pt` file, or a fair-esm model name
    looked up in (and, when missing, downloaded into) `$TORCH_HOME/hub/checkpoints/`."""
    if model.endswith(".pt") or Path(model).exists():
        path = Path(model)
        if not path.is_file():
            raise VirNucProError(f"--model {model}: no such checkpoint file")
        return path
    if not MODEL_NAME.fullmatch(model):
        raise VirNucProError(f"--model {model!r}: neither a .pt checkpoint file nor an ESM-2 model name such as {DEFAULT_MODEL}")
    path = Path(torch.hub.get_dir()) / "checkpoints" / f"{model}.pt"
    if path.is_file():
        return path
    url = MODEL_URL.format(name=model)
    log.info("downloading %s to %s", url, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)  # writes a temporary file, then renames
    except (urllib.error.URLError, OSError) as error:
        raise VirNucProError(
            f"--model {model}: not in the torch hub cache ({path}) and the download from {url} failed ({error}); "
            "stage the checkpoint there (or set TORCH_HOME) or pass the path of a local .pt file"
        ) from None
    return path


def _safe_load(path: Path, mmap: bool) -> Any:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, its tensors memory-mapped from the file (nothing is copied yet);
    a file in torch's legacy (pre-zip) format cannot be memory-mapped and is read whole."""
    try:
        try:
            checkpoint = _safe_load(path, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            checkpoint = _safe_load(path, mmap=False)
    except pickle.UnpicklingError as error:
        reason = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0].split(" was not an allowed")[0]
        raise VirNucProError(f"{path}: refused to load: it holds objects other than tensors and settings ({reason})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise VirNucProError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise VirNucProError(f"{path}: not a fair-esm checkpoint (expected a dict with 'cfg' and 'model')")
    return checkpoint


def esm2_config(checkpoint: dict[str, Any], path: Path) -> ESM2Config:
    """Model sizes from the checkpoint's `cfg['model']` (fairseq's encoder_* settings)."""
    settings = checkpoint.get("cfg")
    if isinstance(settings, dict):
        settings = settings.get("model")
    if settings is None:
        raise VirNucProError(f"{path}: has no 'cfg' model settings: not an ESM-2 checkpoint (ESM-1 models are not supported)")
    values = vars(settings) if isinstance(settings, argparse.Namespace) else settings
    try:
        return ESM2Config(
            num_layers=int(values["encoder_layers"]),
            embed_dim=int(values["encoder_embed_dim"]),
            attention_heads=int(values["encoder_attention_heads"]),
            token_dropout=bool(values.get("token_dropout", True)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise VirNucProError(f"{path}: 'cfg' lacks the ESM-2 model sizes ({error})") from None


def esm2_state_dict(checkpoint: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """fair-esm's parameter names (fairseq prefixes removed), without the unused heads."""
    state = {KEY_PREFIX_PATTERN.sub("", key): tensor for key, tensor in checkpoint["model"].items()}
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise VirNucProError(f"{path}: not an ESM-2 checkpoint (no {', '.join(missing)})")
    return {key: tensor for key, tensor in state.items() if not IGNORED_KEY_PATTERN.search(key)}


def open_checkpoint(model: str, layer: int | None) -> Checkpoint:
    """Locate and open ``model`` and check that it is ESM-2 with a layer ``layer`` (None: the
    last). Cheap: the tensors are memory-mapped, not read."""
    path = checkpoint_path(model)
    checkpoint = read_checkpoint(path)
    config = esm2_config(checkpoint, path)
    layer = config.num_layers if layer is None else layer
    if not 0 <= layer <= config.num_layers:
        raise VirNucProError(f"--layer {layer}: {path.name} has layers 0..{config.num_layers}")
    return Checkpoint(path, path.stem, config, layer, esm2_state_dict(checkpoint, path))


def load_model(checkpoint: Checkpoint, device: torch.device, dtype: torch.dtype) -> ESM2Model:
    """ESM-2 up to the checkpoint's layer on ``device``, linear weights in ``dtype``, eval mode.

    The memory-mapped tensors are assigned to a model built on the meta device, so the weights
    are read from the file once, straight into their final place.
    """
    with torch.device("meta"):
        model = ESM2Model(checkpoint.config, output_layer=checkpoint.layer)
    expected = model.state_dict()
    state = {
        key: tensor
        for key, tensor in checkpoint.state.items()
        if key in expected or not _beyond_layer(key, checkpoint.layer)
    }
    problems = state_dict_problems(state, model, "cfg")
    if problems:
        raise VirNucProError(f"{checkpoint.path}: weights do not match an ESM-2 model of its cfg: {'; '.join(problems[:5])}")
    model.load_state_dict(state, assign=True)
    model = model.to(device=device, dtype=torch.float32).cast_linear_weights(dtype).eval().requires_grad_(False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return model


def _beyond_layer(key: str, layer: int) -> bool:
    """Whether parameter ``key`` belongs after the representation of ``layer`` (unused)."""
    match = re.match(r"layers\.(\d+)\.", key)
    return key.startswith("emb_layer_norm_after.") or (match is not None and int(match.group(1)) >= layer)


# --- proteins --------------------------------------------------------------------------------


def tokenize_records(records: Sequence[FastaRecord], path: str | Path) -> list[np.ndarray]:
    """Residue token ids of each protein (no BOS/EOS); InputError names a record whose letters
    are not in the ESM alphabet (upper-case amino-acid codes, X, B, U, Z, O, '.', '-')."""
    token_ids = []
    for record in records:
        ids = _TOKEN_OF_BYTE[np.frombuffer(record.sequence.encode("utf-8"), dtype=np.uint8)]
        if not record.sequence:
            raise InputError(path, "empty protein sequence", record.id)
        if (ids < 0).any():
            unexpected = "".join(sorted(set(record.sequence) - RESIDUE_LETTERS))[:20]
            raise InputError(path, f"letters outside the ESM-2 protein alphabet: {unexpected!r}", record.id)
        token_ids.append(ids.astype(np.int64))
    return token_ids


def padded_batch(token_ids: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + residues + EOS padded to the longest protein, and the residue counts, on ``device``."""
    return embedding.padded_batch(token_ids, PAD_ID, device, BOS_ID, EOS_ID)


def mean_over_residues(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [batch, tokens, dim] over positions 1..min(1024, length): float32 [batch, dim]."""
    counts = lengths.clamp(max=MAX_POOLED_RESIDUES)
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    residues = (positions[None, :] >= 1) & (positions[None, :] <= counts[:, None])
    sums = torch.einsum("bt,btd->bd", residues.to(hidden.dtype), hidden)
    return sums.float() / counts[:, None].to(torch.float32)


def warm_up(model: ESM2Model, device: torch.device) -> None:
    """Run ``model`` on the input kinds a shard produces (a padded batch, a batch without
    padding, a single protein), so that torch.compile builds its graphs before the real data."""
    for lengths in ((5, 9), (7, 7), (6,)):
        tokens, _ = padded_batch([np.full(n, ALPHABET.index("A"), dtype=np.int64) for n in lengths], device)
        model(tokens, (tokens != PAD_ID) if len(set(lengths)) > 1 else None)


def compile_layers(model: ESM2Model, device: torch.device) -> float:
    """torch.compile each transformer layer in place, with dynamic shapes, and build the graphs
    on small inputs; returns the seconds that took.

    The layers share their code, so one graph per input kind (padded, unpadded, single protein)
    serves all of them: compiling layer by layer costs a fraction of compiling the whole model.
    Set TORCHINDUCTOR_CACHE_DIR to share the compiled kernels between processes.
    """
    started = time.perf_counter()
    for layer in model.layers:
        layer.compile(dynamic=True)
    with torch.inference_mode():
        warm_up(model, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


@torch.inference_mode()
def embed_token_ids(
    model: ESM2Model,
    token_ids: Sequence[np.ndarray],
    device: torch.device,
    batch_tokens: int,
    progress: bool = False,
    source: str | Path = "input",
) -> np.ndarray:
    """Per-protein embeddings (float32 [N, dim], input order), in length-sorted batches of at
    most ``batch_tokens`` padded tokens."""

    def embed_batch(indices: list[int]) -> torch.Tensor:
        tokens, lengths = padded_batch([token_ids[i] for i in indices], device)
        has_padding = len({len(token_ids[i]) for i in indices}) > 1
        hidden = model(tokens, (tokens != PAD_ID) if has_padding else None)
        return mean_over_residues(hidden, lengths)

    batches = token_budget_batches([len(ids) + 2 for ids in token_ids], batch_tokens)
    return embed_in_batches(batches, embed_batch, len(token_ids), model.config.embed_dim, progress, "ESM-2", str(source))
