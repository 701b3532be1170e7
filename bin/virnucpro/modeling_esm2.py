"""ESM-2 (Lin et al. 2022) encoder in plain PyTorch, for inference.

Reproduces fair-esm's `esm.model.esm2.ESM2.forward` in eval mode, with the math in the open so
that we choose the precision, the attention kernel and what `torch.compile` sees. Parameter
names follow fair-esm's state dict (after its `encoder.` prefix is removed), so a checkpoint
loads directly.

The architecture: token embedding (rescaled as fair-esm's token dropout does at inference),
padding rows zeroed, pre-LayerNorm transformer layers with rotary position embeddings on the
queries and keys, an exact-GELU feed-forward block, and a final LayerNorm after the last layer.

Mixed precision: in bf16 only the weights of the linear layers are bf16. The residual stream,
the LayerNorms (and their parameters) and the token embedding stay fp32, and each linear layer
is fed a bf16 copy of its fp32 input. This costs a little memory traffic but keeps the
embeddings close to fp32 ones: the residual stream is never rounded to bf16 between layers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

# fair-esm trains with 15% of tokens selected, 80% of those masked, and at inference rescales
# the embeddings by (1 - 0.15 * 0.8) / (1 - observed mask ratio); we never feed <mask> tokens.
TOKEN_DROPOUT_SCALE = 1 - 0.15 * 0.8


@dataclass(frozen=True)
class ESM2Config:
    """The sizes of an ESM-2 model; the defaults are those of esm2_t36_3B_UR50D."""

    num_layers: int = 36
    embed_dim: int = 2560
    attention_heads: int = 40
    token_dropout: bool = True
    vocab_size: int = 33
    padding_idx: int = 1
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        sizes = [field.name for field in fields(self) if type(field.default) is int and getattr(self, field.name) < 1]
        if sizes:
            raise ValueError(f"{', '.join(sizes)} must be at least 1")
        if self.embed_dim % self.attention_heads or self.head_dim % 2:
            raise ValueError(f"embed_dim {self.embed_dim} is not an even head size times attention_heads {self.attention_heads} (rotary embeddings rotate pairs)")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.attention_heads

    @property
    def ffn_dim(self) -> int:
        return 4 * self.embed_dim


def rotary_tables(length: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, [length, head_dim] in float32 (fair-esm's RotaryEmbedding:
    frequencies 10000^(-2i/d), the two halves of the head dimension share them)."""
    inverse_frequency = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    positions = torch.arange(length, device=device, dtype=torch.float32)
    angles = torch.outer(positions, inverse_frequency)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [batch, heads, length, head_dim] by the position angles, computed in float32:
    x * cos + rotate_half(x) * sin with rotate_half(x) = (-x2, x1)."""
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class ESM2Attention(nn.Module):
    def __init__(self, config: ESM2Config) -> None:
        super().__init__()
        self.num_heads = config.attention_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.k_proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.v_proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.out_proj = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        batch, length, width = hidden.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        query = apply_rotary(heads(self.q_proj), cos, sin)
        key = apply_rotary(heads(self.k_proj), cos, sin)
        # softmax(q k^T / sqrt(head_dim)) v; key_mask [batch, 1, 1, length] is True on real tokens
        context = F.scaled_dot_product_attention(query, key, heads(self.v_proj), attn_mask=key_mask)
        return self.out_proj(context.transpose(1, 2).reshape(batch, length, width))


class ESM2Layer(nn.Module):
    """Pre-LayerNorm transformer layer: x + attention(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, config: ESM2Config) -> None:
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.self_attn = ESM2Attention(config)
        self.final_layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.embed_dim, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.embed_dim)

    def forward(
        self, residual: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        compute_dtype = self.fc1.weight.dtype
        attended = self.self_attn(self.self_attn_layer_norm(residual).to(compute_dtype), cos, sin, key_mask)
        residual = residual + attended.float()
        hidden = F.gelu(self.fc1(self.final_layer_norm(residual).to(compute_dtype)))
        return residual + self.fc2(hidden).float()


class ESM2Model(nn.Module):
    """The ESM-2 encoder up to ``output_layer`` (default: all layers).

    The output is the representation fair-esm returns for that layer: after the final LayerNorm
    (`emb_layer_norm_after`) when it is the last layer, the raw residual stream otherwise, and
    the scaled token embeddings for layer 0. Layers after ``output_layer`` are not built.
    """

    def __init__(self, config: ESM2Config, output_layer: int | None = None) -> None:
        super().__init__()
        output_layer = config.num_layers if output_layer is None else output_layer
        if not 0 <= output_layer <= config.num_layers:
            raise ValueError(f"layer {output_layer} is outside 0..{config.num_layers}")
        self.config = config
        self.output_layer = output_layer
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.padding_idx)
        self.layers = nn.ModuleList(ESM2Layer(config) for _ in range(output_layer))
        self.emb_layer_norm_after = (
            nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps) if output_layer == config.num_layers else None
        )

    def cast_linear_weights(self, dtype: torch.dtype) -> "ESM2Model":
        """Store the weights of the linear layers in ``dtype`` (see the module notes)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.to(dtype)
        return self

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [batch, length] -> float32 representation [batch, length, embed_dim].

        ``attention_mask`` [batch, length] is True on real tokens and False on padding; pass None
        when the batch has no padding, which lets SDPA use its fastest kernels.
        """
        hidden = self.embed_tokens(tokens).float()
        if self.config.token_dropout:
            hidden = hidden * TOKEN_DROPOUT_SCALE
        key_mask = None
        if attention_mask is not None:
            hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
            key_mask = attention_mask[:, None, None, :]
        cos, sin = rotary_tables(tokens.shape[1], self.config.head_dim, tokens.device)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, key_mask)
        if self.emb_layer_norm_after is not None:
            hidden = self.emb_layer_norm_after(hidden)
        return hidden
