#!/usr/bin/env python3
"""Write the run's HTML report (self-contained: inline CSS and SVG) and its MultiQC table from
every sample's sequence_calls.tsv, models.json and the stages' metrics files."""

import sys

from virnucpro import cli
from virnucpro.report import aggregate_stages, format_mqc, read_metrics, read_models, read_sample_calls, render_html
from virnucpro.atomic import write_text
from virnucpro.summary import DEFAULT_THRESHOLD, check_threshold


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--calls", nargs="+", required=True, help="sequence_calls.tsv of every sample (a summary.json beside one is checked for its threshold)")
    parser.add_argument("--models", required=True, help="models.json from stage_models.py: name, path and sha256 of each model")
    parser.add_argument("--out", required=True, help="the HTML report to write")
    parser.add_argument("--mqc", required=True, help="the MultiQC custom-content table to write (one row per sample)")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics JSON files of the run's tasks, aggregated per stage")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="the call threshold the samples were called with, stated in the report")
    return parser


def main(args) -> None:
    check_threshold(args.threshold)
    samples = read_sample_calls(args.calls, args.threshold)
    models = read_models(args.models)
    stages = aggregate_stages(read_metrics(args.metrics))
    html = render_html(samples, models, stages, args.threshold)
    mqc = format_mqc(samples, args.threshold)
    write_text(args.out, html)
    write_text(args.mqc, mqc)
    cli.log.info("report for %d sample(s) written to %s", len(samples), args.out)


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser()))
