#!/usr/bin/env python3
"""Sweep --batch-tokens for embed_esm.py and embed_dnabert.py on this GPU.

For each token budget: throughput and peak GPU memory of our embedding path (random weights
of the real architectures, bf16, on a mix of frame lengths), then the recommendation: the
budget with the highest throughput whose peak stays at most 80% of the GPU's memory (20%
headroom for fragmentation, other processes and longer proteins than the sweep's).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))

from benchmark_embed import QUICK_DNABERT, QUICK_ESM, frame_lengths_mix, measure  # noqa: E402
from virnucpro import dnabert, esm, tiny_models  # noqa: E402
from virnucpro.embedding import PRECISIONS, embed_token_ids, resolve_device, resolve_dtype  # noqa: E402
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


class OutOfMemoryCounter(logging.Handler):
    """Counts embed_in_batches' warnings that it split a batch after CUDA ran out of memory."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "out of memory" in record.getMessage()


def sweep(name: str, budgets: list[int], device: torch.device, items: int, embed) -> list[tuple[int, float | None, int | None]]:
    """(budget, items/s, peak bytes) for each budget; items/s is None where a batch ran out of
    memory (embed_in_batches then splits it, so the budget is too large for this GPU)."""
    counter = OutOfMemoryCounter()
    logging.getLogger("virnucpro").addHandler(counter)
    rows = []
    for budget in budgets:
        counter.count = 0
        try:
            embed(budget)  # warm-up: allocator caches, compiled graphs
            seconds, peak = measure(device, lambda: embed(budget))
            rows.append((budget, None if counter.count else items / seconds, peak))
        except VirNucProError:  # a single sequence did not fit
            rows.append((budget, None, None))
        rate = f"{rows[-1][1]:.1f} items/s" if rows[-1][1] else "out of memory"
        print(f"  {name} --batch-tokens {budget}: {rate}", file=sys.stderr)
    logging.getLogger("virnucpro").removeHandler(counter)
    return rows


def report(name: str, rows: list[tuple[int, float | None, int | None]], total_memory: int | None) -> None:
    print(f"{name}")
    print(f"{'batch tokens':>12} {'items/s':>9} {'peak GiB':>9} {'of GPU':>7}")
    for budget, rate, peak in rows:
        share = f"{peak / total_memory:.0%}" if peak is not None and total_memory else "-"
        peak_text = f"{peak / 2**30:.1f}" if peak is not None else "-"
        print(f"{budget:>12} {f'{rate:.1f}' if rate else 'OOM':>9} {peak_text:>9} {share:>7}")
    fitting = [
        (rate, budget) for budget, rate, peak in rows
        if rate is not None and (total_memory is None or peak <= (1 - HEADROOM) * total_memory)
    ]
    if fitting:
        rate, budget = max(fitting)
        print(f"recommended --batch-tokens {budget} ({rate:.1f} items/s, >= {HEADROOM:.0%} memory headroom)\n")
    else:
        print(f"no budget kept {HEADROOM:.0%} memory headroom: try smaller ones with --budgets\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="as embed_esm.py's --precision")
    parser.add_argument("--budgets", type=int, nargs="+", help=f"token budgets to try (default {DEFAULT_BUDGETS}; small ones with --quick)")
    parser.add_argument("--items", type=int, help="proteins / frames per measurement (default 4000; 64 with --quick)")
    parser.add_argument("--compile", choices=esm.COMPILE_MODES, default="auto", help="torch.compile the ESM-2 layers, as embed_esm.py (auto = on for CUDA)")
    parser.add_argument("--quick", action="store_true", help="tiny models: a CPU smoke run")
    parser.add_argument("--skip-esm", action="store_true", help="sweep DNABERT-S only")
    parser.add_argument("--skip-dnabert", action="store_true", help="sweep ESM-2 only")
    args = parser.parse_args()
    if args.budgets is None:
        args.budgets = [512, 2048, 8192] if args.quick else DEFAULT_BUDGETS
    if args.items is None:
        args.items = 64 if args.quick else 4000
    return args


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    total_memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; precision {dtype}; {args.items} items per measurement\n")
    rng = np.random.default_rng(0)

    if not args.skip_esm:
        compile_layers = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
        model = random_esm(QUICK_ESM if args.quick else ESM2Config(), device, dtype, compile_layers)
        token_ids = [rng.integers(4, 24, n).astype(np.int64) for n in frame_lengths_mix(rng, args.items)]
        rows = sweep("ESM-2", args.budgets, device, args.items, lambda budget: embed_token_ids(esm.ESMEmbedder(model, "off"), token_ids, device, budget))
        report(f"ESM-2 {'(tiny) ' if args.quick else '3B '}on a 300/500 bp frame mix", rows, total_memory)
        del model

    if not args.skip_dnabert:
        config = QUICK_DNABERT if args.quick else DNABertConfig()
        model = dnabert.DNABertEmbedder(random_dnabert(config, device, dtype), tiny_models.dnabert_tokenizer())  # token ids are given
        token_ids = [np.concatenate(([1], rng.integers(5, config.vocab_size, n - 2), [2])).astype(np.int64) for n in rng.integers(100, 115, args.items)]
        rows = sweep("DNABERT-S", args.budgets, device, args.items, lambda budget: embed_token_ids(model, token_ids, device, budget))
        report(f"DNABERT-S {'(tiny) ' if args.quick else ''}on frames of 499 nt (~107 tokens)", rows, total_memory)


if __name__ == "__main__":
    main()
