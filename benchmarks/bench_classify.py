#!/usr/bin/env python3
"""Wall time, frames/s and peak memory (max RSS) of classify_frames.py on synthetic shards.

Shards have the real dimensions (DNABERT-S 768 + ESM-2 3B 2560 -> hidden 512 -> 2), random
embeddings written with contracts.write_embeddings in each storage precision, and a random
classifier state dict. Each run is the whole bin script under `/usr/bin/time -v` on one CPU core
(`taskset -c 0`, OMP_NUM_THREADS=1) with its inputs read once beforehand so they sit in the page
cache; `--bin` points at another checkout's bin/ to compare versions. Columns: wall-clock seconds
and frames/s of the whole script (interpreter start-up and imports included), frames/s inside the
script (its --metrics seconds), CPU seconds (user + system) and frames per CPU second (what counts
on a shared machine), and the maximum resident set size. Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DNABERT_DIM, ESM_DIM, HIDDEN_DIM = 768, 2560, 512


def frame_ids(count: int) -> list[str]:
    from virnucpro.contracts import FRAME_LABELS

    return [f"contig{i // 60:07d}_chunk_{i // 6 % 10 + 1}{FRAME_LABELS[i % 6]}" for i in range(count)]


def write_shard(folder: Path, frames: int, precision: str) -> tuple[Path, Path]:
    from virnucpro import contracts

    dnabert, esm = folder / f"{frames}.{precision}.dnabert.h5", folder / f"{frames}.{precision}.esm.h5"
    ids = frame_ids(frames) if not (dnabert.exists() and esm.exists()) else []
    rng = np.random.default_rng(frames)
    for path, role, model, dim, layer in ((dnabert, contracts.DNABERT, "DNABERT-S", DNABERT_DIM, 12),
                                          (esm, contracts.ESM, "esm2_t36_3B_UR50D", ESM_DIM, 36)):
        if not path.exists():
            vectors = rng.standard_normal((frames, dim), dtype=np.float32)
            attributes = {"model_role": role, "model": model, "layer": layer, "pooling": "mean", "precision": precision}
            contracts.write_embeddings(path, ids, vectors, attributes)
    return dnabert, esm


def write_classifier(path: Path) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    weights = {
        "hidden_layer.weight": torch.randn(HIDDEN_DIM, DNABERT_DIM + ESM_DIM, generator=generator) * 0.02,
        "hidden_layer.bias": torch.randn(HIDDEN_DIM, generator=generator) * 0.02,
        "bn1.weight": 1 + 0.1 * torch.randn(HIDDEN_DIM, generator=generator),
        "bn1.bias": 0.1 * torch.randn(HIDDEN_DIM, generator=generator),
        "bn1.running_mean": 0.1 * torch.randn(HIDDEN_DIM, generator=generator),
        "bn1.running_var": 0.5 + torch.rand(HIDDEN_DIM, generator=generator),
        "output_layer.weight": torch.randn(2, HIDDEN_DIM, generator=generator) * 0.1,
        "output_layer.bias": torch.zeros(2),
    }
    torch.save(weights, path)


def read_into_page_cache(*paths: Path) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def timed_run(bin_dir: Path, dnabert: Path, esm: Path, classifier: Path, out: Path) -> dict[str, float]:
    metrics = out.with_suffix(".metrics.json")
    command = ["/usr/bin/time", "-v", "taskset", "-c", "0", sys.executable, str(bin_dir / "classify_frames.py"),
               "--dnabert", str(dnabert), "--esm", str(esm), "--classifier", str(classifier), "--out", str(out),
               "--device", "cpu", "--quiet", "--metrics", str(metrics)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1]}
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr).group(1)
    wall = sum(float(part) * 60**power for power, part in enumerate(reversed(clock.split(":"))))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", result.stderr).group(1)) for kind in ("User", "System"))
    return {"wall": wall, "cpu": cpu, "inside": json.loads(metrics.read_text())["seconds"], "rss_mib": rss_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--bin", type=Path, default=REPO / "bin", help="the bin/ folder whose classify_frames.py runs")
    parser.add_argument("--workdir", type=Path, help="keep the shards here (reused between runs; 400k fp32 is 5.3 GB)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bin"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        classifier = folder / "classifier_real_dims.pt"
        write_classifier(classifier)
        print(f"classify_frames.py from {args.bin}, one core, inputs in the page cache")
        print(f"{'frames':>8} {'storage':>8} {'wall s':>7} {'frames/s':>9} {'in-script':>10} {'CPU s':>7} {'frames/CPU-s':>13} {'max RSS MiB':>12}")
        for frames in args.frames:
            for precision in args.precisions:
                dnabert, esm = write_shard(folder, frames, precision)
                read_into_page_cache(dnabert, esm)
                figures = timed_run(args.bin, dnabert, esm, classifier, folder / f"{frames}.{precision}.predictions.tsv")
                if "error" in figures:
                    print(f"{frames:>8} {precision:>8} failed: {figures['error']}")
                    continue
                print(f"{frames:>8} {precision:>8} {figures['wall']:>7.1f} {frames / figures['wall']:>9.0f} "
                      f"{frames / figures['inside']:>10.0f} {figures['cpu']:>7.1f} {frames / figures['cpu']:>13.0f} "
                      f"{figures['rss_mib']:>12.0f}")


if __name__ == "__main__":
    main()
