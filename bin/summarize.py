#!/usr/bin/env python3
"""Combine one sample's shard predictions, check that every frame was scored exactly once, and
write the per-sample results: the original's prediction files, per-sequence calls, the viral
input records and a JSON summary, published together as the --outdir folder."""

import sys
from pathlib import Path

from virnucpro import cli


def build_parser():
    from virnucpro.contracts import DEFAULT_THRESHOLD

    parser = cli.make_parser(__doc__)
    parser.add_argument("--sample", help="sample name, written into every row of sequence_calls.tsv (default: P of P.sequences.tsv)")
    parser.add_argument("--predictions", nargs="*", default=[], help="the predictions TSV of every shard (from classify_frames.py), any order")
    parser.add_argument("--shards", help="P.shards.tsv from prepare_frames.py: the shards every frame must be scored in (default: beside --sequences)")
    parser.add_argument("--sequences", required=True, help="P.sequences.tsv from prepare_frames.py: every input sequence and its status")
    parser.add_argument("--fasta", help="the sample's input FASTA (plain or gzip) that prepare_frames.py read; without it no viral_sequences.fasta is written")
    parser.add_argument("--outdir", required=True, help="the result folder, replaced as a whole (an existing one may hold only result files)")
    parser.add_argument("--chunk-size", type=int, required=True,
                        help="the chunk length prepare_frames.py cut the sequences into: sequences shorter than it are flagged shorter_than_chunk")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="a sequence is called virus when its mean chunk virus score is at least this")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics JSON files of this sample's stages, summed per stage into summary.json")
    return parser


def prepare_prefix(sequences: str) -> str:
    """P for P.sequences.tsv, as prepare_frames.py names its outputs."""
    from virnucpro.contracts import SEQUENCES_SUFFIX

    name = Path(sequences).name
    return name.removesuffix(SEQUENCES_SUFFIX) if name.endswith(SEQUENCES_SUFFIX) else Path(name).stem


def main(args) -> None:
    from virnucpro.contracts import SHARDS_SUFFIX
    from virnucpro.metrics import aggregate_stages, read_metrics
    from virnucpro.summary import summarize

    prefix = prepare_prefix(args.sequences)
    sample = args.sample or prefix
    shards = args.shards or str(Path(args.sequences).with_name(f"{prefix}{SHARDS_SUFFIX}"))
    stages = aggregate_stages(read_metrics(args.metrics)) if args.metrics else None
    summary = summarize(sample, args.predictions, shards, args.sequences, args.fasta, args.outdir, args.chunk_size, args.threshold, stages)
    cli.log.info(
        "%s: %d sequences, %d virus, %d non-virus", sample, summary["sequences"], summary["calls"]["virus"], summary["calls"]["non-virus"]
    )


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser))
