"""DNABERT-S checkpoints and tokenizer, and batched per-sequence embeddings.

A checkpoint is a directory with config.json, model.safetensors or pytorch_model.bin, and
tokenizer.json, or a Hugging Face hub ID whose files are fetched into the hub cache. Only
tensors and JSON are read: no code from the checkpoint runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from .embedding import embed_in_batches, iter_chunks, padded_batch, state_dict_problems, token_budget_batches
from .errors import VirNucProError
from .modeling_dnabert import DNABertConfig, DNABertModel, mean_pool

DEFAULT_MODEL = "zhihan1996/DNABERT-S"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
HUB_FILES = [CONFIG_FILE, TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json", *WEIGHT_FILES]
IGNORED_KEY_PREFIXES = ("cls.", "pooler.")  # masked-LM head and pooler: not used for embeddings
# Any valid id: padded positions are masked out of attention and pooling.
PADDING_ID = 0
# Sequences tokenized per call, so that the tokenizer's Encoding objects never pile up.
TOKENIZE_CHUNK = 4096


def locate_model(model: str) -> Path:
    """The checkpoint directory for ``model``: a local directory, else a hub ID fetched into the
    hub cache (only the files needed; HF_HUB_OFFLINE=1 reads the cache only)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id=model, allow_patterns=HUB_FILES))
    except Exception as error:  # network, missing repository, invalid ID, offline cache miss: all one message
        offline = " (HF_HUB_OFFLINE is set: only the local hub cache was searched)" if constants.HF_HUB_OFFLINE else ""
        raise VirNucProError(
            f"--model {model!r} is not a directory and could not be fetched from the Hugging Face hub{offline}: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None


def read_config(directory: Path) -> DNABertConfig:
    path = directory / CONFIG_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        return DNABertConfig.from_dict(values)
    except FileNotFoundError:
        raise VirNucProError(f"{path}: missing (a DNABERT-S checkpoint directory needs {CONFIG_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError, ValueError) as error:
        raise VirNucProError(f"{path}: not a valid model configuration ({error})") from None
    except KeyError as error:
        raise VirNucProError(f"{path}: lacks the model sizes {error.args[0]}") from None


def read_state_dict(directory: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The checkpoint's tensors (safetensors preferred) and the file they came from."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return path, load_file(path)
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # corrupt, truncated or pickled objects other than tensors
            raise VirNucProError(f"{path}: cannot read the weights ({type(error).__name__}: {error})") from None
    raise VirNucProError(f"{directory}: no weights ({' or '.join(WEIGHT_FILES)})")


def encoder_state_dict(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors: a `bert.` prefix removed, the heads and pooler left out."""
    state = {}
    for key, tensor in checkpoint.items():
        name = key.removeprefix("bert.")
        if not name.startswith(IGNORED_KEY_PREFIXES):
            state[name] = tensor
    return state


def load_model(directory: Path, device: torch.device, dtype: torch.dtype) -> DNABertModel:
    """The encoder with the checkpoint's weights, cast to ``dtype`` on ``device``, in eval mode."""
    config = read_config(directory)
    path, checkpoint = read_state_dict(directory)
    state = encoder_state_dict(checkpoint)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the checkpoint
        model = DNABertModel(config)
    problems = state_dict_problems(state, model, CONFIG_FILE)
    if problems:
        raise VirNucProError(f"{path}: not a DNABERT-S checkpoint matching its {CONFIG_FILE}: {'; '.join(problems)}")
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=dtype).eval()


def load_tokenizer(directory: Path, vocab_size: int) -> Tokenizer:
    path = directory / TOKENIZER_FILE
    if not path.exists():
        raise VirNucProError(f"{path}: missing (a DNABERT-S checkpoint directory needs {TOKENIZER_FILE})")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the tokenizers library raises a bare Exception on bad JSON
        raise VirNucProError(f"{path}: not a tokenizers JSON file ({error})") from None
    # transformers switches these off for an unpadded, untruncated call; a saved setting must not leak in
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if tokenizer.get_vocab_size() > vocab_size:
        raise VirNucProError(f"{path}: vocabulary of {tokenizer.get_vocab_size()} tokens, but the model embeds only {vocab_size}")
    return tokenizer


def tokenize(tokenizer: Tokenizer, sequences: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each sequence, [CLS] and [SEP] included (the tokenizer's template adds them)."""
    token_ids: list[np.ndarray] = []
    for chunk in iter_chunks(sequences, TOKENIZE_CHUNK):
        token_ids.extend(np.asarray(encoding.ids, dtype=np.int64) for encoding in tokenizer.encode_batch(list(chunk)))
    return token_ids


@torch.inference_mode()
def embed_token_ids(
    model: DNABertModel,
    token_ids: Sequence[np.ndarray],
    device: torch.device,
    batch_tokens: int,
    progress: bool = False,
    source: str = "input",
) -> np.ndarray:
    """Mean-pooled last hidden layer of each tokenized sequence: float32 [N, hidden], input order.

    Batches are length-sorted and bounded by ``batch_tokens`` padded tokens; padding is masked,
    so every row equals the sequence's embedding computed alone.
    """

    def embed_batch(indices: list[int]) -> torch.Tensor:
        input_ids, lengths = padded_batch([token_ids[i] for i in indices], PADDING_ID, device)
        attention_mask = torch.arange(input_ids.shape[1], device=device)[None, :] < lengths[:, None]
        return mean_pool(model(input_ids, attention_mask), attention_mask)

    batches = token_budget_batches([len(ids) for ids in token_ids], batch_tokens)
    return embed_in_batches(batches, embed_batch, len(token_ids), model.config.hidden_size, progress, "DNABERT-S", source)


def embed_sequences(
    model: DNABertModel,
    tokenizer: Tokenizer,
    sequences: Sequence[str],
    device: torch.device,
    batch_tokens: int,
    progress: bool = False,
) -> np.ndarray:
    """Embed nucleotide sequences as the original does one at a time: float32 [N, hidden], input order."""
    return embed_token_ids(model, tokenize(tokenizer, sequences), device, batch_tokens, progress)
