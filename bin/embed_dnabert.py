#!/usr/bin/env python3
"""Embed nucleotide frames with DNABERT-S: the mean of the last hidden layer over all tokens."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from virnucpro import cli, dnabert
from virnucpro.metrics import write_metrics
from virnucpro.embedding import PRECISION_NAMES, add_embedding_arguments, peak_gpu_memory, resolve_device, resolve_dtype, write_embeddings
from virnucpro.fasta import read_fasta

log = logging.getLogger("virnucpro")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--fasta", required=True, help="nucleotide FASTA of the frames to embed (a prepare_frames.py .fna shard)")
    parser.add_argument(
        "--model", default=dnabert.DEFAULT_MODEL,
        help="DNABERT-S checkpoint directory (config.json, weights, tokenizer.json) or Hugging Face hub ID",
    )
    # 32768 padded tokens: ~300 frames of 500 bp per batch, a few GB in bf16
    add_embedding_arguments(parser, default_batch_tokens=32768)
    parser.add_argument("--metrics", help="write timings and counts to this JSON file")
    return parser


def main(args: argparse.Namespace) -> None:
    records = list(read_fasta(args.fasta))
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    started = time.perf_counter()
    directory = dnabert.locate_model(args.model)
    config = dnabert.read_config(directory)
    token_ids: list[np.ndarray] = []
    embeddings = np.empty((0, config.hidden_size), dtype=np.float32)
    if records:  # an empty shard needs only the embedding size, not the model
        model = dnabert.load_model(directory, device, dtype)
        tokenizer = dnabert.load_tokenizer(directory, config.vocab_size)
    loaded = time.perf_counter()
    if records:
        token_ids = dnabert.tokenize(tokenizer, [record.sequence for record in records])
        embeddings = dnabert.embed_token_ids(model, token_ids, device, args.batch_tokens, not args.no_progress, args.fasta)
    finished = time.perf_counter()
    tokens = sum(len(ids) for ids in token_ids)
    log.info("embedded %d sequences (%d tokens) in %.1f s on %s", len(records), tokens, finished - loaded, device)

    write_embeddings(
        args.out,
        [record.id for record in records],
        embeddings,
        {
            "model": args.model,
            "layer": "last",
            "pooling": "mean over all tokens incl. [CLS]/[SEP]",
            "precision": PRECISION_NAMES[dtype],
            "dim": config.hidden_size,
        },
    )
    if args.metrics:
        write_metrics(
            args.metrics, stage="embed_dnabert", name=Path(args.fasta).stem, items=len(records), tokens=tokens,
            seconds=finished - loaded, load_seconds=loaded - started, device=str(device),
            precision=PRECISION_NAMES[dtype], peak_gpu_memory_bytes=peak_gpu_memory(device),
        )


if __name__ == "__main__":
    parser = build_parser()
    sys.exit(cli.run(main, parser))
