#!/usr/bin/env python3
"""Embed protein frames with ESM-2: the chosen layer's representation (after the final
LayerNorm for the last layer) averaged over residues 1..min(1024, length), BOS/EOS excluded."""

from __future__ import annotations

import argparse
import sys

from virnucpro import cli


def build_parser() -> argparse.ArgumentParser:
    from virnucpro import contracts, embedding, esm

    parser = embedding.make_parser(
        __doc__, "protein FASTA of the frames to embed (a prepare_frames.py .faa shard)", esm.DEFAULT_BATCH_TOKENS
    )
    parser.add_argument(
        "--model", default=contracts.DEFAULT_ESM_MODEL,
        help="fair-esm ESM-2 model name (read from the torch hub cache, downloaded there if missing) or a local .pt checkpoint",
    )
    parser.add_argument("--models-json", help="models.json of STAGE_MODELS: the model's files must have the sha256 it records (checked before loading)")
    parser.add_argument("--layer", type=int, help="representation layer, 0 (embeddings) to the number of layers; omitted: the last, as the original")
    parser.add_argument(
        "--compile", choices=esm.COMPILE_MODES, default="auto",
        help="torch.compile the transformer layers (auto = on for CUDA, off on CPU); kernels are cached in TORCHINDUCTOR_CACHE_DIR",
    )
    return parser


def main(args: argparse.Namespace) -> None:
    from virnucpro import contracts, embedding, esm

    if args.models_json:
        contracts.verify_model_files(args.models_json, contracts.ESM, args.model)
    embedding.run(args, esm.sequence_problem, lambda: esm.open_checkpoint(args.model, args.layer, args.compile))


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser, uses_torch=True))
