#!/usr/bin/env python3
"""Sweep --batch-tokens for embed_esm.py and embed_dnabert.py on this GPU.

For each token budget: throughput and peak GPU memory of our embedding path (random weights
of the real architectures, bf16, on a mix of frame lengths), then the recommendation: the
budget with the highest throughput whose peak stays at most 80% of the GPU's memory (20%
headroom for fragmentation, other processes and longer proteins than the sweep's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))

from benchmark_embed import QUICK_DNABERT, QUICK_ESM, frame_lengths_mix, measure  # noqa: E402
from virnucpro import dnabert, esm  # noqa: E402
from virnucpro.embedding import resolve_device, resolve_dtype  # noqa: E402
from virnucpro.errors import VirNucProError  # noqa: E402
from virnucpro.modeling_dnabert import DNABertConfig, DNABertModel  # noqa: E402
from virnucpro.modeling_esm2 import ESM2Config, ESM2Model  # noqa: E402

HEADROOM = 0.2
DEFAULT_BUDGETS = [8192, 16384, 32768, 65536, 98304, 131072, 196608, 262144]


def random_esm(config: ESM2Config, device: torch.device, dtype: torch.dtype, compile_layers: bool) -> ESM2Model:
    torch.manual_seed(0)
    with torch.device(device):
        model = ESM2Model(config).cast_linear_weights(dtype).eval().requires_grad_(False)
    if compile_layers:
        print(f"ESM-2 compile warm-up: {esm.compile_layers(model, device):.1f} s", file=sys.stderr)
    return model


def random_dnabert(config: DNABertConfig, device: torch.device, dtype: torch.dtype) -> DNABertModel:
    torch.manual_seed(0)
    return DNABertModel(config).to(device=device, dtype=dtype).eval().requires_grad_(False)


def sweep(name: str, budgets: list[int], device: torch.device, embed) -> list[tuple[int, float | None, int | None]]:
    """(budget, items/s or None on out-of-memory, peak bytes) for each budget."""
    rows = []
    for budget in budgets:
        try:
            embed(budget)  # first pass: allocator warm-up (and compile of any new shape kind)
            items, seconds_peak = embed(budget), None
            seconds, peak = measure(device, lambda: embed(budget))
            rows.append((budget, items / seconds, peak))
        except VirNucProError:
            rows.append((budget, None, None))
        except torch.cuda.OutOfMemoryError:
            rows.append((budget, None, None))
        torch.cuda.empty_cache() if device.type == "cuda" else None
        rate = f"{rows[-1][1]:.1f}/s" if rows[-1][1] else "out of memory"
        print(f"  {name} --batch-tokens {budget}: {rate}", file=sys.stderr)
    return rows
