"""ESM-2 behind the embedding skeleton: checkpoints, the protein alphabet, and the original's
pooling (VirNucPro `extract_esm`).

A checkpoint is a fair-esm `.pt` file (a dict with `cfg` and the `model` state dict) or a
fair-esm model name, found in (or fetched into) fair-esm's torch.hub cache. Checkpoints are
read by torch's weights-only unpickler, allowing only `argparse.Namespace` (the type of
fair-esm's `cfg`) besides tensors and containers: no code from the checkpoint runs.

The embedding: the whole protein goes through the model (the original's batch converter does
not truncate), and the representation of the chosen layer is averaged over residues
1..min(1024, length), BOS and EOS excluded.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from . import contracts, embedding
from .embedding import (
    Checkpoint, Embedder, check_sizes, layer_count, meta_device, refuse_non_finite, state_dict_problems, tensor_dict, to_device,
)
from .errors import VirNucProError
from .model_files import read_torch_file
from .modeling_esm2 import ESM2Config, ESM2Model
from .values import MAX_MODEL_SIZE, checked_int, shown

log = logging.getLogger("virnucpro")

MODEL_NAME = re.compile(r"esm2_t\d+_\w+")
# 65536 padded tokens: ~390 proteins of 166 aa per batch; with the 3B model in bf16 about
# 6 GB of weights plus 4-5 GB of activations, which fits a 24 GB GPU
DEFAULT_BATCH_TOKENS = 65536
COMPILE_MODES = ("auto", "on", "off")

# fair-esm's "ESM-1b" alphabet, which ESM-2 uses: specials, the 27 sequence letters, a filler, <mask>
ALPHABET = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)  # fmt: skip
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2
RESIDUE_LETTERS = frozenset(token for token in ALPHABET if len(token) == 1)
_RESIDUE_BYTES = "".join(sorted(RESIDUE_LETTERS)).encode("ascii")
# A protein of this many residues or more, all of them nucleotide codes and with each base among
# them, is a nucleotide sequence: a poly-alanine or -glycine frame (GC-rich repeats) is not refused.
NUCLEOTIDE_LOOKALIKE_LENGTH = 20
_NUCLEOTIDE_BYTES = b"ACGTUN"
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
# fairseq's settings in cfg['model'] for ESM2Config's num_layers, embed_dim and attention_heads
CFG_SIZES = ("encoder_layers", "encoder_embed_dim", "encoder_attention_heads")
REQUIRED_KEYS = ("embed_tokens.weight", "emb_layer_norm_after.weight", "layers.0.self_attn.rot_emb.inv_freq")


def sequence_problem(sequence: str) -> str | None:
    """Why ``sequence`` is not a protein ESM-2 embeds, or None."""
    if not sequence:
        return "empty protein sequence"
    if sequence.encode("utf-8").translate(None, _RESIDUE_BYTES):
        unexpected = "".join(sorted(set(sequence) - RESIDUE_LETTERS))[:20]
        return f"letters outside the ESM-2 protein alphabet (upper-case amino-acid codes, X, B, U, Z, O, '.', '-'): {unexpected!r}"
    if len(sequence) < NUCLEOTIDE_LOOKALIKE_LENGTH or sequence.encode("ascii").translate(None, _NUCLEOTIDE_BYTES):
        return None
    letters = set(sequence)
    if {"A", "C", "G"} <= letters and letters & {"T", "U"}:
        return f"looks like nucleotides, not protein ({len(sequence)} letters, all {''.join(sorted(letters))}): ESM-2 embeds the protein frames (.faa)"
    return None


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
        raise VirNucProError(f"--model {model!r}: neither a .pt checkpoint file nor an ESM-2 model name such as {contracts.DEFAULT_ESM_MODEL}")
    path = Path(torch.hub.get_dir()) / "checkpoints" / f"{model}.pt"
    if path.is_file():
        return path
    url = contracts.ESM_MODEL_URL.format(name=model)
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


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, its tensors memory-mapped from the file (nothing is copied yet)."""
    checkpoint = read_torch_file(path, allowed=[argparse.Namespace])
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise VirNucProError(f"{path}: not a fair-esm checkpoint (expected a dict with 'cfg' and 'model')")
    return checkpoint


def esm2_config(checkpoint: dict[str, Any], path: Path) -> ESM2Config:
    """Model sizes from the checkpoint's `cfg['model']` (fairseq's encoder_* settings)."""
    settings = checkpoint.get("cfg")
    if isinstance(settings, dict):
        settings = settings.get("model")
    if not isinstance(settings, (argparse.Namespace, dict)):
        raise VirNucProError(f"{path}: has no 'cfg' model settings: not an ESM-2 checkpoint (ESM-1 models are not supported)")
    values = vars(settings) if isinstance(settings, argparse.Namespace) else settings
    missing = [key for key in CFG_SIZES if key not in values]
    if missing:
        raise VirNucProError(f"{path}: 'cfg' lacks the ESM-2 model size(s) {', '.join(missing)}")
    sizes = [checked_int(path, f"cfg {key}", values[key], minimum=1, maximum=MAX_MODEL_SIZE) for key in CFG_SIZES]
    token_dropout = values.get("token_dropout", True)
    if not isinstance(token_dropout, bool):
        raise VirNucProError(f"{path}: cfg token_dropout {shown(token_dropout)} is not true or false")
    try:
        return ESM2Config(*sizes, token_dropout=token_dropout)
    except ValueError as error:
        raise VirNucProError(f"{path}: 'cfg' holds unusable ESM-2 model sizes ({error})") from None


def esm2_state_dict(checkpoint: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """fair-esm's parameter names (fairseq prefixes removed), unused heads included."""
    state = {KEY_PREFIX_PATTERN.sub("", key): tensor for key, tensor in tensor_dict(checkpoint["model"], path, "'model'").items()}
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise VirNucProError(f"{path}: not an ESM-2 checkpoint (no {', '.join(missing)})")
    return state


def check_config(config: ESM2Config, state: dict[str, torch.Tensor], path: Path) -> None:
    """cfg's sizes against the weights': the layers present, the embedding's width, the head
    size the rotary frequencies imply and the feed-forward width; and the vocabulary."""
    embed_tokens = state["embed_tokens.weight"]
    vocabulary, width = embed_tokens.shape if embed_tokens.ndim == 2 else (None, None)
    if vocabulary is not None and vocabulary != config.vocab_size:
        raise VirNucProError(f"{path}: embed_tokens.weight has {vocabulary} rows, but the ESM-2 alphabet has {config.vocab_size} tokens")
    head_dim = 2 * state["layers.0.self_attn.rot_emb.inv_freq"].numel()
    fc1 = state.get("layers.0.fc1.weight")
    check_sizes(path, "cfg", [
        ("encoder_layers", config.num_layers, layer_count(state, r"layers\.(\d+)\.")),
        ("encoder_embed_dim", config.embed_dim, width),
        ("encoder_attention_heads", config.attention_heads, width // head_dim if width and head_dim and width % head_dim == 0 else None),
        ("a feed-forward width (4 x encoder_embed_dim) of", config.ffn_dim, fc1.shape[0] if fc1 is not None and fc1.ndim == 2 else None),
    ])


@dataclass(frozen=True)
class ESMCheckpoint(Checkpoint):
    """An opened checkpoint: its sizes, the layer to represent, its memory-mapped tensors."""

    role: ClassVar[str] = contracts.ESM
    pooling: ClassVar[str] = "mean over residues 1..min(1024,len), BOS/EOS excluded"

    path: Path
    name: str  # the file's stem, so it does not depend on where it was staged
    config: ESM2Config
    layer: int
    state: dict[str, torch.Tensor]
    compile_mode: str  # one of COMPILE_MODES

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    def load(self, device: torch.device, dtype: torch.dtype) -> "ESMEmbedder":
        """ESM-2 up to the checkpoint's layer on ``device``, linear weights in ``dtype``, eval mode.

        The memory-mapped tensors are assigned to a model built on the meta device, so the
        weights are read from the file once, straight into their final place.
        """
        with meta_device():
            model = ESM2Model(self.config, output_layer=self.layer)
        expected = model.state_dict()
        state = {key: tensor for key, tensor in self.state.items() if key in expected or not _beyond_layer(key, self.layer)}
        problems = state_dict_problems(state, model, "cfg")
        if problems:
            raise VirNucProError(f"{self.path}: weights do not match an ESM-2 model of its cfg: {'; '.join(problems[:5])}")
        model.load_state_dict(state, assign=True)
        model = model.to(device=device, dtype=torch.float32).cast_linear_weights(dtype).eval().requires_grad_(False)
        refuse_non_finite(model, self.path, dtype)
        return ESMEmbedder(model, self.compile_mode)


def open_checkpoint(model: str, layer: int | None, compile_mode: str) -> ESMCheckpoint:
    """Locate and open ``model``, check that it is ESM-2 with a layer ``layer`` (None: the last)
    and that its cfg matches its weights. Cheap: the tensors are memory-mapped, not read."""
    path = checkpoint_path(model)
    checkpoint = read_checkpoint(path)
    state = esm2_state_dict(checkpoint, path)
    config = esm2_config(checkpoint, path)
    check_config(config, state, path)
    layer = config.num_layers if layer is None else layer
    if not 0 <= layer <= config.num_layers:
        raise VirNucProError(f"--layer {layer}: {path.name} has layers 0..{config.num_layers}")
    used = {key: tensor for key, tensor in state.items() if not IGNORED_KEY_PATTERN.search(key)}
    return ESMCheckpoint(path, path.stem, config, layer, used, compile_mode)


def _beyond_layer(key: str, layer: int) -> bool:
    """Whether parameter ``key`` belongs after the representation of ``layer`` (unused)."""
    match = re.match(r"layers\.(\d+)\.", key)
    return key.startswith("emb_layer_norm_after.") or (match is not None and int(match.group(1)) >= layer)


# --- embedding -------------------------------------------------------------------------------


def tokenize(sequences: Sequence[str]) -> list[np.ndarray]:
    """Residue token ids of each protein (no BOS/EOS), its letters checked by sequence_problem."""
    token_ids = []
    for sequence in sequences:
        ids = _TOKEN_OF_BYTE[np.frombuffer(sequence.encode("utf-8"), dtype=np.uint8)]
        if (ids < 0).any():
            raise ValueError(f"{sequence[:20]!r}...: letters outside the ESM-2 alphabet")
        token_ids.append(ids.astype(np.int64))
    return token_ids


def padded_batch(token_ids: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + residues + EOS padded to the longest protein, and the residue counts, on the host
    (pinned for a CUDA ``device``)."""
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
        tokens, _ = to_device(padded_batch([np.full(n, ALPHABET.index("A"), dtype=np.int64) for n in lengths], device), device)
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


class ESMEmbedder(Embedder):
    module: ESM2Model

    def __init__(self, module: ESM2Model, compile_mode: str) -> None:
        super().__init__(module)
        self.compile_mode = compile_mode

    @property
    def dim(self) -> int:
        return self.module.config.embed_dim

    def preprocess(self, sequences: Sequence[str]) -> list[np.ndarray]:
        return tokenize(sequences)

    def tokens(self, token_ids: np.ndarray) -> int:
        return int(contracts.esm_tokens(len(token_ids)))  # BOS and EOS framed around the residues

    def compile(self, device: torch.device) -> float | None:
        """auto: compiled on CUDA, where it pays; on the CPU only when asked for."""
        if self.compile_mode == "on" or (self.compile_mode == "auto" and device.type == "cuda"):
            return compile_layers(self.module, device)
        return None

    def collate(self, batch: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_batch(batch, device)

    def forward(self, inputs: tuple[torch.Tensor, ...], device: torch.device) -> torch.Tensor:
        residues = inputs[1]
        has_padding = bool(residues.min() != residues.max())  # read on the host: no device synchronisation
        tokens, lengths = to_device(inputs, device)
        hidden = self.module(tokens, (tokens != PAD_ID) if has_padding else None)
        return mean_over_residues(hidden, lengths)
