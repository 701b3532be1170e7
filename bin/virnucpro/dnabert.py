"""DNABERT-S behind the embedding skeleton: checkpoint directories, the tokenizer, and the mean
of the last hidden layer over all tokens ([CLS] and [SEP] included, as the original).

A checkpoint is a directory with config.json, model.safetensors or pytorch_model.bin, and
tokenizer.json, or a Hugging Face hub ID whose files are fetched into the hub cache. Only
tensors and JSON are read: no code from the checkpoint runs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from . import contracts
from .embedding import (
    Checkpoint, Embedder, check_sizes, iter_chunks, layer_count, meta_device, padded_batch, refuse_non_finite, state_dict_problems,
    tensor_dict, to_device,
)
from .errors import VirNucProError, first_line
from .fasta import IUPAC_NUCLEOTIDES, PROTEIN_ONLY_LETTERS
from .model_files import read_safetensors, read_torch_file
from .modeling_dnabert import DNABertConfig, DNABertModel
from .values import MAX_MODEL_SIZE, checked_float, checked_int, json_cut_short, load_json

# 32768 padded tokens: ~300 frames of 500 bp per batch, a few GB in bf16
DEFAULT_BATCH_TOKENS = 32768
IGNORED_KEY_PREFIXES = ("cls.", "pooler.")  # masked-LM head and pooler: not used for embeddings
# Any valid id: padded positions are masked out of attention and pooling.
PADDING_ID = 0
MAX_LAYER_NORM_EPS = 1.0  # DNABERT-S has 1e-12; an eps near the variances flattens every state
# Sequences tokenized per call, so that the tokenizer's Encoding objects never pile up.
TOKENIZE_CHUNK = 4096
# prepare_frames.py writes frames of upper-cased IUPAC codes; the tokenizer has no normalizer, so
# anything else (lower case included) would silently become [UNK] tokens
FRAME_LETTERS = "".join(sorted(IUPAC_NUCLEOTIDES))
_FRAME_BYTES = FRAME_LETTERS.encode("ascii")


def sequence_problem(sequence: str) -> str | None:
    """Why ``sequence`` is not a frame DNABERT-S embeds, or None."""
    if not sequence:
        return "empty sequence"
    if not sequence.encode("utf-8").translate(None, _FRAME_BYTES):
        return None
    unexpected = set(sequence) - IUPAC_NUCLEOTIDES
    shown = "".join(sorted(unexpected))[:20]
    if unexpected & PROTEIN_ONLY_LETTERS:
        return f"looks like protein, not nucleotides (letters {shown!r}): DNABERT-S embeds the nucleotide frames (.fna)"
    return f"letters {shown!r} are not upper-case IUPAC nucleotide codes ({FRAME_LETTERS}), which prepare_frames.py writes"


# --- checkpoints -----------------------------------------------------------------------------


def locate_model(model: str) -> Path:
    """The checkpoint directory for ``model``: a local directory, else a hub ID fetched into the
    hub cache (only the files needed; HF_HUB_OFFLINE=1 reads the cache only)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id=model, allow_patterns=list(contracts.DNABERT_HUB_FILES)))
    except Exception as error:  # network, missing repository, invalid ID, offline cache miss: all one message
        offline = " (HF_HUB_OFFLINE is set: only the local hub cache was searched)" if constants.HF_HUB_OFFLINE else ""
        raise VirNucProError(
            f"--model {model!r} is not a directory and could not be fetched from the Hugging Face hub{offline}: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None


def read_config(directory: Path) -> DNABertConfig:
    path = directory / contracts.DNABERT_CONFIG_FILE
    if not path.is_file():
        raise VirNucProError(f"{path}: missing (a DNABERT-S checkpoint directory needs {contracts.DNABERT_CONFIG_FILE})")
    values = load_json(path)
    if not isinstance(values, dict):
        raise VirNucProError(f"{path}: not a model configuration (a JSON object)")
    for field in fields(DNABertConfig):
        if field.name not in values:
            continue
        if type(field.default) is int:
            checked_int(path, field.name, values[field.name], minimum=1, maximum=MAX_MODEL_SIZE)
        else:
            checked_float(path, field.name, values[field.name], 0.0, MAX_LAYER_NORM_EPS)
    try:
        return DNABertConfig.from_dict(values)
    except ValueError as error:
        raise VirNucProError(f"{path}: not a valid model configuration ({error})") from None
    except KeyError as error:
        raise VirNucProError(f"{path}: lacks the model sizes {error.args[0]}") from None


def read_state_dict(directory: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The checkpoint's tensors (safetensors preferred) and the file they came from."""
    for name in contracts.DNABERT_WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".safetensors"):
            return path, read_safetensors(path)
        return path, tensor_dict(read_torch_file(path), path, "the file")
    raise VirNucProError(f"{directory}: no weights ({' or '.join(contracts.DNABERT_WEIGHT_FILES)})")


def encoder_state_dict(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors: a `bert.` prefix removed, the heads and pooler left out."""
    state = {}
    for key, tensor in checkpoint.items():
        name = key.removeprefix("bert.")
        if not name.startswith(IGNORED_KEY_PREFIXES):
            state[name] = tensor
    return state


def check_config(config: DNABertConfig, state: dict[str, torch.Tensor], path: Path) -> None:
    """config.json's sizes against the weights' (the head count has no trace in the shapes)."""

    def size(key: str, dimension: int) -> int | None:
        return state[key].shape[dimension] if key in state and state[key].ndim > dimension else None

    check_sizes(path, contracts.DNABERT_CONFIG_FILE, [
        ("num_hidden_layers", config.num_hidden_layers, layer_count(state, r"encoder\.layer\.(\d+)\.")),
        ("vocab_size", config.vocab_size, size("embeddings.word_embeddings.weight", 0)),
        ("hidden_size", config.hidden_size, size("embeddings.word_embeddings.weight", 1)),
        ("type_vocab_size", config.type_vocab_size, size("embeddings.token_type_embeddings.weight", 0)),
        ("intermediate_size", config.intermediate_size, size("encoder.layer.0.mlp.wo.weight", 1)),
    ])


def load_tokenizer(directory: Path, vocab_size: int) -> Tokenizer:
    path = directory / contracts.DNABERT_TOKENIZER_FILE
    if not path.exists():
        raise VirNucProError(f"{path}: missing (a DNABERT-S checkpoint directory needs {contracts.DNABERT_TOKENIZER_FILE})")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the tokenizers library raises a bare Exception on bad JSON
        cut_short = "EOF while parsing" in str(error) or json_cut_short(path.read_text(encoding="utf-8", errors="replace"))
        state = "truncated: the JSON ends before it is complete" if cut_short else "not a tokenizers JSON file"
        raise VirNucProError(f"{path}: {state} ({first_line(error)})") from None
    # transformers switches these off for an unpadded, untruncated call; a saved setting must not leak in
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if tokenizer.get_vocab_size() > vocab_size:
        raise VirNucProError(f"{path}: vocabulary of {tokenizer.get_vocab_size()} tokens, but the model embeds only {vocab_size}")
    return tokenizer


@dataclass(frozen=True)
class DNABertCheckpoint(Checkpoint):
    role: ClassVar[str] = contracts.DNABERT
    pooling: ClassVar[str] = "mean over all tokens incl. [CLS]/[SEP]"

    directory: Path
    config: DNABertConfig
    name: str

    @property
    def layer(self) -> int:
        return self.config.num_hidden_layers

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def load(self, device: torch.device, dtype: torch.dtype) -> "DNABertEmbedder":
        """The encoder with the checkpoint's weights, cast to ``dtype`` on ``device``, in eval mode."""
        path, checkpoint = read_state_dict(self.directory)
        state = encoder_state_dict(checkpoint)
        check_config(self.config, state, path)
        with meta_device():
            model = DNABertModel(self.config)
        problems = state_dict_problems(state, model, contracts.DNABERT_CONFIG_FILE)
        if problems:
            raise VirNucProError(f"{path}: not a DNABERT-S checkpoint matching its {contracts.DNABERT_CONFIG_FILE}: {'; '.join(problems)}")
        model.load_state_dict(state, assign=True)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        refuse_non_finite(model, path, dtype)
        return DNABertEmbedder(model, load_tokenizer(self.directory, self.config.vocab_size))


def open_checkpoint(model: str) -> DNABertCheckpoint:
    """Locate ``model`` (a directory or a hub ID) and read its config.json; no weights are read."""
    directory = locate_model(model)
    name = Path(model).resolve().name if Path(model).is_dir() else model
    return DNABertCheckpoint(directory, read_config(directory), name)


# --- embedding -------------------------------------------------------------------------------


def tokenize(tokenizer: Tokenizer, sequences: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each sequence, [CLS] and [SEP] included (the tokenizer's template adds them)."""
    token_ids: list[np.ndarray] = []
    for chunk in iter_chunks(sequences, TOKENIZE_CHUNK):
        token_ids.extend(np.asarray(encoding.ids, dtype=np.int64) for encoding in tokenizer.encode_batch(list(chunk)))
    return token_ids


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of each sequence ([CLS] and [SEP] included), in float32: [batch, hidden]."""
    mask = attention_mask.to(torch.float32)[..., None]
    return (hidden_states.float() * mask).sum(dim=1) / mask.sum(dim=1)


class DNABertEmbedder(Embedder):
    module: DNABertModel

    def __init__(self, module: DNABertModel, tokenizer: Tokenizer) -> None:
        super().__init__(module)
        self.tokenizer = tokenizer

    @property
    def dim(self) -> int:
        return self.module.config.hidden_size

    def preprocess(self, sequences: Sequence[str]) -> list[np.ndarray]:
        return tokenize(self.tokenizer, sequences)

    def tokens(self, token_ids: np.ndarray) -> int:
        return len(token_ids)  # [CLS] and [SEP] are among the ids

    def collate(self, batch: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_batch(batch, PADDING_ID, device)

    def forward(self, inputs: tuple[torch.Tensor, ...], device: torch.device) -> torch.Tensor:
        """Padding is masked out of attention and pooling: each row is the sequence's embedding alone."""
        input_ids, lengths = to_device(inputs, device)
        attention_mask = torch.arange(input_ids.shape[1], device=device)[None, :] < lengths[:, None]
        return mean_pool(self.module(input_ids, attention_mask), attention_mask)
