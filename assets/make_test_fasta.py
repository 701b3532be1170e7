#!/usr/bin/env python3
"""Write the bundled test inputs, seeded: assets/test.fa and assets/test_noframes.fa.

test.fa: 36 sequences of 50 bp to 5 kb, then copies of four of them under other IDs (as
duplicate reads). Most carry planted open reading frames (codons without stops) on the forward
or the reverse strand, some only in part, some none; a few are lower case, hold N or IUPAC
codes or have a description. Lines are wrapped at 60, 70 or 80.
test_noframes.fa: sequences with a stop codon in all six frames of every 500 bp chunk (and
one too short for a codon), so that sample keeps no frame at all.

Run from the repository root: .venv/bin/python assets/make_test_fasta.py
"""

from __future__ import annotations

import random
from pathlib import Path

from Bio.Seq import Seq

ASSETS = Path(__file__).resolve().parent
SEED = 20240607
CHUNK = 500
STOPS = {"TAA", "TAG", "TGA"}
CODONS = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in STOPS]
REPEATED = (1, 9, 16, 29)  # records repeated at the end of test.fa under other IDs


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


def open_frame(rng: random.Random, length: int) -> str:
    codons = "".join(rng.choice(CODONS) for _ in range(length // 3 + 1))
    return codons[:length]


def reverse_complement(sequence: str) -> str:
    return str(Seq(sequence).reverse_complement())


def planted(rng: random.Random, kind: str, length: int) -> str:
    if kind == "forward":
        return open_frame(rng, length)
    if kind == "reverse":
        return reverse_complement(open_frame(rng, length))
    if kind == "mixed":  # an ORF on each strand with random DNA between
        part = length // 3
        return open_frame(rng, part) + random_dna(rng, length - 2 * part) + reverse_complement(open_frame(rng, part))
    return random_dna(rng, length)


def decorate(rng: random.Random, sequence: str, index: int) -> str:
    if index % 7 == 3:
        sequence = sequence.lower()
    if index % 9 == 4:
        spots = rng.sample(range(len(sequence)), k=max(1, len(sequence) // 200))
        letters = list(sequence)
        for spot in spots:
            letters[spot] = rng.choice("NNNRYKM")
        sequence = "".join(letters)
    return sequence


def wrap(sequence: str, width: int) -> str:
    return "\n".join(sequence[i : i + width] for i in range(0, len(sequence), width))


def has_open_frame(sequence: str) -> bool:
    """Whether some chunk-sized window has a frame without a stop codon (six frames)."""
    for start in range(0, max(1, len(sequence) - 2), CHUNK):
        chunk = sequence[start : start + CHUNK]
        for strand in (chunk, reverse_complement(chunk)):
            for offset in range(3):
                codons = len(strand[offset:]) // 3
                if codons and "*" not in str(Seq(strand[offset : offset + 3 * codons]).translate()):
                    return True
    return False


def test_records(rng: random.Random) -> list[str]:
    kinds = ["forward", "reverse", "mixed", "random"]
    records, sequences = [], []
    for index in range(36):
        length = int(round(50 * 100 ** rng.random()))  # log-uniform, 50 bp to 5 kb
        sequence = decorate(rng, planted(rng, kinds[index % 4], length), index)
        description = f" planted={kinds[index % 4]} length={length}" if index % 5 == 0 else ""
        records.append(f">seq{index + 1:02d}{description}\n{wrap(sequence, 60 if index % 2 else 70)}\n")
        sequences.append(sequence)
    for copy, index in enumerate(REPEATED, start=1):  # duplicate reads: their frames are embedded once
        records.append(f">copy{copy}_of_seq{index + 1:02d}\n{wrap(sequences[index].upper(), 80)}\n")
    return records


def noframe_records(rng: random.Random) -> list[str]:
    records = []
    while len(records) < 4:
        sequence = random_dna(rng, rng.randint(150, 400))
        if not has_open_frame(sequence):
            records.append(f">closed{len(records) + 1}\n{wrap(sequence, 60)}\n")
    records.append(">too_short\nAC\n")
    return records


def main() -> None:
    rng = random.Random(SEED)
    (ASSETS / "test.fa").write_text("".join(test_records(rng)))
    (ASSETS / "test_noframes.fa").write_text("".join(noframe_records(rng)))


if __name__ == "__main__":
    main()
