"""DNABERT-S (a MosaicBERT encoder) in plain PyTorch.

The published model runs through `trust_remote_code`; this module reproduces its forward pass
from the architecture alone so that no downloaded code is executed. Parameter names follow the
checkpoint's state-dict keys (with the `bert.` prefix removed), so a checkpoint loads directly.

Differences from BERT: no position embeddings (ALiBi biases the attention scores instead), a
fused `Wqkv` projection, and a gated-GELU (GEGLU) feed-forward block. Post-LayerNorm throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DNABertConfig:
    """The sizes that shape the encoder; the defaults are those of DNABERT-S."""

    vocab_size: int = 4096
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    type_vocab_size: int = 2

    def __post_init__(self) -> None:
        sizes = [field.name for field in fields(self) if type(field.default) is int and getattr(self, field.name) < 1]
        if sizes:
            raise ValueError(f"{', '.join(sizes)} must be at least 1")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DNABertConfig":
        """Take the fields from a Hugging Face config.json dict; every one must be present."""
        missing = [field.name for field in fields(cls) if field.name not in values]
        if missing:
            raise KeyError(", ".join(missing))
        return cls(**{field.name: type(field.default)(values[field.name]) for field in fields(cls)})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi slope of each head (Press et al.), with MosaicBERT's rule for head counts that are
    not a power of two: the slopes of the closest lower power of two p, then every other slope
    of the 2p-head list, as many as are missing."""

    def power_of_two_slopes(count: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(count) - 3)))
        return [start * start**i for i in range(count)]

    if math.log2(num_heads).is_integer():
        return power_of_two_slopes(num_heads)
    lower = 2 ** math.floor(math.log2(num_heads))
    return power_of_two_slopes(lower) + alibi_slopes(2 * lower)[0::2][: num_heads - lower]


def alibi_bias(slopes: torch.Tensor, length: int) -> torch.Tensor:
    """The additive ALiBi bias `-slope_h * |i - j|` for every head: [heads, length, length], float32."""
    positions = torch.arange(length, device=slopes.device)
    distance = (positions[None, :] - positions[:, None]).abs().to(torch.float32)
    return slopes.float()[:, None, None] * -distance


def attention_bias(slopes: torch.Tensor, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ALiBi plus -inf on padded keys: [batch, heads, length, length] in ``dtype``.

    Padded keys get exactly zero weight, so a padded sequence attends as it would alone. Every
    query row, padded ones included, keeps at least one real key, so the softmax never sees a
    row of -inf (no NaN).
    """
    batch, length = attention_mask.shape
    bias = alibi_bias(slopes, length).to(dtype)
    padded_keys = ~attention_mask.bool()[:, None, None, :]
    return bias.expand(batch, -1, -1, -1).masked_fill(padded_keys, float("-inf"))


class DNABertEmbeddings(nn.Module):
    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # every token has token type 0
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(embeddings)


class DNABertSelfAttention(nn.Module):
    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = hidden_states.shape
        qkv = self.Wqkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, heads, length, head_dim]
        # softmax(q·kᵀ / sqrt(head_dim) + bias) · v
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return context.transpose(1, 2).reshape(batch, length, hidden)


class DNABertSelfOutput(nn.Module):
    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dense(context))


class DNABertAttention(nn.Module):
    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.self = DNABertSelfAttention(config)
        self.output = DNABertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden_states, bias), hidden_states)


class DNABertGatedMLP(nn.Module):
    """GEGLU feed-forward: gelu(first half) * second half of one projection, then back down."""

    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate, value = self.gated_layers(hidden_states).chunk(2, dim=-1)
        return self.layernorm(hidden_states + self.wo(F.gelu(gate) * value))


class DNABertLayer(nn.Module):
    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.attention = DNABertAttention(config)
        self.mlp = DNABertGatedMLP(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(hidden_states, bias))


class DNABertEncoder(nn.Module):
    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(DNABertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states, bias)
        return hidden_states


class DNABertModel(nn.Module):
    """The DNABERT-S encoder without its pooler: token ids in, last hidden layer out."""

    def __init__(self, config: DNABertConfig) -> None:
        super().__init__()
        self.config = config
        # computed, not loaded: created on the CPU even when the model is built on the meta device
        slopes = torch.tensor(alibi_slopes(config.num_attention_heads), dtype=torch.float32, device="cpu")
        self.register_buffer("alibi_slopes", slopes, persistent=False)
        self.embeddings = DNABertEmbeddings(config)
        self.encoder = DNABertEncoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids and attention_mask (1 = real token, 0 = padding): [batch, length] -> [batch, length, hidden]."""
        hidden_states = self.embeddings(input_ids)
        bias = attention_bias(self.alibi_slopes, attention_mask, hidden_states.dtype)
        return self.encoder(hidden_states, bias)

