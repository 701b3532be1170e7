#!/usr/bin/env python3
"""Score the frames of one shard with the VirNucPro MLP classifier (DNABERT-S + ESM-2 features)."""

import sys
import time
from pathlib import Path

from virnucpro import cli
from virnucpro.atomic import atomic_open
from virnucpro.classifier import check_input_dim, check_same_frames, load_classifier, score_frames
from virnucpro.contracts import CLASSIFIER, DNABERT, ESM, PREDICTIONS_SUFFIX, EmbeddingFile, verify_model_files
from virnucpro.embedding import resolve_device
from virnucpro.metrics import write_metrics


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--dnabert", required=True, help="DNABERT-S embeddings of the shard's frames (HDF5 from embed_dnabert.py)")
    parser.add_argument("--esm", required=True, help="ESM-2 embeddings of the same frames in the same order (HDF5 from embed_esm.py)")
    parser.add_argument("--classifier", required=True, help="classifier: the original pickled MLPClassifier (.pth), a state dict (.pth/.pt) or .safetensors")
    parser.add_argument("--models-json", help="models.json of STAGE_MODELS: the model's files must have the sha256 it records (checked before loading)")
    parser.add_argument("--out", required=True, help="predictions TSV: Sequence_ID, Prediction, score1 (others), score2 (virus)")
    parser.add_argument("--device", default="auto", help="auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N")
    parser.add_argument("--metrics", help="write timings and counts to this JSON file")
    return parser


def main(args) -> None:
    started = time.perf_counter()
    if args.models_json:
        verify_model_files(args.models_json, CLASSIFIER, args.classifier)
    device = resolve_device(args.device)
    model = load_classifier(args.classifier)
    with EmbeddingFile(args.dnabert, DNABERT) as dnabert, EmbeddingFile(args.esm, ESM) as esm:
        check_same_frames(dnabert, esm)
        check_input_dim(model, args.classifier, dnabert, esm)
        with atomic_open(args.out) as out:
            frames = score_frames(model, args.classifier, dnabert, esm, device, out)
    if args.metrics:
        write_metrics(
            args.metrics, stage="classify_frames", name=Path(args.out).name.removesuffix(PREDICTIONS_SUFFIX),
            items=frames, tokens=None, seconds=time.perf_counter() - started, device=str(device), precision="fp32",
        )
    cli.log.info("scored %d frames from %s", frames, args.dnabert)


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser()))
