#!/usr/bin/env python3
"""Each distinct frame embedded once: the code before this work beside this checkout, on reads
with a known share of duplicates, in one run.

For each duplicate fraction (by default 0%, 20% and 50%), seeded synthetic short reads: distinct
reads cut at random places of coding-rich contigs, then that share of the reads replaced by
exact copies of others (PCR and optical duplicates), shuffled. Each version runs its own
prepare_frames.py and then its embed_dnabert.py and embed_esm.py on every shard it wrote, on the
CPU in fp32 (one core, seeded random-weight models: ESM-2 of --esm-layers x --esm-dim, the tiny
DNABERT-S of the test profile). Printed per fraction and version: frames, the sequences each
model's forward passes ran on (from the embedders' metrics), the forward passes (batches, where
the version reports them), the embedders' forward seconds and the wall seconds of all
embedding tasks (model loads included). Counts are exact; times are indicative.
Prints only: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))
import torch  # noqa: E402
from bench_prepare import contig, frame_count  # noqa: E402  (coding-rich synthetic contigs)
from bench_scale import checkout, scratch, timed, version_arguments  # noqa: E402
from benchmark_embed import random_fair_esm, save_fair_esm_checkpoint  # noqa: E402

from virnucpro import tiny_models  # noqa: E402
from virnucpro.modeling_esm2 import ESM2Config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# the code before issue #17 (each distinct frame embedded once, no padding waste, host ahead)
DEFAULT_BASELINE = "494892b"
SCRIPTS = {"dnabert": "embed_dnabert.py", "esm": "embed_esm.py"}


@dataclass
class Embedded:
    frames: int
    sequences: dict[str, int]  # per model: sequences its forward passes ran on
    batches: dict[str, int | None]  # per model: forward passes, where reported
    forward_seconds: dict[str, float]
    task_seconds: dict[str, float]  # wall seconds of the model's tasks, loads included


def write_reads(path: Path, count: int, length: int, duplicates: float, seed: int) -> None:
    """``count`` reads of ``length`` bp, the share ``duplicates`` of them exact copies of others."""
    rng = np.random.default_rng(seed)
    genome = contig(rng, 2_000_000)
    distinct = count - round(count * duplicates)
    starts = rng.choice(len(genome) - length, size=distinct, replace=False)
    reads = [genome[start : start + length] for start in starts.tolist()]
    reads += [reads[index] for index in rng.integers(0, distinct, size=count - distinct).tolist()]
    order = rng.permutation(count)
    with open(path, "w") as handle:
        handle.writelines(f">read_{number}\n{reads[index]}\n" for number, index in enumerate(order.tolist()))


def write_models(folder: Path, esm_layers: int, esm_dim: int) -> dict[str, Path]:
    """The tiny DNABERT-S of the test profile and a random ESM-2 of the given size, in their files."""
    folder.mkdir()
    tiny_models.write_dnabert(folder / "dnabert", seed=1)
    config = ESM2Config(num_layers=esm_layers, embed_dim=esm_dim, attention_heads=max(1, esm_dim // 64))
    save_fair_esm_checkpoint(random_fair_esm(config, torch.device("cpu")), config, folder / "esm2_bench.pt")
    return {"dnabert": folder / "dnabert", "esm": folder / "esm2_bench.pt"}


def embedding_shards(folder: Path, prefix: str) -> dict[str, list[Path]]:
    """The FASTA files each embedder runs on: P.dnabert.NNNN.fna / P.esm.NNNN.faa (this
    checkout), or P.NNNN.fna / P.NNNN.faa (the code before, one shard of every frame)."""
    ours = {"dnabert": sorted(folder.glob(f"{prefix}.dnabert.*.fna")), "esm": sorted(folder.glob(f"{prefix}.esm.*.faa"))}
    if ours["dnabert"]:
        return ours
    return {"dnabert": sorted(folder.glob(f"{prefix}.[0-9]*.fna")), "esm": sorted(folder.glob(f"{prefix}.[0-9]*.faa"))}


def run_version(bin_dir: Path, fasta: Path, folder: Path, models: dict[str, Path], chunk_size: int) -> Embedded:
    folder.mkdir(parents=True)
    prefix = folder / "s"
    step = timed([sys.executable, str(bin_dir / "prepare_frames.py"), "--fasta", str(fasta), "--chunk-size", str(chunk_size),
                  "--prefix", str(prefix), "--quiet"], bin_dir, [])  # fmt: skip
    if step.status != "ok":
        raise SystemExit(f"prepare_frames.py of {bin_dir}: {step.status}")
    sequences, batches, forward, tasks = {}, {}, {}, {}
    for model, shards in embedding_shards(folder, "s").items():
        sequences[model], batches[model], forward[model], tasks[model] = 0, 0, 0.0, 0.0
        for shard in shards:
            metrics = shard.with_suffix(".metrics.json")
            step = timed([sys.executable, str(bin_dir / SCRIPTS[model]), "--fasta", str(shard), "--model", str(models[model]),
                          "--out", str(shard.with_suffix(".h5")), "--device", "cpu", "--precision", "fp32", "--no-progress",
                          "--quiet", "--metrics", str(metrics)], bin_dir, [])  # fmt: skip
            if step.status != "ok":
                raise SystemExit(f"{SCRIPTS[model]} of {bin_dir} on {shard.name}: {step.status}")
            figures = json.loads(metrics.read_text())
            sequences[model] += figures["items"]
            batches[model] = None if batches[model] is None or "batches" not in figures else batches[model] + figures["batches"]
            forward[model] += figures["seconds"]
            tasks[model] += step.seconds
    return Embedded(frame_count(folder / "s.shards.tsv"), sequences, batches, forward, tasks)


def print_table(rows: list[tuple[float, str, Embedded]]) -> None:
    header = (f"{'duplicates':>10} {'version':<10} {'frames':>7} {'DNABERT seqs':>12} {'ESM seqs':>9} {'ESM passes':>10} "
              f"{'DNABERT fwd s':>13} {'ESM fwd s':>9} {'embed tasks s':>13}")  # fmt: skip
    print(header)
    print("-" * len(header))
    base: Embedded | None = None
    for fraction, version, result in rows:
        passes = "-" if result.batches["esm"] is None else str(result.batches["esm"])
        print(f"{fraction:>10.0%} {version:<10} {result.frames:>7} {result.sequences['dnabert']:>12} {result.sequences['esm']:>9} {passes:>10} "
              f"{result.forward_seconds['dnabert']:>13.1f} {result.forward_seconds['esm']:>9.1f} {sum(result.task_seconds.values()):>13.1f}")
        if version == "base":
            base = result
            continue
        ratio = lambda ours, theirs: f"{ours / theirs:.2f}x" if theirs else "-"  # noqa: E731
        print(f"{'':>10} {'ours/base':<10} {'':>7} {ratio(result.sequences['dnabert'], base.sequences['dnabert']):>12} "
              f"{ratio(result.sequences['esm'], base.sequences['esm']):>9} {'':>10} "
              f"{ratio(result.forward_seconds['dnabert'], base.forward_seconds['dnabert']):>13} "
              f"{ratio(result.forward_seconds['esm'], base.forward_seconds['esm']):>9} "
              f"{ratio(sum(result.task_seconds.values()), sum(base.task_seconds.values())):>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=4000, help="reads per sample")
    parser.add_argument("--read-length", type=int, default=150, help="read length in bp")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.2, 0.5], help="shares of the reads that are duplicates")
    parser.add_argument("--chunk-size", type=int, default=300, choices=(300, 500))
    parser.add_argument("--esm-layers", type=int, default=4, help="layers of the random ESM-2 (the real one: 36)")
    parser.add_argument("--esm-dim", type=int, default=128, help="width of the random ESM-2 (the real one: 2560)")
    version_arguments(parser, DEFAULT_BASELINE)
    args = parser.parse_args()

    with scratch("bench_repeats.", args.workdir) as work:
        models = write_models(work / "models", args.esm_layers, args.esm_dim)
        versions = {"base": checkout(args.baseline, work / "baseline"), "ours": REPO / "bin"}
        rows = []
        started = time.perf_counter()
        for fraction in args.fractions:
            fasta = work / f"reads_{fraction:.2f}.fa"
            write_reads(fasta, args.reads, args.read_length, fraction, seed=1)
            for version, bin_dir in versions.items():
                rows.append((fraction, version, run_version(bin_dir, fasta, work / f"{version}_{fraction:.2f}", models, args.chunk_size)))
        print(f"baseline {args.baseline} against this checkout; {args.reads} reads of {args.read_length} bp, chunk size {args.chunk_size}; "
              f"CPU, one core, fp32; ESM-2 {args.esm_layers} x {args.esm_dim} with random weights; {time.perf_counter() - started:.0f} s in all")
        print_table(rows)


if __name__ == "__main__":
    main()
