#!/usr/bin/env python3
"""Stage the DNABERT-S, ESM-2 and classifier models into one directory and write models.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from virnucpro import cli


def build_parser() -> argparse.ArgumentParser:
    from virnucpro import contracts, staging

    parser = cli.make_parser(__doc__)
    parser.add_argument("--outdir", required=True, type=Path, help="directory for fetched models, checksums.sha256, models.json and versions.txt (reused when it exists)")
    parser.add_argument("--chunk-size", type=int, required=True, choices=staging.CHUNK_SIZES, help="chunk length the classifier must have been trained on")
    parser.add_argument("--dnabert", default=contracts.DEFAULT_DNABERT_MODEL, help="DNABERT-S: Hugging Face model ID or a local model directory (used in place)")
    parser.add_argument("--esm", default=contracts.DEFAULT_ESM_MODEL, help="ESM-2: fair-esm model name or a local .pt file (used in place; its -contact-regression.pt beside it)")
    parser.add_argument("--classifier", help="classifier: a local file (used in place) or an http(s) URL; default: the published {chunk}_model.pth")
    parser.add_argument("--tiny", action="store_true", help="generate seeded tiny models in the real formats instead (for tests); ignores the model options")
    return parser


def main(args: argparse.Namespace) -> None:
    from virnucpro import atomic, contracts, staging

    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        entries = staging.stage_tiny(args.outdir)
    else:
        entries = staging.stage_models(args.outdir, args.chunk_size, args.dnabert, args.esm, args.classifier)
    manifest = args.outdir / contracts.MODEL_MANIFEST
    if not manifest.exists():  # only the user's own models, nothing fetched: the pipeline expects the file
        staging.write_manifest(manifest, {})
    staging.write_models_json(args.outdir, entries)
    # the pipeline reports this step's version from here: a storeDir task reused from the
    # cache runs no command, so its version cannot come from running --version
    atomic.write_text(args.outdir / contracts.VERSIONS_FILE, cli.dependency_versions() + "\n")


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser, uses_torch=True))
