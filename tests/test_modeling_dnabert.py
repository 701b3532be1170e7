"""The native DNABERT-S encoder: ALiBi slopes, padding invariance, and the forward pass against
the architecture written out step by step as the original computes it (one unpadded sequence)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from virnucpro.dnabert import mean_pool
from virnucpro.modeling_dnabert import DNABertConfig, DNABertModel, alibi_slopes

SMALL = DNABertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=6, intermediate_size=40)


def random_model(config: DNABertConfig, seed: int = 0) -> DNABertModel:
    torch.manual_seed(seed)
    model = DNABertModel(config).eval()
    with torch.no_grad():  # LayerNorm weights away from 1/0 so that every parameter matters
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


def original_forward(model: DNABertModel, input_ids: torch.Tensor) -> torch.Tensor:
    """One sequence, no padding: the MosaicBERT forward pass in explicit matrix products."""
    config = model.config
    state = model.state_dict()
    heads, head_dim, size = config.num_attention_heads, config.head_dim, config.hidden_size
    eps = config.layer_norm_eps

    def layer_norm(x, prefix):
        return F.layer_norm(x, (size,), state[f"{prefix}.weight"], state[f"{prefix}.bias"], eps)

    x = state["embeddings.word_embeddings.weight"][input_ids] + state["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, "embeddings.LayerNorm")
    length = len(input_ids)
    slopes = torch.tensor(alibi_slopes(heads))
    distance = (torch.arange(length)[None, :] - torch.arange(length)[:, None]).abs()
    alibi = -slopes[:, None, None] * distance
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        qkv = x @ state[f"{p}.attention.self.Wqkv.weight"].T + state[f"{p}.attention.self.Wqkv.bias"]
        q, k, v = (qkv[:, j * size : (j + 1) * size].view(length, heads, head_dim).transpose(0, 1) for j in range(3))
        scores = q @ k.transpose(1, 2) / math.sqrt(head_dim) + alibi
        context = (scores.softmax(-1) @ v).transpose(0, 1).reshape(length, size)
        attended = context @ state[f"{p}.attention.output.dense.weight"].T + state[f"{p}.attention.output.dense.bias"]
        x = layer_norm(x + attended, f"{p}.attention.output.LayerNorm")
        gated = x @ state[f"{p}.mlp.gated_layers.weight"].T
        gate, value = gated[:, : config.intermediate_size], gated[:, config.intermediate_size :]
        out = (0.5 * gate * (1 + torch.erf(gate / math.sqrt(2))) * value) @ state[f"{p}.mlp.wo.weight"].T + state[f"{p}.mlp.wo.bias"]
        x = layer_norm(x + out, f"{p}.mlp.layernorm")
    return x


def test_alibi_slopes_for_twelve_heads_follow_the_non_power_of_two_rule():
    exponents = [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5]
    assert alibi_slopes(12) == pytest.approx([2**-e for e in exponents], rel=1e-12)


@pytest.mark.parametrize("heads", [8, 16])
def test_alibi_slopes_for_powers_of_two_are_geometric(heads):
    step = 8 / heads  # 8 heads: 2^-1 ... 2^-8; 16 heads: 2^-0.5 ... 2^-8
    assert alibi_slopes(heads) == pytest.approx([2 ** (-step * (i + 1)) for i in range(heads)], rel=1e-12)


@pytest.mark.parametrize("heads", [6, 8, 12])
def test_forward_matches_the_architecture_written_out(heads):
    config = dataclasses.replace(SMALL, num_attention_heads=heads)
    model = random_model(config)
    input_ids = torch.randint(0, config.vocab_size, (37,))
    with torch.no_grad():
        native = model(input_ids[None], torch.ones(1, 37, dtype=torch.bool))[0]
    torch.testing.assert_close(native, original_forward(model, input_ids), atol=1e-5, rtol=1e-5)


def test_padded_batch_equals_each_sequence_alone():
    model = random_model(SMALL, seed=1)
    lengths = [5, 31, 2, 17]
    sequences = [torch.randint(0, SMALL.vocab_size, (n,)) for n in lengths]
    input_ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, ids in zip(input_ids, sequences):
        row[: len(ids)] = ids
    attention_mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        hidden = model(input_ids, attention_mask)
        pooled = mean_pool(hidden, attention_mask)
        alone = [mean_pool(model(ids[None], torch.ones(1, len(ids), dtype=torch.bool)), torch.ones(1, len(ids))) for ids in sequences]
    assert torch.isfinite(hidden).all()  # padded query rows too
    torch.testing.assert_close(pooled, torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_bf16_model_is_close_to_fp32_and_pools_in_fp32():
    model = random_model(SMALL, seed=2)
    input_ids = torch.randint(0, SMALL.vocab_size, (3, 40))
    attention_mask = torch.ones(3, 40, dtype=torch.bool)
    with torch.no_grad():
        full = mean_pool(model(input_ids, attention_mask), attention_mask)
        half = mean_pool(model.to(torch.bfloat16)(input_ids, attention_mask), attention_mask)
    assert half.dtype == torch.float32
    assert F.cosine_similarity(full, half).min() > 0.99


def test_config_from_dict_reads_the_sizes_and_names_missing_ones():
    values = {"vocab_size": 4096, "hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 12,
              "intermediate_size": 192, "layer_norm_eps": 1e-12, "type_vocab_size": 2, "model_type": "bert"}
    assert DNABertConfig.from_dict(values) == DNABertConfig(hidden_size=96, num_hidden_layers=3, intermediate_size=192)
    del values["intermediate_size"]
    with pytest.raises(KeyError, match="intermediate_size"):
        DNABertConfig.from_dict(values)


@pytest.mark.parametrize("sizes, refusal", [
    ({"num_attention_heads": 0}, "num_attention_heads must be at least 1"),
    ({"num_hidden_layers": -1, "vocab_size": 0}, "vocab_size, num_hidden_layers must be at least 1"),
    ({"num_attention_heads": 5}, "hidden_size 24 is not a multiple of num_attention_heads 5"),
])
def test_config_refuses_sizes_no_model_has(sizes, refusal):
    with pytest.raises(ValueError, match=refusal):
        dataclasses.replace(SMALL, **sizes)
