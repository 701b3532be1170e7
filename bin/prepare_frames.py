#!/usr/bin/env python3
"""Chunk a nucleotide FASTA as the original VirNucPro, translate each chunk in six frames, keep the
frames without a stop codon and write them as token-balanced shards: each distinct nucleotide and
protein sequence of the sample once, for the embedding stages, and every frame with the numbers
of its two sequences, for the classifier.

Sequences must be IUPAC nucleotide codes (ASCII letters, any case). RNA (U for T) is read as DNA:
U becomes T for translation and embedding (else every UAA/UAG/UGA stop would be lost), with one
warning per file and the reason column of P.sequences.tsv saying "RNA: U read as T"; the digest
column is of the record as read. A UTF-8 byte-order mark at the start of the file is skipped."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from virnucpro import cli

log = logging.getLogger("virnucpro")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from virnucpro import prepare

    parser = cli.make_parser(__doc__)
    parser.add_argument("--fasta", required=True, help="input nucleotide FASTA, plain or gzip-compressed")
    parser.add_argument(
        "--chunk-size", required=True, type=cli.positive_int, help="chunk length in bp (300 or 500 for the published models)"
    )
    parser.add_argument(
        "--prefix", required=True,
        help="output prefix P: writes the frame shards P.0001.frames.tsv ..., the distinct nucleotide and protein sequences "
        "to embed P.dnabert.0001.fna ... and P.esm.0001.faa ..., P.shards.tsv and P.sequences.tsv"
    )
    parser.add_argument(
        "--shard-tokens", type=cli.positive_int, default=prepare.DEFAULT_SHARD_TOKENS,
        help="most ESM-2 tokens (protein residues + 2 per frame) in one shard, which sets an embedding task's GPU "
        "time; nucleotide shards count whole codons + 2 per sequence; shards are as few as the caps allow and balanced "
        "by tokens; a frame above it gets a shard of its own",
    )
    parser.add_argument(
        "--shard-size", type=cli.positive_int, default=None, help="most frames (sequences) in one shard, besides --shard-tokens (None: no limit)"
    )
    parser.add_argument(
        "--rename-duplicates", action="store_true",
        help="rename a record whose ID an earlier record has to ID_dupN (smallest free N) instead of failing",
    )
    parser.add_argument(
        "--skip-invalid", action="store_true",
        help="record empty or non-nucleotide sequences as invalid in P.sequences.tsv instead of failing",
    )
    parser.add_argument(
        "--min-length", type=non_negative_int, default=prepare.DEFAULT_MIN_LENGTH,
        help="list sequences shorter than this (bp) as too_short in P.sequences.tsv instead of chunking them "
        "(0: chunk every sequence, as the original)",
    )
    parser.add_argument("--metrics", help="write timings and counts to this JSON file")
    return parser


def main(args: argparse.Namespace) -> None:
    from virnucpro import prepare
    from virnucpro.contracts import DNABERT, EMBEDDING_KINDS, ESM, FRAMES
    from virnucpro.metrics import write_metrics

    started = time.perf_counter()
    summary = prepare.prepare(
        args.fasta, args.chunk_size, args.prefix, shard_tokens=args.shard_tokens, shard_frames=args.shard_size,
        rename_duplicates=args.rename_duplicates, skip_invalid=args.skip_invalid, min_length=args.min_length,
    )
    seconds = time.perf_counter() - started
    log.info(
        "%d sequences (%d bp) -> %d frames (%d ESM tokens) in %d shards; %d distinct nucleotide and %d distinct protein "
        "sequences to embed in %d and %d shards, %.1f s",
        summary.records, summary.bases, summary.frames, summary.tokens, summary.shards[FRAMES], summary.distinct[DNABERT],
        summary.distinct[ESM], summary.shards[DNABERT], summary.shards[ESM], seconds,
    )
    if args.metrics:
        write_metrics(
            args.metrics, stage="prepare_frames", name=Path(args.prefix).name, items=summary.frames,
            tokens=summary.tokens, seconds=seconds, device="cpu",
            **{f"{kind}_sequences": summary.distinct[kind] for kind in EMBEDDING_KINDS},
        )


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser))
