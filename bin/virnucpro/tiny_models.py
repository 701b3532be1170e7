"""Deterministic tiny models in the real file formats, for the test profile and the tests.

Random weights, seeded: the pipeline runs end to end on a CPU in seconds, and the files are
read by exactly the code that reads the published DNABERT-S, ESM-2 and VirNucPro models.
"""

from __future__ import annotations

import argparse
import json
import math
from itertools import product
from pathlib import Path

import torch

from . import contracts
from .atomic import atomic_path, json_text

DNABERT_NAME = "dnabert_s_tiny"
ESM_NAME = "esm2_t36_tiny_UR50D"  # fair-esm picks its ESM-2 loader by the "esm2" file-name prefix
CLASSIFIER_NAME = "classifier_tiny"

DNABERT_CONFIG = {"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64}
ESM_CONFIG = {"encoder_layers": 36, "encoder_embed_dim": 32, "encoder_attention_heads": 4}  # 36 layers: the original reads layer 36
CLASSIFIER_HIDDEN = 512  # as the published MLPClassifier

SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "mask_token": "[MASK]",
}


def embedding_dims() -> tuple[int, int]:
    """The (DNABERT, ESM) embedding sizes of the tiny models; the classifier takes their sum."""
    return DNABERT_CONFIG["hidden_size"], ESM_CONFIG["encoder_embed_dim"]


def dnabert_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A BPE vocabulary over DNA: the special tokens (ids 0..4), bases, then 2-mers and 4-mers."""
    bases = "ACGT"
    dimers = ["".join(pair) for pair in product(bases, repeat=2)]
    merges = [(a, b) for a, b in product(bases, repeat=2)] + [(a, b) for a, b in product(dimers, repeat=2)]
    tokens = [*SPECIAL_TOKENS, *bases, *(a + b for a, b in merges)]
    return {token: index for index, token in enumerate(tokens)}, merges


def dnabert_tokenizer():
    """A tokenizer shaped like DNABERT-S's: BPE, Whitespace pre-tokenizer, no normalizer, [CLS] $A [SEP]."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors

    vocab, merges = dnabert_vocabulary()
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tokenizer.add_special_tokens([AddedToken(token, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


def dnabert_config(vocab_size: int) -> dict:
    """config.json with the keys of the published DNABERT-S (MosaicBERT) configuration."""
    return {
        "_name_or_path": DNABERT_NAME,
        "alibi_starting_size": 512,
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_bert.BertConfig",
            "AutoModel": "bert_layers.BertModel",
            "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
            "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
        },
        "classifier_dropout": None,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": DNABERT_CONFIG["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": DNABERT_CONFIG["intermediate_size"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": DNABERT_CONFIG["num_attention_heads"],
        "num_hidden_layers": DNABERT_CONFIG["num_hidden_layers"],
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.28.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def dnabert_state_dict(vocab_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """MosaicBERT weights under the key names of the published checkpoint (without 'bert.')."""
    hidden, intermediate = DNABERT_CONFIG["hidden_size"], DNABERT_CONFIG["intermediate_size"]

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.02

    def layer_norm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + normal(hidden), f"{prefix}.bias": normal(hidden)}

    state = {
        "embeddings.word_embeddings.weight": normal(vocab_size, hidden),
        "embeddings.token_type_embeddings.weight": normal(2, hidden),
        **layer_norm("embeddings.LayerNorm"),
    }
    for index in range(DNABERT_CONFIG["num_hidden_layers"]):
        layer = f"encoder.layer.{index}"
        state.update({
            f"{layer}.attention.self.Wqkv.weight": normal(3 * hidden, hidden),
            f"{layer}.attention.self.Wqkv.bias": normal(3 * hidden),
            f"{layer}.attention.output.dense.weight": normal(hidden, hidden),
            f"{layer}.attention.output.dense.bias": normal(hidden),
            **layer_norm(f"{layer}.attention.output.LayerNorm"),
            f"{layer}.mlp.gated_layers.weight": normal(2 * intermediate, hidden),
            f"{layer}.mlp.wo.weight": normal(hidden, intermediate),
            f"{layer}.mlp.wo.bias": normal(hidden),
            **layer_norm(f"{layer}.mlp.layernorm"),
        })
    state.update({"pooler.dense.weight": normal(hidden, hidden), "pooler.dense.bias": normal(hidden)})
    return state


def write_dnabert(directory: Path, seed: int) -> None:
    """A DNABERT-S checkpoint directory: config.json, pytorch_model.bin, tokenizer files."""
    tokenizer = dnabert_tokenizer()
    vocab_size = tokenizer.get_vocab_size()
    generator = torch.Generator().manual_seed(seed)
    with atomic_path(directory) as temporary:
        temporary.mkdir()
        (temporary / contracts.DNABERT_CONFIG_FILE).write_text(json_text(dnabert_config(vocab_size)))
        _save(dnabert_state_dict(vocab_size, generator), temporary / "pytorch_model.bin")
        tokenizer.save(str(temporary / contracts.DNABERT_TOKENIZER_FILE))
        (temporary / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, allow_nan=False) + "\n")


def write_esm(path: Path, seed: int) -> None:
    """A fair-esm ESM-2 checkpoint (``{"cfg": {"model": Namespace}, "model": state}``) and its
    co-located ``-contact-regression.pt``, as the published ones."""
    import esm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = esm.model.esm2.ESM2(
            num_layers=ESM_CONFIG["encoder_layers"],
            embed_dim=ESM_CONFIG["encoder_embed_dim"],
            attention_heads=ESM_CONFIG["encoder_attention_heads"],
            alphabet=esm.data.Alphabet.from_architecture("ESM-1b"),
            token_dropout=True,
        )
    state = model.state_dict()
    regression = {key: state.pop(key) for key in [k for k in state if k.startswith("contact_head.")]}
    checkpoint = {
        "cfg": {"model": argparse.Namespace(**ESM_CONFIG, token_dropout=True)},
        "model": {f"encoder.{key}": value for key, value in state.items()},
    }
    with atomic_path(path) as temporary:
        _save(checkpoint, temporary)
    with atomic_path(esm_regression_path(path)) as temporary:
        _save({"model": regression}, temporary)


def esm_regression_path(path: Path) -> Path:
    """Where fair-esm looks for the contact-regression weights of a checkpoint file."""
    return path.with_name(path.stem + contracts.ESM_REGRESSION_SUFFIX)


def classifier_state_dict(input_dim: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The state dict of the original MLPClassifier (hidden_layer, bn1, output_layer)."""
    hidden = CLASSIFIER_HIDDEN

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        bound = 1 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=generator) * 2 - 1) * bound

    return {
        "hidden_layer.weight": uniform(hidden, input_dim, fan_in=input_dim),
        "hidden_layer.bias": uniform(hidden, fan_in=input_dim),
        "bn1.weight": 1 + 0.1 * torch.randn(hidden, generator=generator),
        "bn1.bias": 0.1 * torch.randn(hidden, generator=generator),
        "bn1.running_mean": 0.1 * torch.randn(hidden, generator=generator),
        "bn1.running_var": 1 + 0.1 * torch.rand(hidden, generator=generator),
        "bn1.num_batches_tracked": torch.tensor(1000),
        "output_layer.weight": uniform(2, hidden, fan_in=hidden),
        "output_layer.bias": uniform(2, fan_in=hidden),
    }


def write_classifier(path: Path, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with atomic_path(path) as temporary:
        _save(classifier_state_dict(sum(embedding_dims()), generator), temporary)


def _save(obj: object, path: Path) -> None:
    """torch.save through a file handle: the archive is then named 'archive', not after the
    (temporary) file name, so the bytes do not depend on where the file was written."""
    with open(path, "wb") as handle:
        torch.save(obj, handle)
