#!/usr/bin/env python3
"""Every CPU stage at scale, this checkout side by side with an earlier commit, in one run.

Two synthetic samples (seeded): short reads cut from coding-rich contigs, and the contigs
themselves. Each goes through prepare_frames.py, the embedding stage with its model forwards
replaced by seeded random vectors of the real shapes (768 for DNABERT-S, 2560 for ESM-2)
written by that version's own HDF5 writer (ours: as after bf16 compute, the GPU default),
classify_frames.py with a random classifier of the real size (3328 -> 512 -> 2), summarize.py
and make_report.py, each with its default options. Every stage runs as a subprocess under
/usr/bin/time on one core; the table gives wall seconds, peak resident memory and bytes written
per stage and version. Prints only: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import contig, frame_count  # noqa: E402  (coding-rich synthetic contigs)

REPO = Path(__file__).resolve().parents[1]
# the code before the scale work of issue #9 (streaming stages, float16 storage, token-sized shards)
DEFAULT_BASELINE = "2ed073f"
DNABERT_DIM, ESM_DIM, HIDDEN_DIM = 768, 2560, 512
STAGES = ("prepare_frames", "embed (random vectors)", "classify_frames", "summarize", "make_report")

# Writes random embeddings of one shard with the version's own writer (run with its bin/ first on
# sys.path). argv: fasta, out, dim, role, seed.
FAKE_EMBEDDER = r"""
import sys
import numpy as np
fasta, out, dim, role, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ids = [line[1:].rstrip("\n") for line in open(fasta) if line.startswith(">")]
attributes = {"model_role": role, "model": "random", "layer": "last", "pooling": "mean", "precision": "bf16"}
try:  # held in memory as the embedder holds its result: in the storage dtype
    from virnucpro.contracts import storage_dtype, write_embeddings
    dtype = storage_dtype("bf16")
except ImportError:  # the baseline: float32 always, fewer attributes
    from virnucpro.embedding import write_embeddings
    attributes = {"model": "random", "layer": "last", "pooling": "mean", "precision": "bf16", "dim": dim}
    dtype = np.float32
rng = np.random.default_rng(seed)
vectors = np.empty((len(ids), dim), dtype=dtype)
for start in range(0, len(ids), 65536):
    block = vectors[start:start + 65536]
    block[:] = rng.standard_normal(block.shape, dtype=np.float32)
write_embeddings(out, ids, vectors, attributes)
"""


@dataclass
class Measure:
    seconds: float
    peak_bytes: int
    written_bytes: int
    status: str


def write_reads(path: Path, reads: int, length: int, seed: int) -> None:
    """Reads of ``length`` bp tiled from synthetic contigs, one line each."""
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "w") as handle:
        while written < reads:
            source = contig(rng, 200_000)
            for start in range(0, len(source) - length, length):
                if written == reads:
                    break
                handle.write(f">read_{written} sample=synthetic\n{source[start:start + length]}\n")
                written += 1


def write_contigs(path: Path, megabases: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    total, number = 0, 0
    with open(path, "w") as handle:
        while total < megabases * 1e6:
            length = int(rng.integers(2_000, 60_000))
            sequence = contig(rng, length)
            handle.write(f">contig_{number}\n")
            handle.writelines(sequence[i : i + 80] + "\n" for i in range(0, len(sequence), 80))
            total, number = total + len(sequence), number + 1


def write_classifier(path: Path) -> None:
    import torch

    generator = torch.Generator().manual_seed(3)
    weights = {
        "hidden_layer.weight": torch.randn(HIDDEN_DIM, DNABERT_DIM + ESM_DIM, generator=generator) * 0.02,
        "hidden_layer.bias": torch.zeros(HIDDEN_DIM),
        "bn1.weight": torch.ones(HIDDEN_DIM),
        "bn1.bias": torch.zeros(HIDDEN_DIM),
        "bn1.running_mean": torch.zeros(HIDDEN_DIM),
        "bn1.running_var": torch.ones(HIDDEN_DIM),
        "output_layer.weight": torch.randn(2, HIDDEN_DIM, generator=generator) * 0.1,
        "output_layer.bias": torch.zeros(2),
    }
    torch.save(weights, path)


def version_arguments(parser: argparse.ArgumentParser, baseline: str) -> None:
    """--baseline and --workdir, which every benchmark of this checkout against an earlier commit takes."""
    parser.add_argument("--baseline", default=baseline, help="the commit to compare with")
    parser.add_argument("--workdir", type=Path, help="where inputs and outputs go (default: a temporary folder)")


@contextlib.contextmanager
def scratch(prefix: str, workdir: Path | None) -> Iterator[Path]:
    """A new folder under ``workdir`` (default: the system's temporary folder), removed at the end."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def checkout(ref: str, target: Path) -> Path:
    """The bin/ folder of ``ref`` (a commit of this repository), extracted under ``target``."""
    target.mkdir(parents=True)
    archive = target / "bin.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), ref, "bin"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "bin"


def files_bytes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
        elif path.exists():
            total += path.stat().st_size
    return total


def timed(command: list[str], bin_dir: Path, outputs: list[Path]) -> Measure:
    """Run ``command`` on one core under /usr/bin/time; peak RSS from its report."""
    report = Path(tempfile.mkstemp(suffix=".time")[1])
    env = {**os.environ, "PYTHONPATH": str(bin_dir), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    core = str(min(os.sched_getaffinity(0)))
    started = time.perf_counter()
    result = subprocess.run(
        ["taskset", "-c", core, "/usr/bin/time", "-v", "-o", str(report), *command],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    seconds = time.perf_counter() - started
    peak_kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report.read_text())
    report.unlink()
    status = "ok" if result.returncode == 0 else f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}"
    return Measure(seconds, int(peak_kb.group(1)) * 1024 if peak_kb else 0, files_bytes(outputs), status)


def add(total: Measure | None, part: Measure) -> Measure:
    if total is None:
        return part
    status = total.status if total.status != "ok" else part.status
    return Measure(total.seconds + part.seconds, max(total.peak_bytes, part.peak_bytes), total.written_bytes + part.written_bytes, status)


def accepted(bin_dir: Path, script: str, option: str, value: str) -> list[str]:
    """[option, value] when this version's script has the option (the baseline may predate it)."""
    usage = subprocess.run([sys.executable, str(bin_dir / script), "--help"], capture_output=True, text=True, cwd=bin_dir).stdout
    return [option, value] if option in usage else []


def embed(python: str, bin_dir: Path, fasta: Path, out: Path, dim: int, role: str, seed: int, results: dict) -> None:
    step = timed([python, "-c", FAKE_EMBEDDER, str(fasta), str(out), str(dim), role, str(seed)], bin_dir, [out])
    results["embed (random vectors)"] = add(results["embed (random vectors)"], step)


def classify(command: list[str], bin_dir: Path, out: Path, results: dict) -> None:
    step = timed([*command, "--out", str(out), "--device", "cpu", "--quiet"], bin_dir, [out])
    results["classify_frames"] = add(results["classify_frames"], step)


def classify_pairs(python: str, bin_dir: Path, folder: Path, sample: str, classifier: Path, results: dict) -> list[Path]:
    """Shards of frames embedded by both models (the code before issue #17): per shard two
    embedding files and the classifier on them."""
    predictions = []
    for number, fna in enumerate(sorted(folder.glob(f"{sample}.[0-9][0-9][0-9][0-9].fna"))):
        shard = fna.with_suffix("")
        for suffix, dim, role in ((".fna", DNABERT_DIM, "dnabert"), (".faa", ESM_DIM, "esm")):
            embed(python, bin_dir, Path(str(shard) + suffix), Path(f"{shard}.{role}.h5"), dim, role, number, results)
        predictions.append(Path(f"{shard}.predictions.tsv"))
        classify([python, str(bin_dir / "classify_frames.py"), "--dnabert", f"{shard}.dnabert.h5", "--esm", f"{shard}.esm.h5",
                  "--classifier", str(classifier)], bin_dir, predictions[-1], results)
        for h5 in (f"{shard}.dnabert.h5", f"{shard}.esm.h5"):
            Path(h5).unlink(missing_ok=True)  # their bytes are counted; the disk is not infinite
    return predictions


def classify_distinct(python: str, bin_dir: Path, folder: Path, sample: str, classifier: Path, results: dict) -> list[Path]:
    """Shards of each model's distinct sequences, embedded once, and frame shards classified
    with all of them."""
    embeddings: dict[str, list[str]] = {}
    for role, suffix, dim in (("dnabert", "fna", DNABERT_DIM), ("esm", "faa", ESM_DIM)):
        embeddings[role] = []
        for number, fasta in enumerate(sorted(folder.glob(f"{sample}.{role}.*.{suffix}"))):
            embeddings[role].append(str(fasta.with_suffix(".h5")))
            embed(python, bin_dir, fasta, fasta.with_suffix(".h5"), dim, role, number, results)
    predictions = []
    for frames in sorted(folder.glob(f"{sample}.[0-9]*.frames.tsv")):
        predictions.append(folder / frames.name.replace(".frames.tsv", ".predictions.tsv"))
        classify([python, str(bin_dir / "classify_frames.py"), "--frames", str(frames), "--shards", str(folder / f"{sample}.shards.tsv"),
                  "--dnabert", *embeddings["dnabert"], "--esm", *embeddings["esm"], "--classifier", str(classifier)], bin_dir, predictions[-1], results)
    for h5 in embeddings["dnabert"] + embeddings["esm"]:
        Path(h5).unlink()
    return predictions


def run_version(name: str, bin_dir: Path, work: Path, samples: dict[str, Path], classifier: Path, chunk_size: int) -> dict[str, Measure]:
    """Every stage of one version over every sample; per stage the sum of seconds and bytes, the
    largest peak."""
    python = sys.executable
    results: dict[str, Measure | None] = dict.fromkeys(STAGES)
    calls: list[Path] = []
    metrics: list[Path] = []
    for sample, fasta in samples.items():
        folder = work / name / sample
        folder.mkdir(parents=True)
        prefix = folder / sample
        metrics.append(folder / "prepare.json")
        step = timed([python, str(bin_dir / "prepare_frames.py"), "--fasta", str(fasta), "--chunk-size", str(chunk_size),
                      "--prefix", str(prefix), "--metrics", str(metrics[-1]), "--quiet"], bin_dir, [folder])
        results["prepare_frames"] = add(results["prepare_frames"], step)
        if (folder / f"{sample}.0001.frames.tsv").exists():  # shards of distinct sequences and of frames (issue #17)
            predictions = classify_distinct(python, bin_dir, folder, sample, classifier, results)
        else:
            predictions = classify_pairs(python, bin_dir, folder, sample, classifier, results)
        outdir = folder / "results"
        step = timed([python, str(bin_dir / "summarize.py"), "--sample", sample, "--predictions", *map(str, predictions),
                      "--sequences", f"{prefix}.sequences.tsv", "--fasta", str(fasta), "--outdir", str(outdir),
                      *accepted(bin_dir, "summarize.py", "--chunk-size", str(chunk_size)), "--metrics", str(metrics[-1]), "--quiet"],
                     bin_dir, [outdir])  # fmt: skip
        results["summarize"] = add(results["summarize"], step)
        calls.append(outdir / "sequence_calls.tsv")
    models = work / name / "models.json"
    models.write_text(json.dumps({"classifier": {"name": "random", "path": str(classifier), "sha256": ""}}))
    report = work / name / "report.html"
    mqc = work / name / "virnucpro_mqc.tsv"
    results["make_report"] = timed([python, str(bin_dir / "make_report.py"), "--calls", *map(str, calls), "--models", str(models),
                                    "--out", str(report), "--mqc", str(mqc), "--metrics", *map(str, metrics), "--quiet"], bin_dir, [report, mqc])
    return results


def print_table(samples: dict[str, Path], frames: dict[str, int], rows: dict[str, dict[str, Measure]]) -> None:
    (base_name, base), (ours_name, ours) = rows.items()
    print(f"inputs: {', '.join(f'{name} {path.stat().st_size / 1e6:.0f} MB' for name, path in samples.items())}; "
          f"frames (ours): {', '.join(f'{name} {count}' for name, count in frames.items())}")
    header = f"{'stage':<24} {'version':<10} {'seconds':>9} {'peak MB':>9} {'written MB':>11}  status"
    print(header)
    print("-" * len(header))
    for stage in STAGES:
        for name, measure in ((base_name, base[stage]), (ours_name, ours[stage])):
            print(f"{stage:<24} {name:<10} {measure.seconds:>9.1f} {measure.peak_bytes / 1e6:>9.0f} {measure.written_bytes / 1e6:>11.1f}  {measure.status}")
        ratio = lambda a, b: f"{a / b:.2f}x" if b else "-"  # noqa: E731
        print(f"{'':<24} {'ours/base':<10} {ratio(ours[stage].seconds, base[stage].seconds):>9} "
              f"{ratio(ours[stage].peak_bytes, base[stage].peak_bytes):>9} {ratio(ours[stage].written_bytes, base[stage].written_bytes):>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=1_000_000, help="synthetic reads in the read sample")
    parser.add_argument("--read-length", type=int, default=150, help="read length in bp")
    parser.add_argument("--contig-megabases", type=float, default=100.0, help="Mbp of contigs in the contig sample")
    parser.add_argument("--chunk-size", type=int, default=300, choices=(300, 500), help="chunk size of both samples")
    version_arguments(parser, DEFAULT_BASELINE)
    args = parser.parse_args()

    with scratch("bench_scale.", args.workdir) as work:  # tens of GB at full size
        samples = {"reads": work / "reads.fa", "contigs": work / "contigs.fa"}
        write_reads(samples["reads"], args.reads, args.read_length, seed=1)
        write_contigs(samples["contigs"], args.contig_megabases, seed=2)
        classifier = work / "classifier.pt"
        write_classifier(classifier)
        versions = {"base": checkout(args.baseline, work / "baseline"), "ours": REPO / "bin"}
        rows = {name: run_version(name, bin_dir, work, samples, classifier, args.chunk_size) for name, bin_dir in versions.items()}
        frames = {sample: frame_count(work / "ours" / sample / f"{sample}.shards.tsv") for sample in samples}
        print(f"baseline {args.baseline} against this checkout; one core per stage; chunk size {args.chunk_size}")
        print_table(samples, frames, rows)
        total = sum(frames.values())
        print("classify_frames, frames per second of the whole script (start-up included): "
              + ", ".join(f"{name} {total / result['classify_frames'].seconds:,.0f}" for name, result in rows.items()))


if __name__ == "__main__":
    main()
