#!/usr/bin/env python3
"""Score the frames of one frame shard with the VirNucPro MLP classifier: each frame's DNABERT-S and ESM-2
embeddings, read by the numbers of its sequences from the sample's embedding files, joined."""

import contextlib
import sys
import time
from pathlib import Path

from virnucpro import cli


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--frames", required=True, help="the frame shard to score (P.NNNN.frames.tsv from prepare_frames.py)")
    parser.add_argument("--shards", required=True, help="P.shards.tsv from the same prepare_frames.py run: every shard of the sample")
    parser.add_argument("--dnabert", nargs="+", required=True, help="the DNABERT-S embeddings of every P.dnabert.NNNN shard of the sample (HDF5 from embed_dnabert.py), any order")
    parser.add_argument("--esm", nargs="+", required=True, help="the ESM-2 embeddings of every P.esm.NNNN shard of the sample (HDF5 from embed_esm.py), any order")
    parser.add_argument("--classifier", required=True, help="classifier: the original pickled MLPClassifier (.pth), a state dict (.pth/.pt) or .safetensors")
    parser.add_argument("--models-json", help="models.json of STAGE_MODELS: the model's files must have the sha256 it records (checked before loading)")
    parser.add_argument("--out", required=True, help="predictions TSV: Sequence_ID, Prediction, score1 (others), score2 (virus)")
    parser.add_argument("--device", default="auto", help="auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N")
    parser.add_argument("--metrics", help="write timings and counts to this JSON file")
    return parser


def main(args) -> None:
    import torch

    from virnucpro.atomic import atomic_open
    from virnucpro.classifier import EmbeddingSet, ShardInputs, check_input_dim, load_classifier, score_frames
    from virnucpro.contracts import CLASSIFIER, DNABERT, ESM, PREDICTIONS_SUFFIX, read_shards, verify_model_files
    from virnucpro.embedding import resolve_device
    from virnucpro.metrics import write_metrics

    started = time.perf_counter()
    if args.models_json:
        verify_model_files(args.models_json, CLASSIFIER, args.classifier)
    device = resolve_device(args.device)
    model = load_classifier(args.classifier)
    manifest = read_shards(args.shards)
    with contextlib.ExitStack() as stack:
        dnabert = EmbeddingSet(DNABERT, args.dnabert, manifest, args.shards, stack)
        esm = EmbeddingSet(ESM, args.esm, manifest, args.shards, stack)
        check_input_dim(model, args.classifier, dnabert, esm)
        with atomic_open(args.out) as out:
            frames = score_frames(model, args.classifier, ShardInputs(args.frames, args.shards, manifest, dnabert, esm), device, out)
    if args.metrics:
        write_metrics(
            args.metrics, stage="classify_frames", name=Path(args.out).name.removesuffix(PREDICTIONS_SUFFIX),
            items=frames, tokens=None, seconds=time.perf_counter() - started, device=str(device), precision="fp32",
            threads=torch.get_num_threads(),
        )
    cli.log.info("scored %d frames of %s", frames, args.frames)


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser, uses_torch=True))
