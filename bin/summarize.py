#!/usr/bin/env python3
"""Combine one sample's shard predictions, check that every frame was scored exactly once, and
write the per-sample results: the original's prediction files, per-sequence calls, the viral
input records and a JSON summary."""

import sys

from virnucpro import cli
from virnucpro.report import aggregate_stages, read_metrics
from virnucpro.summary import DEFAULT_THRESHOLD, summarize


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--sample", required=True, help="sample name, written into every row of sequence_calls.tsv")
    parser.add_argument("--predictions", nargs="*", default=[], help="the predictions TSV of every shard (from classify_frames.py), any order")
    parser.add_argument("--shards", required=True, help="P.shards.tsv from prepare_frames.py: the shards every frame must be scored in")
    parser.add_argument("--sequences", required=True, help="P.sequences.tsv from prepare_frames.py: every input sequence and its status")
    parser.add_argument("--fasta", required=True, help="the sample's input FASTA (plain or gzip) that prepare_frames.py read")
    parser.add_argument("--outdir", required=True, help="directory for the result files")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="a sequence is called virus when its mean chunk virus score is at least this")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics JSON files of this sample's stages, summed per stage into summary.json")
    return parser


def main(args) -> None:
    stages = aggregate_stages(read_metrics(args.metrics)) if args.metrics else None
    summary = summarize(args.sample, args.predictions, args.shards, args.sequences, args.fasta, args.outdir, args.threshold, stages)
    cli.log.info(
        "%s: %d sequences, %d virus, %d non-virus", args.sample, summary["sequences"], summary["calls"]["virus"], summary["calls"]["non-virus"]
    )


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser()))
