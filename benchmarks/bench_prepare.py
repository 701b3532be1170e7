#!/usr/bin/env python3
"""Throughput of prepare_frames.py on one CPU core, on seeded coding-rich synthetic contigs.

Contigs are genes (stop-free codon runs between ATG and a stop) on both strands with short
intergenic spacers, so most chunks have an open frame, as in viral and bacterial genomes. Prints
Mbp/s of the whole bin script (interpreter start-up included) by wall-clock and by CPU time
(the latter is what counts on a shared machine); does not gate CI.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabases", type=float, default=20.0, help="size of the synthetic corpus in Mbp")
    parser.add_argument("--contig-length", type=int, default=50000, help="length of each contig in bp")
    parser.add_argument("--chunk-size", type=int, default=300, help="chunk size passed to prepare_frames.py")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the corpus")
    parser.add_argument("--runs", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        fasta = Path(directory) / "contigs.fa"
        bases = write_corpus(fasta, args.megabases, args.contig_length, args.seed)
        command = [
            "taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, str(REPO / "bin" / "prepare_frames.py"),
            "--fasta", str(fasta), "--chunk-size", str(args.chunk_size), "--prefix", str(Path(directory) / "out"), "--quiet",
        ]
        wall_times, cpu_times = [], []
        for _ in range(args.runs):
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(command, check=True)
            wall_times.append(time.perf_counter() - started)
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_times.append(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
        frames = sum(int(line.split("\t")[1]) for line in (Path(directory) / "out.shards.tsv").read_text().splitlines()[1:])
    megabases = bases / 1e6
    wall, cpu = min(wall_times), min(cpu_times)
    print(
        f"prepare_frames.py, 1 core, chunk {args.chunk_size}: {megabases:.1f} Mbp in {args.contig_length} bp contigs, "
        f"{frames} frames; best of {args.runs}: wall {wall:.2f} s = {megabases / wall:.1f} Mbp/s, "
        f"CPU {cpu:.2f} s = {megabases / cpu:.1f} Mbp/s"
    )


if __name__ == "__main__":
    main()
