#!/usr/bin/env python3
"""Throughput and peak memory of prepare_frames.py on one CPU core, on seeded synthetic input.

Contigs are genes (stop-free codon runs between ATG and a stop) on both strands with short
intergenic spacers, so most chunks have an open frame, as in viral and bacterial genomes.
``--reads N ...`` instead samples N reads of ``--read-length`` bp from such contigs (either
strand), for each N given, the short-read case that sets PREPARE's memory per read.

Prints, per run of the whole bin script (interpreter start-up included): wall-clock and CPU
time, Mbp/s or reads/min, and the peak resident memory; with two or more read counts also the
memory slope in bytes per read (the fixed cost cancels). Does not gate CI.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STOPS = {"TAA", "TAG", "TGA"}
SENSE_CODONS = np.array(
    [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in STOPS]
)
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def gene(rng: np.random.Generator) -> str:
    codons = rng.integers(0, len(SENSE_CODONS), size=int(rng.integers(200, 1200)))
    body = "ATG" + "".join(SENSE_CODONS[codons]) + str(rng.choice(sorted(STOPS)))
    return body if rng.random() < 0.5 else body.translate(COMPLEMENT)[::-1]


def contig(rng: np.random.Generator, length: int) -> str:
    parts: list[str] = []
    size = 0
    while size < length:
        spacer = "".join(rng.choice(list("ACGT"), size=int(rng.integers(20, 150))))
        for part in (spacer, gene(rng)):
            parts.append(part)
            size += len(part)
    return "".join(parts)[:length]


def write_corpus(path: Path, megabases: float, contig_length: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    total = 0
    with open(path, "w") as handle:
        number = 0
        while total < megabases * 1e6:
            sequence = contig(rng, contig_length)
            handle.write(f">contig_{number}\n")
            handle.writelines(sequence[i : i + 80] + "\n" for i in range(0, len(sequence), 80))
            total += len(sequence)
            number += 1
    return total


def write_reads(path: Path, count: int, length: int, seed: int) -> int:
    """``count`` reads of ``length`` bp at random places and strands of 10 Mbp of coding contigs,
    with SRA-style IDs; returns the bases written."""
    rng = np.random.default_rng(seed)
    genome = contig(rng, 10_000_000)
    reverse = genome.translate(COMPLEMENT)[::-1]
    starts = rng.integers(0, len(genome) - length, size=count).tolist()
    strands = (rng.random(count) < 0.5).tolist()
    with open(path, "w") as handle:
        for number, (start, minus) in enumerate(zip(starts, strands)):
            source = reverse if minus else genome
            handle.write(f">SRR0000001.{number + 1} {number + 1} length={length}\n{source[start:start + length]}\n")
    return count * length


def in_fresh_process(function, *args):
    """``function(*args)`` in a spawned interpreter, so that this process stays small: a child
    started from a big process is charged that process's pages as its own peak until it execs."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    max_rss_bytes: int


def run_once(command: list[str]) -> Run:
    """One run of ``command``: wall-clock, CPU time and peak RSS of that child alone (wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def prepare_command(fasta: Path, prefix: Path, chunk_size: int) -> list[str]:
    return [
        "taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, str(REPO / "bin" / "prepare_frames.py"),
        "--fasta", str(fasta), "--chunk-size", str(chunk_size), "--prefix", str(prefix), "--quiet",
    ]


def best_of(command: list[str], runs: int) -> Run:
    results = [run_once(command) for _ in range(runs)]
    return Run(min(r.wall for r in results), min(r.cpu for r in results), max(r.max_rss_bytes for r in results))


def frame_count(shards_tsv: Path) -> int:
    """The frames of P.shards.tsv: the items of its frame shards (the frames of every shard, in
    the code before issue #17, whose table has no kind column)."""
    header, *rows = [line.split("\t") for line in shards_tsv.read_text().splitlines()]
    if "kind" in header:
        return sum(int(row[header.index("items")]) for row in rows if row[header.index("kind")] == "frames")
    return sum(int(row[header.index("frames")]) for row in rows)


def bench_contigs(args: argparse.Namespace, directory: Path) -> None:
    fasta = directory / "contigs.fa"
    bases = in_fresh_process(write_corpus, fasta, args.megabases, args.contig_length, args.seed)
    result = best_of(prepare_command(fasta, directory / "out", args.chunk_size), args.runs)
    megabases = bases / 1e6
    print(
        f"prepare_frames.py, 1 core, chunk {args.chunk_size}: {megabases:.1f} Mbp in {args.contig_length} bp contigs, "
        f"{frame_count(directory / 'out.shards.tsv')} frames; best of {args.runs}: wall {result.wall:.2f} s = "
        f"{megabases / result.wall:.1f} Mbp/s, CPU {result.cpu:.2f} s = {megabases / result.cpu:.1f} Mbp/s, "
        f"peak RSS {result.max_rss_bytes / 2**20:.0f} MiB"
    )


def bench_reads(args: argparse.Namespace, directory: Path) -> None:
    peaks = []
    for count in sorted(args.reads):
        fasta = directory / f"reads{count}.fa"
        in_fresh_process(write_reads, fasta, count, args.read_length, args.seed)
        result = best_of(prepare_command(fasta, directory / f"out{count}", args.chunk_size), args.runs)
        peaks.append((count, result.max_rss_bytes))
        print(
            f"prepare_frames.py, 1 core, chunk {args.chunk_size}: {count} reads of {args.read_length} bp, "
            f"{frame_count(directory / f'out{count}.shards.tsv')} frames; best of {args.runs}: wall {result.wall:.2f} s = "
            f"{count / result.wall * 60 / 1e6:.2f} M reads/min, CPU {result.cpu:.2f} s = "
            f"{count / result.cpu * 60 / 1e6:.2f} M reads/min, peak RSS {result.max_rss_bytes / 2**20:.0f} MiB"
        )
        for path in directory.glob(f"out{count}.*"):
            path.unlink()
        fasta.unlink()
    if len(peaks) >= 2:
        (low, low_rss), (high, high_rss) = peaks[0], peaks[-1]
        slope = (high_rss - low_rss) / (high - low)
        print(f"peak RSS slope between {low} and {high} reads: {slope:.1f} B/read (100M reads: {slope * 1e8 / 2**30:.1f} GiB above the fixed cost)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--megabases", type=float, default=20.0, help="size of the synthetic contig corpus in Mbp")
    parser.add_argument("--contig-length", type=int, default=50000, help="length of each contig in bp")
    parser.add_argument("--reads", type=int, nargs="+", help="benchmark short reads instead of contigs: one run per read count")
    parser.add_argument("--read-length", type=int, default=150, help="length of each read in bp (with --reads)")
    parser.add_argument("--chunk-size", type=int, default=300, help="chunk size passed to prepare_frames.py")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the corpus")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per input; the best time and the highest peak are reported")
    parser.add_argument("--workdir", help="where the inputs and outputs go (default: a temporary directory)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as directory:
        if args.reads:
            bench_reads(args, Path(directory))
        else:
            bench_contigs(args, Path(directory))


if __name__ == "__main__":
    main()
