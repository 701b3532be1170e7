#!/usr/bin/env python3
"""Embed nucleotide frames with DNABERT-S: the mean of the last hidden layer over all tokens."""

from __future__ import annotations

import argparse
import sys

from virnucpro import cli


def build_parser() -> argparse.ArgumentParser:
    from virnucpro import contracts, dnabert, embedding

    parser = embedding.make_parser(
        __doc__, "nucleotide FASTA of the frames to embed (a prepare_frames.py .fna shard)", dnabert.DEFAULT_BATCH_TOKENS
    )
    parser.add_argument(
        "--model", default=contracts.DEFAULT_DNABERT_MODEL,
        help="DNABERT-S checkpoint directory (config.json, weights, tokenizer.json) or Hugging Face hub ID",
    )
    parser.add_argument("--models-json", help="models.json of STAGE_MODELS: the model's files must have the sha256 it records (checked before loading)")
    return parser


def main(args: argparse.Namespace) -> None:
    from virnucpro import contracts, dnabert, embedding

    if args.models_json:
        contracts.verify_model_files(args.models_json, contracts.DNABERT, args.model)
    embedding.run(args, dnabert.sequence_problem, lambda: dnabert.open_checkpoint(args.model))


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser, uses_torch=True))
