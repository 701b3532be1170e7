#!/usr/bin/env python3
"""Embed protein frames with ESM-2: the chosen layer's representation (after the final
LayerNorm for the last layer) averaged over residues 1..min(1024, length), BOS/EOS excluded."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from virnucpro import cli, esm
from virnucpro.metrics import write_metrics
from virnucpro.embedding import PRECISION_NAMES, add_embedding_arguments, peak_gpu_memory, resolve_device, resolve_dtype, write_embeddings
from virnucpro.fasta import read_fasta

log = logging.getLogger("virnucpro")

POOLING = "mean over residues 1..min(1024,len), BOS/EOS excluded"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--fasta", required=True, help="protein FASTA of the frames to embed (a prepare_frames.py .faa shard)")
    parser.add_argument(
        "--model", default=esm.DEFAULT_MODEL,
        help="fair-esm ESM-2 model name (read from the torch hub cache, downloaded there if missing) or a local .pt checkpoint",
    )
    parser.add_argument("--layer", type=int, help="representation layer, 0 (embeddings) to the number of layers; omitted: the last, as the original")
    # 65536 padded tokens: ~390 proteins of 166 aa per batch; with the 3B model in bf16 about
    # 6 GB of weights plus 4-5 GB of activations, which fits a 24 GB GPU
    add_embedding_arguments(parser, default_batch_tokens=65536)
    parser.add_argument(
        "--compile", choices=("auto", "on", "off"), default="auto",
        help="torch.compile the transformer layers (auto = on for CUDA, off on CPU); kernels are cached in TORCHINDUCTOR_CACHE_DIR",
    )
    parser.add_argument("--metrics", help="write timings and counts to this JSON file")
    return parser


def main(args: argparse.Namespace) -> None:
    records = list(read_fasta(args.fasta))
    token_ids = esm.tokenize_records(records, args.fasta)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    loading = time.perf_counter()
    checkpoint = esm.open_checkpoint(args.model, args.layer)
    dim = checkpoint.config.embed_dim
    embeddings = np.empty((0, dim), dtype=np.float32)
    load_seconds, compile_seconds, seconds = time.perf_counter() - loading, None, 0.0
    if records:  # an empty shard needs only the embedding size, not the model
        model = esm.load_model(checkpoint, device, dtype)
        load_seconds = time.perf_counter() - loading
        if args.compile == "on" or (args.compile == "auto" and device.type == "cuda"):
            compile_seconds = esm.compile_layers(model, device)
        started = time.perf_counter()
        embeddings = esm.embed_token_ids(model, token_ids, device, args.batch_tokens, not args.no_progress, args.fasta)
        seconds = time.perf_counter() - started
    tokens = sum(len(ids) + 2 for ids in token_ids)
    log.info("embedded %d proteins (%d tokens) in %.1f s on %s", len(records), tokens, seconds, device)

    write_embeddings(
        args.out,
        [record.id for record in records],
        embeddings,
        {
            "model": checkpoint.name,
            "layer": checkpoint.layer,
            "pooling": POOLING,
            "precision": PRECISION_NAMES[dtype],
            "dim": dim,
        },
    )
    if args.metrics:
        write_metrics(
            args.metrics, stage="embed_esm", name=Path(args.fasta).stem, items=len(records), tokens=tokens,
            seconds=seconds, load_seconds=load_seconds, compile_seconds=compile_seconds, device=str(device),
            precision=PRECISION_NAMES[dtype], peak_gpu_memory_bytes=peak_gpu_memory(device),
        )


if __name__ == "__main__":
    parser = build_parser()
    sys.exit(cli.run(main, parser))
