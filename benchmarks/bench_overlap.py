#!/usr/bin/env python3
"""The host ahead of the device: an embedding task before this work beside this checkout, in one
run, with a model stand-in whose forward pass waits like a GPU.

Each version runs its own embed_dnabert.py (or embed_esm.py) on the same frames, with the
model's forward replaced by a wait of (padded tokens in the batch) / --device-rate seconds that
returns zeros: the host's work (reading the FASTA, tokenising with the real tokenizer, building
padded batches, taking results) stays real, the device's is a sleep, as a CUDA synchronisation
is. Before, a task tokenised its whole shard first and then built and waited for each batch in
turn, so its time was host + device; now batches are built in a thread ahead of the forward
passes, so it approaches the larger of the two. Printed per version and device rate: host
seconds (tokenising and batching, from the metrics, plus the batch building the stand-in does
for the code before), device seconds (the stand-in's waits), the embedding's wall seconds, and
that over their sum and over the larger. Times only; nothing passes or fails.
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
from bench_repeats import DEFAULT_BASELINE  # noqa: E402
from bench_scale import checkout, scratch, version_arguments  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DNABERT = REPO.parent / "shared" / "reference" / "models" / "dnabert_s_tiny"  # the real DNABERT-2 BPE tokenizer

# Runs a version's embedder script with the model's forward pass replaced by a wait. Run with the
# version's bin/ first on sys.path. argv: report (JSON), device tokens per second, script, its arguments.
STAND_IN = r"""
import json, runpy, sys, time
import torch
from virnucpro import dnabert, embedding, esm
report, rate, script = sys.argv[1], float(sys.argv[2]), sys.argv[3]
spent = {"device": 0.0, "host": 0.0}

def wait(tokens):
    seconds = tokens / rate
    time.sleep(seconds)
    spent["device"] += seconds

for module, embedder, arguments in ((dnabert, dnabert.DNABertEmbedder, (dnabert.PADDING_ID,)), (esm, esm.ESMEmbedder, ())):
    if hasattr(embedder, "_forward"):  # the code before: host and device work in one call
        def _forward(self, batch, device, module=module, arguments=arguments):
            started = time.perf_counter()
            tokens, _ = module.padded_batch(batch, *arguments, device)
            spent["host"] += time.perf_counter() - started
            wait(tokens.numel())
            return torch.zeros(len(batch), self.dim)
        embedder._forward = _forward
    else:
        def forward(self, inputs, device):
            wait(inputs[0].numel())
            return torch.zeros(inputs[0].shape[0], self.dim)
        embedder.forward = forward
sys.argv = sys.argv[3:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    json.dump(spent, open(report, "w"))
"""


def write_frames(path: Path, count: int, length: int, seed: int) -> None:
    """``count`` random nucleotide frames of ``length`` nt (as DNABERT-S embeds them)."""
    rng = np.random.default_rng(seed)
    bases = np.array(list("ACGT"))
    with open(path, "w") as handle:
        for number in range(count):
            handle.write(f">f{number}_chunk_1F1\n{''.join(rng.choice(bases, size=length))}\n")


def run(bin_dir: Path, work: Path, fasta: Path, model: Path, rate: float, batch_tokens: int, name: str) -> dict[str, float]:
    report, metrics = work / f"{name}.spent.json", work / f"{name}.metrics.json"
    command = [sys.executable, "-c", STAND_IN, str(report), str(rate), str(bin_dir / "embed_dnabert.py"), "--fasta", str(fasta),
               "--model", str(model), "--out", str(work / f"{name}.h5"), "--device", "cpu", "--precision", "fp32",
               "--batch-tokens", str(batch_tokens), "--no-progress", "--quiet", "--metrics", str(metrics)]  # fmt: skip
    result = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(bin_dir)}, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{bin_dir}: {result.stderr.strip()[-2000:]}")
    spent, figures = json.loads(report.read_text()), json.loads(metrics.read_text())
    if "host_wait_seconds" in figures:  # this checkout: seconds covers tokenising too, done in the thread ahead
        embedding, host = figures["seconds"], figures["tokenize_seconds"]
    else:  # the code before: the whole shard tokenised, then the forward passes
        embedding, host = figures["tokenize_seconds"] + figures["seconds"], figures["tokenize_seconds"] + spent["host"]
    return {"host": host, "device": spent["device"], "embedding": embedding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40000, help="frames in the shard")
    parser.add_argument("--length", type=int, default=499, help="nucleotides per frame (500 bp chunks: 499)")
    parser.add_argument("--device-rates", type=float, nargs="+", default=[2.1e6, 2e5],
                        help="tokens per second the stand-in device computes: DNABERT-S's target on an H100 (20,000 frames of "
                             "~107 tokens a second), and a device about as slow as one core tokenising")  # fmt: skip
    parser.add_argument("--batch-tokens", type=int, default=32768, help="padded-token budget per batch (embed_dnabert.py's default)")
    parser.add_argument("--model", type=Path, default=REFERENCE_DNABERT if REFERENCE_DNABERT.is_dir() else None,
                        help="a DNABERT-S checkpoint folder, for its tokenizer (default: the reference's tiny model, which has the real one; "
                             "without it, the test profile's tiny model and its toy tokenizer)")  # fmt: skip
    version_arguments(parser, DEFAULT_BASELINE)
    args = parser.parse_args()

    with scratch("bench_overlap.", args.workdir) as work:
        model = args.model
        if model is None:
            sys.path.insert(0, str(REPO / "bin"))
            from virnucpro import tiny_models

            model = work / "dnabert"
            tiny_models.write_dnabert(model, seed=1)
        fasta = work / "frames.fna"
        write_frames(fasta, args.frames, args.length, seed=1)
        versions = {"base": checkout(args.baseline, work / "baseline"), "ours": REPO / "bin"}
        print(f"baseline {args.baseline} against this checkout; embed_dnabert.py on {args.frames} frames of {args.length} nt, "
              f"tokenizer of {model.name}, batch budget {args.batch_tokens}; the forward pass is a wait")
        header = f"{'device rate':>15} {'version':<8} {'host s':>7} {'device s':>8} {'embedding s':>11} {'/ (host+device)':>15} {'/ max(host, device)':>19}"
        print(header)
        print("-" * len(header))
        for rate in args.device_rates:
            for version, bin_dir in versions.items():
                figures = run(bin_dir, work, fasta, model, rate, args.batch_tokens, f"{version}_{rate:g}")
                host, device, embedding = figures["host"], figures["device"], figures["embedding"]
                print(f"{rate:>11,.0f} t/s {version:<8} {host:>7.1f} {device:>8.1f} {embedding:>11.1f} "
                      f"{embedding / (host + device):>15.2f} {embedding / max(host, device):>19.2f}")


if __name__ == "__main__":
    main()
