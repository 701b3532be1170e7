#!/usr/bin/env python3
"""Write the run's HTML report (self-contained: inline CSS and SVG) and its MultiQC table from
every sample's sequence_calls.tsv (with the summary.json beside it), models.json, the stages'
metrics files and, optionally, the run information Nextflow knows (start, command line, versions,
parameters)."""

import sys
from datetime import datetime, timezone

from virnucpro import cli


def build_parser():
    parser = cli.make_parser(__doc__)
    parser.add_argument("--calls", nargs="+", required=True,
                        help="sequence_calls.tsv of every sample, each beside the summary.json that summarize.py wrote with it "
                             "(its threshold is the one the report states; all samples must agree)")  # fmt: skip
    parser.add_argument("--models", required=True, help="models.json from stage_models.py: name, path and sha256 of each model")
    parser.add_argument("--out", required=True, help="the HTML report to write")
    parser.add_argument("--mqc", required=True, help="the MultiQC custom-content table to write (one row per sample)")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics JSON files of the run's tasks, aggregated per stage")
    parser.add_argument("--run-info", help="JSON from the workflow: pipeline, pipeline_version, nextflow_version, run_name, profile, "
                                           "command_line, started (ISO 8601 with time zone) and params; adds the run section")  # fmt: skip
    return parser


def main(args) -> None:
    from virnucpro.atomic import write_text
    from virnucpro.metrics import aggregate_stages, read_metrics
    from virnucpro.report import format_mqc, read_models, read_run_calls, read_run_info, render_html

    run = read_run_calls(args.calls)
    models = read_models(args.models)
    stages = aggregate_stages(read_metrics(args.metrics))
    info = read_run_info(args.run_info) if args.run_info else None
    html = render_html(run, models, stages, datetime.now(timezone.utc), info)
    mqc = format_mqc(run)
    write_text(args.out, html)
    write_text(args.mqc, mqc)
    cli.log.info("report for %d sample(s) written to %s", len(run.samples), args.out)


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser))
