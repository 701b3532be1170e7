#!/usr/bin/env python3
"""No padding waste: the embedders' batching before this work beside this checkout, in one run.

The token budget groups proteins longest first by count x longest; before, a shard that fits one
budget became one batch padded to its longest protein. For each input set (length mixes and
shard sizes, including the 200 proteins of 50-170 aa where the waste was first seen) and each
budget, each version batches and embeds the same proteins with the same random ESM-2 on the
CPU (fp32, one core) through its own embedding.embed_token_ids. Printed: forward passes, real
tokens, padded tokens (what the batches computed) and padding as a share of the real tokens,
attention work (sum of count x longest^2 over the batches) relative to the same proteins
without padding, and seconds; fair-esm's own model with VirNucPro's recipe (2048-token batches)
on the same proteins for scale. Counts are exact; times are indicative.
Prints only: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_repeats import DEFAULT_BASELINE  # noqa: E402
from bench_scale import checkout, scratch, version_arguments  # noqa: E402
from benchmark_embed import AMINO_ACIDS, frame_lengths_mix, measure, original_esm_recipe, random_fair_esm, save_fair_esm_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bin"))
from virnucpro.modeling_esm2 import ESM2Config  # noqa: E402

# Run with one version's bin/ first on sys.path. argv: checkpoint, proteins (one per line), budget.
# Prints one JSON line: what that version's batching and forward passes did.
EMBED = r"""
import json, sys, time
import numpy as np
import torch
from virnucpro import embedding, esm
checkpoint, proteins, budget = sys.argv[1], open(sys.argv[2]).read().split(), int(sys.argv[3])
model = esm.open_checkpoint(checkpoint, None, "off").load(torch.device("cpu"), torch.float32).module
token_ids = esm.tokenize(proteins)
counts = [len(ids) + 2 for ids in token_ids]
batches = embedding.token_budget_batches(counts, budget)
embedder = esm.ESMEmbedder(model, "off")
embedding.embed_token_ids(embedder, token_ids[:8], torch.device("cpu"), budget)  # warm-up
started = time.perf_counter()
embedding.embed_token_ids(embedder, token_ids, torch.device("cpu"), budget)
seconds = time.perf_counter() - started
longest = [max(counts[i] for i in batch) for batch in batches]
print(json.dumps({
    "batches": len(batches), "real": sum(counts), "padded": sum(len(b) * l for b, l in zip(batches, longest)),
    "attention": sum(len(b) * l * l for b, l in zip(batches, longest)), "unpadded_attention": sum(c * c for c in counts),
    "seconds": seconds,
}))
"""


def input_sets(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Protein lengths of each input set."""
    return {
        "200 x 50-170 aa": rng.integers(50, 171, 200),
        "2000, 300/500 bp frame mix": frame_lengths_mix(rng, 2000),
        "2000 x 1-166 aa": rng.integers(1, 167, 2000),
        "1000 x 17 or 166 aa": rng.choice([17, 166], 1000),
    }


def run_embed(bin_dir: Path, checkpoint: Path, proteins: Path, budget: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(bin_dir), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = ["taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, "-c", EMBED, str(checkpoint), str(proteins), str(budget)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{bin_dir}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fair_esm_seconds(model: torch.nn.Module, proteins: Path, fasta: Path) -> float:
    fasta.write_text("".join(f">p{index}\n{protein}\n" for index, protein in enumerate(proteins.read_text().split())))
    torch.set_num_threads(1)
    return measure(torch.device("cpu"), lambda: original_esm_recipe(model, fasta, torch.device("cpu"), 2048, autocast=False))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[65536, 16384, 2048], help="padded-token budgets per batch")
    parser.add_argument("--esm-layers", type=int, default=6, help="layers of the random ESM-2 (esm2_t6_8M: 6; the real one: 36)")
    parser.add_argument("--esm-dim", type=int, default=320, help="width of the random ESM-2 (esm2_t6_8M: 320; the real one: 2560)")
    version_arguments(parser, DEFAULT_BASELINE)
    args = parser.parse_args()

    with scratch("bench_padding.", args.workdir) as work:
        config = ESM2Config(num_layers=args.esm_layers, embed_dim=args.esm_dim, attention_heads=max(1, args.esm_dim // 16))
        model = random_fair_esm(config, torch.device("cpu"))
        checkpoint = work / "esm2_bench.pt"
        save_fair_esm_checkpoint(model, config, checkpoint)
        versions = {"base": checkout(args.baseline, work / "baseline"), "ours": REPO / "bin"}
        rng = np.random.default_rng(1)
        print(f"baseline {args.baseline} against this checkout; CPU, one core, fp32; random ESM-2 {args.esm_layers} x {args.esm_dim}")
        header = f"{'proteins':<28} {'budget':>7} {'version':<8} {'passes':>6} {'real tok':>9} {'padded tok':>10} {'padding':>8} {'attention':>9} {'seconds':>8} {'x fair-esm':>10}"
        print(header)
        print("-" * len(header))
        for number, (name, lengths) in enumerate(input_sets(rng).items()):
            proteins = work / f"set{number}.txt"
            proteins.write_text("".join("".join(rng.choice(AMINO_ACIDS, size=int(length))) + "\n" for length in lengths))
            fair = fair_esm_seconds(model, proteins, work / f"set{number}.faa")
            print(f"{name:<28} {'2048':>7} {'fair-esm':<8} {'':>6} {'':>9} {'':>10} {'':>8} {'':>9} {fair:>8.2f} {1.0:>10.2f}")
            for budget in args.budgets:
                for version, bin_dir in versions.items():
                    run = run_embed(bin_dir, checkpoint, proteins, budget)
                    padding = run["padded"] / run["real"] - 1
                    attention = run["attention"] / run["unpadded_attention"]
                    print(f"{name:<28} {budget:>7} {version:<8} {run['batches']:>6} {run['real']:>9} {run['padded']:>10} {padding:>8.1%} "
                          f"{attention:>8.2f}x {run['seconds']:>8.2f} {run['seconds'] / fair:>10.2f}")


if __name__ == "__main__":
    main()
