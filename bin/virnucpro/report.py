"""The run report: one self-contained HTML page (inline CSS and hand-drawn SVG, no scripts) and a
MultiQC custom-content table, both built from the samples' sequence_calls.tsv (each sealed by the
summary.json beside it), models.json, the stages' metrics files and what Nextflow knows of the run
(its run-information JSON: start, command line, versions, parameters).

Each calls file is hashed, then streamed once into counters, fixed-bin histograms, a bounded
heap of the top sequences and bounded counts of the reasons sequences went without a call, so
memory does not grow with the number of sequences.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Sequence

from . import __version__
from .contracts import (
    CALL_COLUMNS, CALL_STATUSES, CALLS, FLAG_VALUES, INVALID, MODEL_ROLES, NO_OPEN_FRAME, NON_VIRUS, SCORED, SEQUENCE_CALLS,
    SUMMARY_JSON, TEST_ONLY, TOO_SHORT, VIRUS, call_rule, file_sha256, read_tsv,
)  # fmt: skip
from .errors import InputError, VirNucProError
from .values import checked_float, checked_int, load_json, parse_int, shown

TOP_SEQUENCES = 50
HISTOGRAM_BINS = 20
REASONS_PER_STATUS = 20  # distinct reasons counted per sample and status; later ones go to OTHER_REASONS
OTHER_REASONS = "(other reasons)"
UNSCORED_STATUSES = tuple(status for status in CALL_STATUSES if status != SCORED)
COUNT_COLUMNS = ("length", "chunks", "chunks_scored", "frames_scored", "viral_chunks")
SCORE_COLUMNS = ("viral_chunk_fraction", "max_chunk_score", "mean_chunk_score")
SUMMED_COLUMNS = ("chunks", "chunks_scored", "frames_scored")


# ---------------------------------------------------------------- inputs


def read_models(path: str | Path) -> list[dict]:
    """(role, name, path, files, test_only) of each model in models.json, the three pipeline models first;
    files: (name, sha256) of every file the stages read of it (the weights alone in an older
    models.json without "files")."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "models.json must hold a JSON object keyed by model role")
    roles = [role for role in MODEL_ROLES if role in data] + sorted(role for role in data if role not in MODEL_ROLES)
    models = []
    for role in roles:
        entry = data[role] if isinstance(data[role], dict) else {}
        files = entry.get("files") if isinstance(entry.get("files"), dict) else {"": entry.get("sha256")}
        models.append({
            "role": role, "name": str(entry.get("name") or ""), "path": str(entry.get("path") or ""),
            "files": [(str(name), str(digest or "")) for name, digest in files.items()], TEST_ONLY: entry.get(TEST_ONLY) is True,
        })
    return models


@dataclass(frozen=True)
class RunInfo:
    """What Nextflow knows of the run (the workflow writes it as JSON for MAKE_REPORT)."""

    pipeline: str
    pipeline_version: str
    nextflow_version: str
    run_name: str
    profile: str
    command_line: str
    started: datetime
    params: dict[str, object]


RUN_INFO_TEXT = ("pipeline", "pipeline_version", "nextflow_version", "run_name", "profile", "command_line")


def read_run_info(path: str | Path) -> RunInfo:
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "the run information must be a JSON object")
    text = {}
    for key in RUN_INFO_TEXT:
        if not isinstance(data.get(key, ""), str):
            raise InputError(path, f"{key} must be a string, not {data[key]!r}")
        text[key] = data.get(key, "")
    try:
        started = datetime.fromisoformat(str(data.get("started")))
    except ValueError:
        raise InputError(path, f"started {data.get('started')!r} is not an ISO 8601 date and time") from None
    if started.tzinfo is None:
        raise InputError(path, f"started {data.get('started')!r} has no time zone")
    params = data.get("params", {})
    if not isinstance(params, dict) or any(isinstance(value, (dict, list)) for value in params.values()):
        raise InputError(path, "params must be a JSON object of plain values")
    return RunInfo(**text, started=started, params=params)


class Histogram:
    """Counts of values in ``bins`` equal bins over [0, 1]; 1.0 falls in the last bin."""

    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        self.counts = [0] * bins

    def add(self, value: float) -> None:
        bins = len(self.counts)
        self.counts[min(bins - 1, max(0, int(value * bins)))] += 1

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class TopRow:
    sample: str
    sequence_id: str
    length: int
    chunks_scored: str
    viral_chunks: str
    max_chunk_score: str
    mean_chunk_score: str
    call: str


class TopSequences:
    """The ``size`` scored sequences of highest mean (then max) chunk score, ties by sample and
    sequence ID then file order, kept in a list pruned to ``size`` whenever it doubles."""

    def __init__(self, size: int = TOP_SEQUENCES) -> None:
        self.size = size
        self._items: list[tuple[tuple, TopRow]] = []

    def add(self, mean: float, maximum: float, index: int, row: TopRow) -> None:
        # the index makes every key unique, so rows are never compared
        self._items.append(((-mean, -maximum, row.sample, row.sequence_id, index), row))
        if len(self._items) >= 2 * self.size:
            self._items = heapq.nsmallest(self.size, self._items)

    def ranked(self) -> list[TopRow]:
        return [row for _, row in heapq.nsmallest(self.size, self._items)]


SHORT_SCORED = "scored_shorter_than_chunk"


@dataclass
class SampleCounts:
    name: str
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("sequences", *CALL_STATUSES, *CALLS, *SUMMED_COLUMNS, SHORT_SCORED), 0)
    )
    # per unscored status, the sequences per reason (at most REASONS_PER_STATUS reasons, then OTHER_REASONS)
    reasons: dict[str, Counter] = field(default_factory=lambda: {status: Counter() for status in UNSCORED_STATUSES})

    def add_reason(self, status: str, reason: str) -> None:
        counter = self.reasons[status]
        if reason not in counter and len(counter) >= REASONS_PER_STATUS:
            reason = OTHER_REASONS
        counter[reason] += 1


@dataclass
class RunCalls:
    """What the report shows of all samples' calls."""

    threshold: float
    chunk_size: int
    samples: list[SampleCounts]  # by name
    means: Histogram
    maxima: Histogram
    top: list[TopRow]


@dataclass
class _Tally:
    means: Histogram = field(default_factory=Histogram)
    maxima: Histogram = field(default_factory=Histogram)
    top: TopSequences = field(default_factory=TopSequences)


def read_summary(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "not found: every sequence_calls.tsv needs the summary.json that summarize.py wrote beside it")
    summary = load_json(path)
    if not isinstance(summary, dict):
        raise InputError(path, "a summary.json must hold a JSON object")
    return summary


def summary_threshold(path: Path, summary: dict) -> float:
    return checked_float(path, "threshold", summary.get("threshold"), 0.0, 1.0)


def summary_sample(path: Path, summary: dict) -> str | None:
    sample = summary.get("sample")
    if sample is not None and not isinstance(sample, str):
        raise InputError(path, f"sample {shown(sample)} is not a name")
    return sample


def summary_chunk_size(path: Path, summary: dict) -> int:
    return checked_int(path, "chunk_size", summary.get("chunk_size"), minimum=1)


def recorded_sha256(path: Path, summary: dict) -> str:
    files = summary.get("files")
    digest = files.get(SEQUENCE_CALLS) if isinstance(files, dict) else None
    if not isinstance(digest, str):
        raise InputError(path, f"records no SHA-256 of {SEQUENCE_CALLS} under 'files': not written by this summarize.py")
    return digest


def _score(path: str | Path, line: int, column: str, value: str) -> float:
    try:
        score = float(value)
    except ValueError:
        raise InputError(path, f"line {line}: {column} {value!r} is not a number") from None
    if not 0.0 <= score <= 1.0:  # also false for NaN
        raise InputError(path, f"line {line}: {column} {value!r} is not a score between 0 and 1")
    return score


def checked_row(path: str | Path, line: int, row: dict[str, str]) -> tuple[dict[str, int], dict[str, float]]:
    """The counts and scores of a row of sequence_calls.tsv, each value checked."""
    counts = {column: parse_int(path, row[column], column, line) for column in COUNT_COLUMNS}
    status, call = row["status"], row["call"]
    if status not in CALL_STATUSES:
        raise InputError(path, f"line {line}: status {status!r} is not one of {', '.join(CALL_STATUSES)}")
    scored = status == SCORED
    if call not in (CALLS if scored else ("",)):
        expected = f"one of {', '.join(CALLS)}" if scored else "none"
        raise InputError(path, f"line {line}: call {call!r} where status {status} needs {expected}")
    for column in SCORE_COLUMNS:
        if bool(row[column]) != scored:
            raise InputError(path, f"line {line}: {column} {row[column]!r} where status {status} needs {'a score' if scored else 'none'}")
    if row["shorter_than_chunk"] not in FLAG_VALUES:
        raise InputError(path, f"line {line}: shorter_than_chunk {row['shorter_than_chunk']!r} is not one of {', '.join(FLAG_VALUES)}")
    scores = {column: _score(path, line, column, row[column]) for column in SCORE_COLUMNS if row[column]}
    return counts, scores


def read_sample(path: str | Path, summary_path: Path, summary: dict, tally: _Tally) -> SampleCounts:
    """Stream one sample's sequence_calls.tsv into ``tally`` and its counts, once its bytes are
    proven to be those its summary.json was written with (hashed first, so that a mixed or
    incomplete result folder is reported as such rather than as the bad value it may hold)."""
    if file_sha256(path) != recorded_sha256(summary_path, summary):
        raise InputError(
            path, f"is not the {SEQUENCE_CALLS} that {summary_path} was written with (SHA-256 differs): a mixed or incomplete result folder"
        )
    sample: SampleCounts | None = None
    for index, (line, row) in enumerate(read_tsv(path, CALL_COLUMNS)):
        if sample is None:
            sample = SampleCounts(row["sample"])
        elif row["sample"] != sample.name:
            raise InputError(path, f"holds several samples ({sample.name}, {row['sample']}); expected one sample per file")
        _count_row(path, line, row, index, sample, tally)
    return sample or SampleCounts(summary_sample(summary_path, summary) or Path(path).parent.name)


def _count_row(path: str | Path, line: int, row: dict[str, str], index: int, sample: SampleCounts, tally: _Tally) -> None:
    counts, scores = checked_row(path, line, row)
    sample.counts["sequences"] += 1
    sample.counts[row["status"]] += 1
    if row["call"]:
        sample.counts[row["call"]] += 1
    for column in SUMMED_COLUMNS:
        sample.counts[column] += counts[column]
    if row["status"] != SCORED:
        sample.add_reason(row["status"], row["reason"])
        return
    sample.counts[SHORT_SCORED] += row["shorter_than_chunk"] == "true"
    mean, maximum = scores["mean_chunk_score"], scores["max_chunk_score"]
    tally.means.add(mean)
    tally.maxima.add(maximum)
    tally.top.add(mean, maximum, index, TopRow(
        sample.name, row["sequence_id"], counts["length"], row["chunks_scored"], row["viral_chunks"],
        row["max_chunk_score"], row["mean_chunk_score"], row["call"],
    ))  # fmt: skip


def read_run_calls(paths: Sequence[str | Path]) -> RunCalls:
    """Every sample's sequence_calls.tsv, each with the summary.json beside it: all samples must
    have been called with one threshold and one chunk size, which the report states."""
    samples: dict[str, SampleCounts] = {}
    tally = _Tally()
    first: tuple[Path, float, int] | None = None
    for path in paths:
        summary_path = Path(path).parent / SUMMARY_JSON
        summary = read_summary(summary_path)
        threshold, chunk_size = summary_threshold(summary_path, summary), summary_chunk_size(summary_path, summary)
        if first is None:
            first = (summary_path, threshold, chunk_size)
        for what, value, agreed in (("threshold", threshold, first[1]), ("chunk_size", chunk_size, first[2])):
            if value != agreed:
                raise VirNucProError(
                    f"{first[0]} has {what} {agreed:g} but {summary_path} has {value:g}: the samples of one report must be called with one {what}"
                )
        sample = read_sample(path, summary_path, summary, tally)
        if sample.name in samples:
            raise InputError(path, f"sample '{sample.name}' is given twice")
        samples[sample.name] = sample
    return RunCalls(first[1], first[2], [samples[name] for name in sorted(samples)], tally.means, tally.maxima, tally.top.ranked())


# ---------------------------------------------------------------- numbers


def _fmt_int(value: float | None) -> str:
    return "–" if value is None else f"{int(round(value)):,}"


def _fmt_float(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _fmt_padding(padded: float | None, real: float | None) -> str:
    return "–" if padded is None or not real else f"{padded / real - 1:.1%}"


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


# ---------------------------------------------------------------- MultiQC


COUNT_FORMAT = "{:,.0f}"
PERCENT = {"suffix": "%", "min": 0, "max": 100, "format": "{:,.1f}"}


def mqc_columns(run: RunCalls) -> dict[str, dict[str, object]]:
    """The MultiQC table's columns: id -> title, description, format (custom-content 'headers')."""
    short = f"scored sequences shorter than the chunk length ({run.chunk_size} bp): their one chunk is shorter than the published classifiers were trained on"
    return {
        "sequences": {"title": "Sequences", "description": "input sequences (every FASTA record)", "format": COUNT_FORMAT, "scale": "Blues"},
        "scored": {"title": "Scored", "description": "sequences with at least one open reading frame, scored and called", "format": COUNT_FORMAT, "scale": "Greens"},
        VIRUS: {"title": "Virus", "description": f"scored sequences called virus (mean chunk virus score >= {run.threshold:g})", "format": COUNT_FORMAT, "scale": "Reds"},
        "non_virus": {"title": "Non-virus", "description": "scored sequences called non-virus", "format": COUNT_FORMAT, "scale": "Blues"},
        "virus_pct_of_scored": {"title": "% virus of scored", "description": "sequences called virus, percent of the scored sequences", **PERCENT, "scale": "Reds"},
        "virus_pct_of_all": {"title": "% virus of all", "description": "sequences called virus, percent of all input sequences (unscored ones included)", **PERCENT, "scale": "Reds"},
        SHORT_SCORED: {"title": "Scored < chunk", "description": short, "format": COUNT_FORMAT, "scale": "Oranges"},
        NO_OPEN_FRAME: {"title": "No open frame", "description": "no call: every frame of every chunk has a stop codon (expected for non-coding sequence)", "format": COUNT_FORMAT, "scale": "Greys"},
        TOO_SHORT: {"title": "Too short", "description": "no call: shorter than --min_length, not scored", "format": COUNT_FORMAT, "scale": "Greys"},
        INVALID: {"title": "Invalid", "description": "no call: empty or not nucleotides (--skip_invalid)", "format": COUNT_FORMAT, "scale": "Greys"},
    }  # fmt: skip


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}" if whole else ""


def format_mqc(run: RunCalls) -> str:
    """MultiQC custom content: a commented YAML header (values written as JSON, which YAML reads),
    then one row of counts per sample."""
    columns = mqc_columns(run)
    config = {
        "id": "virnucpro",
        "section_name": "VirNucPro",
        "description": f"Viral sequence calls per sample (virus = mean chunk virus score >= {run.threshold:g}; chunks of {run.chunk_size} bp).",
        "format": "tsv",
        "plot_type": "table",
        "pconfig": {"id": "virnucpro_table", "title": "VirNucPro: sequences and calls", "namespace": "VirNucPro"},
    }
    header = [f"# {key}: {json.dumps(value)}" for key, value in config.items()]
    header += ["# headers:"] + [f"#     {column}: {json.dumps(spec)}" for column, spec in columns.items()]
    rows = ["Sample\t" + "\t".join(columns)]
    for sample in run.samples:
        counts = sample.counts
        values = {
            "sequences": counts["sequences"], "scored": counts[SCORED], VIRUS: counts[VIRUS], "non_virus": counts[NON_VIRUS],
            "virus_pct_of_scored": _percent(counts[VIRUS], counts[SCORED]), "virus_pct_of_all": _percent(counts[VIRUS], counts["sequences"]),
            SHORT_SCORED: counts[SHORT_SCORED], NO_OPEN_FRAME: counts[NO_OPEN_FRAME], TOO_SHORT: counts[TOO_SHORT], INVALID: counts[INVALID],
        }  # fmt: skip
        rows.append("\t".join([sample.name, *(str(values[column]) for column in columns)]))
    return "\n".join(header + rows) + "\n"


# ---------------------------------------------------------------- SVG charts

COLOURS = {"virus": "#c0392b", "non-virus": "#2e86c1", "no_open_frame": "#b0b7bf", "too_short": "#d4ac0d", "invalid": "#5d6d7e"}
OUTCOMES = (("virus", "virus"), ("non-virus", "non-virus"), ("no_open_frame", "no open frame"), ("too_short", "too short"), ("invalid", "invalid"))


def svg_histogram(counts: Sequence[int], title: str, x_label: str, threshold: float | None = None) -> str:
    """A bar chart of ``counts`` over [0, 1] with axes, ticks, labels and an optional threshold line."""
    width, height = 520, 280
    left, right, top, bottom = 56, 16, 30, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts, default=0)
    y_max = _nice_ceiling(peak)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{width / 2}" y="18" class="title">{escape(title)}</text>',
    ]
    bar_w = plot_w / len(counts)
    for index, count in enumerate(counts):
        bar_h = plot_h * count / y_max
        x = left + index * bar_w
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w - 2:.1f}" height="{bar_h:.1f}" class="bar">'
            f"<title>{index / len(counts):.2f}–{(index + 1) / len(counts):.2f}: {count}</title></rect>"
        )
    for tick in _ticks(y_max):
        y = top + plot_h - plot_h * tick / y_max
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 7}" y="{y + 4:.1f}" class="ytick">{tick:,}</text>')
    for step in range(6):
        x = left + plot_w * step / 5
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" class="axis"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 17}" class="xtick">{step / 5:.1f}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>')
    if threshold is not None:
        x = left + plot_w * threshold
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" class="threshold"/>')
        parts.append(f'<text x="{x + 4:.1f}" y="{top + 12}" class="note">threshold {threshold:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" class="label">{escape(x_label)}</text>')
    parts.append(
        f'<text x="14" y="{top + plot_h / 2}" class="label" transform="rotate(-90 14 {top + plot_h / 2})">sequences</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def _ticks(y_max: int) -> list[int]:
    step = max(1, y_max // 5) if y_max >= 5 else 1
    return list(range(0, y_max + 1, step))


def svg_sample_bars(samples: Sequence[SampleCounts]) -> str:
    """One horizontal stacked bar per sample: virus, non-virus, no open frame, too short, invalid."""
    label_w, bar_w, row_h, top = 170, 560, 26, 34
    height = top + row_h * len(samples) + 12
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + bar_w + 90} {height}" role="img" aria-label="sequences per sample">']
    x = label_w
    for key, text in OUTCOMES:
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{COLOURS[key]}"/><text x="{x + 16}" y="18" class="legend">{text}</text>')
        x += 22 + 8 * len(text)
    for row, sample in enumerate(samples):
        counts = sample.counts
        y = top + row * row_h
        name = sample.name if len(sample.name) <= 24 else sample.name[:23] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" class="ytick">{escape(name)}<title>{escape(sample.name)}</title></text>')
        offset = label_w
        for key, _ in OUTCOMES:
            if counts["sequences"] and counts[key]:
                width = bar_w * counts[key] / counts["sequences"]
                parts.append(
                    f'<rect x="{offset:.1f}" y="{y}" width="{width:.1f}" height="{row_h - 8}" fill="{COLOURS[key]}">'
                    f"<title>{escape(sample.name)}: {counts[key]} {key}</title></rect>"
                )
                offset += width
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}" class="legend">{counts["sequences"]:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1c2833;margin:0;background:#f4f6f7}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:32px 0 10px;border-bottom:2px solid #d5dbdb;padding-bottom:4px}
p.meta{color:#566573;margin:0 0 16px}
.rule{background:#eef5fb;border-left:4px solid #2e86c1;padding:10px 14px;margin:12px 0}
table{border-collapse:collapse;width:100%;table-layout:fixed;font-size:.9em;margin:8px 0}
th,td{border-bottom:1px solid #e5e8e8;padding:5px 8px;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}th{background:#f2f4f4;font-weight:600;font-size:.92em;overflow-wrap:break-word;hyphens:auto}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
.virus{color:#c0392b;font-weight:600}.non-virus{color:#2e86c1}
figure{margin:12px 0}.charts{display:flex;flex-wrap:wrap;gap:16px}.charts figure{margin:0;flex:1 1 480px;max-width:560px}
figure svg{width:100%;height:auto}figcaption{font-size:.85em;color:#566573}
svg text{font-size:11px;fill:#1c2833}svg .title{font-size:13px;font-weight:600;text-anchor:middle}
svg .label{font-size:12px;text-anchor:middle}svg .xtick{text-anchor:middle}svg .ytick{text-anchor:end}
svg .bar{fill:#5499c7}svg .axis{stroke:#1c2833;stroke-width:1}svg .grid{stroke:#e5e8e8;stroke-width:1}
svg .threshold{stroke:#c0392b;stroke-width:1.5;stroke-dasharray:5 3}svg .note{fill:#c0392b;font-size:11px}
.empty{color:#7f8c8d;font-style:italic}
h3{font-size:1em;margin:18px 0 6px}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
.banner{background:#fdecea;border:2px solid #c0392b;color:#78281f;padding:12px 16px;margin:12px 0;font-size:1.05em}
.note{background:#fef9e7;border-left:4px solid #d4ac0d;padding:10px 14px;margin:12px 0}
ul.cite li{margin:0 0 6px}
"""


def _table(headers: Sequence[tuple[str, str]], rows: Sequence[Sequence[tuple[str, str]]], widths: Sequence[str] | None = None) -> str:
    """An HTML table; each header and cell is (class, already-escaped html)."""
    colgroup = "".join(f'<col style="width:{width}">' for width in widths) if widths else ""
    head = "".join(f'<th class="{css}">{text}</th>' for css, text in headers)
    body = "".join("<tr>" + "".join(f'<td class="{css}">{text}</td>' for css, text in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td class="empty" colspan="{len(headers)}">none</td></tr>'
    return f"<table><colgroup>{colgroup}</colgroup><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _samples_section(run: RunCalls) -> str:
    headers = [("", "sample"), ("num", "input"), ("num", "scored"), ("num", "virus"), ("num", "non-virus"),
               ("num", "% virus of scored"), ("num", f"scored, &lt; {run.chunk_size} bp"), ("num", "no call"),
               ("num", "chunks"), ("num", "chunks scored"), ("num", "frames scored")]  # fmt: skip
    rows = []
    for sample in run.samples:
        counts = sample.counts
        percent = _percent(counts[VIRUS], counts[SCORED])
        rows.append([
            ("", escape(sample.name)), ("num", f"{counts['sequences']:,}"), ("num", f"{counts[SCORED]:,}"), ("num", f"{counts[VIRUS]:,}"),
            ("num", f"{counts[NON_VIRUS]:,}"), ("num", f"{percent}%" if percent else "–"), ("num", f"{counts[SHORT_SCORED]:,}"),
            ("num", f"{counts['sequences'] - counts[SCORED]:,}"), ("num", f"{counts['chunks']:,}"), ("num", f"{counts['chunks_scored']:,}"),
            ("num", f"{counts['frames_scored']:,}"),
        ])  # fmt: skip
    chart = f"<figure>{svg_sample_bars(run.samples)}<figcaption>Input sequences per sample by outcome.</figcaption></figure>" if run.samples else ""
    intro = (
        "<p>Input sequences per sample and what became of them. &ldquo;% virus of scored&rdquo; is the share of the scored "
        "sequences called virus (sequences without a call are left out); &ldquo;chunks&rdquo; counts every chunk of every "
        "sequence, the scored columns those with at least one open reading frame.</p>"
    )
    short = sum(sample.counts[SHORT_SCORED] for sample in run.samples)
    note = ""
    if short:
        note = (
            f'<div class="note"><strong>{short:,} scored sequence(s) are shorter than the chunk length, {run.chunk_size} bp</strong> '
            "(column <code>shorter_than_chunk</code> of <code>sequence_calls.tsv</code>): each was scored from a single chunk "
            f"shorter than the {run.chunk_size} bp chunks the published classifier was trained on, and how well it scores such "
            "chunks is not established. <code>--min_length</code> leaves sequences below a length unscored.</div>"
        )
    widths = ["15%", "8%", "8%", "8%", "8%", "9%", "9%", "8%", "9%", "9%", "9%"]
    return "<h2>Samples</h2>" + intro + _table(headers, rows, widths) + note + chart


STATUS_TEXT = {
    NO_OPEN_FRAME: (
        "<strong>no open frame</strong>: every one of the six frames of every chunk has a stop codon (or no complete codon). "
        "VirNucPro scores only open reading frames, so these sequences get no call. This is expected, not an error: a chunk "
        "inside a protein-coding gene keeps its coding frame, but non-coding sequence rarely has a frame without a stop "
        "(about 56% of random 150 bp sequences and 99.8% of random 500 bp ones have none), so host-rich, rRNA-rich or "
        "intergenic material yields many of them."
    ),
    TOO_SHORT: "<strong>too short</strong>: shorter than <code>--min_length</code>; not chunked or scored.",
    INVALID: "<strong>invalid</strong>: empty or not nucleotides, listed instead of failing the run (<code>--skip_invalid</code>).",
}


def _unscored_section(samples: Sequence[SampleCounts]) -> str:
    headers = [("", "sample"), ("", "status"), ("", "reason"), ("num", "sequences")]
    rows = []
    for sample in samples:
        for status in UNSCORED_STATUSES:
            ranked = sorted(sample.reasons[status].items(), key=lambda item: (item[0] == OTHER_REASONS, -item[1], item[0]))
            for reason, count in ranked:
                rows.append([("", escape(sample.name)), ("", escape(status)), ("", escape(reason) or "–"), ("num", f"{count:,}")])
    legend = "".join(f"<li>{text}</li>" for text in STATUS_TEXT.values())
    intro = (
        "<p>Every input sequence is listed in <code>sequence_calls.tsv</code>; those without a call have a status and a reason:</p>"
        f"<ul>{legend}</ul>"
    )
    return "<h2>Sequences without a call</h2>" + intro + _table(headers, rows, ["18%", "14%", "56%", "12%"])


def _histograms_section(run: RunCalls) -> str:
    return (
        "<h2>Score distributions</h2><div class=\"charts\">"
        f"<figure>{svg_histogram(run.means.counts, 'Mean chunk virus score per sequence', 'mean chunk virus score', run.threshold)}"
        f"<figcaption>{run.means.total:,} scored sequences, all samples; the call uses this score.</figcaption></figure>"
        f"<figure>{svg_histogram(run.maxima.counts, 'Highest chunk virus score per sequence', 'max chunk virus score')}"
        f"<figcaption>{run.maxima.total:,} scored sequences, all samples.</figcaption></figure></div>"
    )


def _top_section(top: Sequence[TopRow]) -> str:
    headers = [("num", "#"), ("", "sample"), ("", "sequence"), ("num", "length"), ("num", "chunks scored"),
               ("num", "viral chunks"), ("num", "max score"), ("num", "mean score"), ("", "call")]
    rows = []
    for rank, row in enumerate(top, start=1):
        rows.append([
            ("num", str(rank)), ("", escape(row.sample)), ("mono", escape(row.sequence_id)), ("num", f"{row.length:,}"),
            ("num", row.chunks_scored), ("num", row.viral_chunks), ("num", row.max_chunk_score),
            ("num", row.mean_chunk_score), (escape(row.call), escape(row.call)),
        ])
    return (
        f"<h2>Top {TOP_SEQUENCES} sequences by mean chunk virus score</h2>"
        + _table(headers, rows, ["5%", "13%", "30%", "9%", "8%", "8%", "9%", "9%", "9%"])
    )


def _models_section(models: Sequence[dict]) -> str:
    headers = [("", "model"), ("", "name"), ("", "path"), ("", "sha256")]
    rows = [
        [
            ("", escape(model["role"])), ("", escape(model["name"])), ("mono", escape(model["path"])),
            ("mono", "<br>".join(escape(f"{name}: {digest}" if name else digest) for name, digest in model["files"])),
        ]
        for model in models
    ]
    return "<h2>Models</h2>" + _table(headers, rows, ["11%", "21%", "34%", "34%"])


def _stages_section(stages: Sequence[dict]) -> str:
    headers = [("", "stage"), ("num", "tasks"), ("num", "items"), ("num", "tokens"), ("num", "padding"), ("num", "compute s"), ("num", "load s"),
               ("num", "items/s"), ("num", "tokens/s"), ("", "device"), ("", "precision"), ("num", "peak GPU memory")]
    rows = [
        [
            ("", escape(stage["stage"])), ("num", str(stage["tasks"])), ("num", _fmt_int(stage["items"])), ("num", _fmt_int(stage["tokens"])),
            ("num", _fmt_padding(stage["padded_tokens"], stage["tokens"])), ("num", _fmt_float(stage["seconds"])), ("num", _fmt_float(stage["load_seconds"])),
            ("num", _fmt_float(stage["items_per_second"])), ("num", _fmt_float(stage["tokens_per_second"], 0)),
            ("", escape(", ".join(stage["devices"]) or "–")), ("", escape(", ".join(stage["precisions"]) or "–")),
            ("num", _fmt_bytes(stage["peak_gpu_memory_bytes"])),
        ]
        for stage in stages
    ]
    note = ("<p>Compute seconds exclude model loading; throughput is items (or tokens) per compute second, summed over the stage's "
            "tasks. Padding: the positions the embedders' batches computed beyond the real tokens, as a share of those.</p>")
    return "<h2>Runtime per stage</h2>" + _table(headers, rows, ["13%", "5%", "8%", "9%", "7%", "8%", "7%", "8%", "8%", "9%", "8%", "10%"]) + note


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _param_value(value: object) -> str:
    return "(not set)" if value is None else json.dumps(value) if isinstance(value, bool) else str(value)


def _run_section(info: RunInfo, created: datetime) -> str:
    started = info.started.astimezone(timezone.utc)
    facts = [
        ("started", started.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("wall time up to this report", f"{_duration((created - info.started).total_seconds())} (from the run's start, its first launch where it was resumed, to the creation of this page; "
                                        "Nextflow's execution report in pipeline_info/ has the whole run)"),
        ("pipeline", f"{info.pipeline} {info.pipeline_version}".strip()),
        ("Nextflow", info.nextflow_version),
        ("run name", info.run_name),
        ("profile", info.profile),
    ]  # fmt: skip
    rows = [[("", escape(name)), ("", escape(value) or "–")] for name, value in facts]
    rows.append([("", "command line"), ("mono", escape(info.command_line) or "–")])
    params = [[("mono", escape(name)), ("mono", escape(_param_value(value)))] for name, value in sorted(info.params.items())]
    return (
        "<h2>Run</h2>" + _table([("", "what"), ("", "value")], rows, ["22%", "78%"])
        + "<h3>Parameters</h3>" + _table([("", "parameter"), ("", "value")], params, ["22%", "78%"])
    )


CITATIONS = (
    ("VirNucPro", "Li J, Mi J, Lin W, Tian F, Wan J, Gao J, Tong Y. VirNucPro: an identifier for the identification of viral short "
     "sequences using six-frame translation and large language models. Briefings in Bioinformatics 26(3):bbaf224 (2025).", "10.1093/bib/bbaf224"),
    ("DNABERT-S", "Zhou Z, Wu W, Ho H, Wang J, Shi L, Davuluri RV, Wang Z, Liu H. DNABERT-S: pioneering species differentiation with "
     "species-aware DNA embeddings. Bioinformatics 41(Supplement_1):i255–i264 (2025).", "10.1093/bioinformatics/btaf188"),
    ("ESM-2", "Lin Z, Akin H, Rao R, Hie B, Zhu Z, Lu W, Smetanin N, Verkuil R, Kabeli O, Shmueli Y, dos Santos Costa A, "
     "Fazel-Zarandi M, Sercu T, Candido S, Rives A. Evolutionary-scale prediction of atomic-level protein structure with a "
     "language model. Science 379(6637):1123–1130 (2023).", "10.1126/science.ade2574"),
    ("Nextflow", "Di Tommaso P, Chatzou M, Floden EW, Barja PP, Palumbo E, Notredame C. Nextflow enables reproducible "
     "computational workflows. Nature Biotechnology 35:316–319 (2017).", "10.1038/nbt.3820"),
)  # fmt: skip


def _citations_section() -> str:
    items = "".join(f"<li><strong>{escape(name)}</strong>: {escape(text)} doi:{escape(doi)}</li>" for name, text, doi in CITATIONS)
    return (
        "<h2>Citations</h2><p>Results from this pipeline rest on the method and models below; please cite them "
        "(CITATIONS.md of the pipeline lists the libraries too).</p>"
        f"<ul class=\"cite\">{items}</ul>"
    )


TEST_MODELS_BANNER = (
    '<div class="banner"><strong>Test models: these calls mean nothing.</strong> This run used the seeded tiny models of the '
    "test profile (<code>--tiny_models</code>), which only show that the pipeline runs end to end. Run without the test "
    "profile to use the published DNABERT-S, ESM-2 and VirNucPro models.</div>"
)


def render_html(run: RunCalls, models: Sequence[dict], stages: Sequence[dict], created: datetime, info: RunInfo | None = None) -> str:
    """The report page, made at ``created``; ``info`` adds the run section."""
    sequences = sum(sample.counts["sequences"] for sample in run.samples)
    virus = sum(sample.counts["virus"] for sample in run.samples)
    banner = TEST_MODELS_BANNER if any(model[TEST_ONLY] for model in models) else ""
    run_section = _run_section(info, created) if info is not None else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>VirNucPro report</title><style>{CSS}</style></head><body><main>"
        "<h1>VirNucPro report</h1>"
        f'<p class="meta">virnucpro {escape(__version__)} · {len(run.samples)} sample(s) · {sequences:,} input sequences · {virus:,} called virus</p>'
        + banner
        + f'<div class="rule"><strong>Call rule.</strong> {escape(call_rule(run.threshold))} Chunks are {run.chunk_size} bp.</div>'
        + run_section
        + _samples_section(run)
        + _unscored_section(run.samples)
        + _histograms_section(run)
        + _top_section(run.top)
        + _models_section(models)
        + _stages_section(stages)
        + _citations_section()
        + "</main></body></html>\n"
    )
