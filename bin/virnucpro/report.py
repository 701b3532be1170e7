"""The run report: one self-contained HTML page (inline CSS and hand-drawn SVG, no scripts) and a
MultiQC custom-content table, both built from the samples' sequence_calls.tsv (each sealed by the
summary.json beside it), models.json and the stages' metrics files.

Each calls file is hashed, then streamed once into counters, fixed-bin histograms and a bounded
heap of the top sequences, so memory does not grow with the number of sequences.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Sequence

from . import __version__
from .contracts import (
    CALL_COLUMNS, CALL_STATUSES, CALLS, MODEL_ROLES, SCORED, SEQUENCE_CALLS, SUMMARY_JSON, call_rule, file_sha256, parse_int, read_tsv,
)  # fmt: skip
from .errors import InputError, VirNucProError
from .metrics import load_json

TOP_SEQUENCES = 50
HISTOGRAM_BINS = 20
MQC_COLUMNS = ("sequences", "scored", "no_open_frame", "invalid", "virus", "non_virus", "virus_percent")
COUNT_COLUMNS = ("length", "chunks", "chunks_scored", "frames_scored", "viral_chunks")
SCORE_COLUMNS = ("viral_chunk_fraction", "max_chunk_score", "mean_chunk_score")
SUMMED_COLUMNS = ("chunks", "chunks_scored", "frames_scored")


# ---------------------------------------------------------------- inputs


def read_models(path: str | Path) -> list[dict]:
    """(role, name, path, sha256) of each model in models.json, the three pipeline models first."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "models.json must hold a JSON object keyed by model role")
    roles = [role for role in MODEL_ROLES if role in data] + sorted(role for role in data if role not in MODEL_ROLES)
    models = []
    for role in roles:
        entry = data[role] if isinstance(data[role], dict) else {}
        models.append({"role": role, **{key: str(entry.get(key) or "") for key in ("name", "path", "sha256")}})
    return models


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


@dataclass
class SampleCounts:
    name: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("sequences", *CALL_STATUSES, *CALLS, *SUMMED_COLUMNS), 0))


@dataclass
class RunCalls:
    """What the report shows of all samples' calls."""

    threshold: float
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
    value = summary.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(path, f"threshold {value!r} is not a probability")
    return value


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
    return sample or SampleCounts(str(summary.get("sample") or Path(path).parent.name))


def _count_row(path: str | Path, line: int, row: dict[str, str], index: int, sample: SampleCounts, tally: _Tally) -> None:
    counts, scores = checked_row(path, line, row)
    sample.counts["sequences"] += 1
    sample.counts[row["status"]] += 1
    if row["call"]:
        sample.counts[row["call"]] += 1
    for column in SUMMED_COLUMNS:
        sample.counts[column] += counts[column]
    if row["status"] == SCORED:
        mean, maximum = scores["mean_chunk_score"], scores["max_chunk_score"]
        tally.means.add(mean)
        tally.maxima.add(maximum)
        tally.top.add(mean, maximum, index, TopRow(
            sample.name, row["sequence_id"], counts["length"], row["chunks_scored"], row["viral_chunks"],
            row["max_chunk_score"], row["mean_chunk_score"], row["call"],
        ))  # fmt: skip


def read_run_calls(paths: Sequence[str | Path]) -> RunCalls:
    """Every sample's sequence_calls.tsv, each with the summary.json beside it: all samples must
    have been called with one threshold, which the report states."""
    samples: dict[str, SampleCounts] = {}
    tally = _Tally()
    first: tuple[Path, float] | None = None
    for path in paths:
        summary_path = Path(path).parent / SUMMARY_JSON
        summary = read_summary(summary_path)
        threshold = summary_threshold(summary_path, summary)
        if first is None:
            first = (summary_path, threshold)
        elif threshold != first[1]:
            raise VirNucProError(
                f"{first[0]} has threshold {first[1]:g} but {summary_path} has {threshold:g}: "
                "the samples of one report must be called with one threshold"
            )
        sample = read_sample(path, summary_path, summary, tally)
        if sample.name in samples:
            raise InputError(path, f"sample '{sample.name}' is given twice")
        samples[sample.name] = sample
    return RunCalls(first[1], [samples[name] for name in sorted(samples)], tally.means, tally.maxima, tally.top.ranked())


# ---------------------------------------------------------------- numbers


def _fmt_int(value: float | None) -> str:
    return "–" if value is None else f"{int(round(value)):,}"


def _fmt_float(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


# ---------------------------------------------------------------- MultiQC


def format_mqc(run: RunCalls) -> str:
    """MultiQC custom content: a commented YAML header, then one row of counts per sample."""
    threshold = run.threshold
    header = [
        "# id: 'virnucpro'",
        "# section_name: 'VirNucPro'",
        f"# description: 'Viral sequence calls per sample (virus = mean chunk virus score >= {threshold:g}).'",
        "# plot_type: 'table'",
        "# pconfig:",
        "#     id: 'virnucpro_table'",
        "#     title: 'VirNucPro: sequences and calls'",
        "#     namespace: 'VirNucPro'",
        "Sample\t" + "\t".join(MQC_COLUMNS),
    ]
    rows = []
    for sample in run.samples:
        counts = sample.counts
        scored = counts["scored"]
        percent = f"{100 * counts['virus'] / scored:.2f}" if scored else ""
        values = [counts["sequences"], counts["scored"], counts["no_open_frame"], counts["invalid"], counts["virus"], counts["non-virus"]]
        rows.append("\t".join([sample.name, *map(str, values), percent]))
    return "\n".join(header + rows) + "\n"


# ---------------------------------------------------------------- SVG charts

COLOURS = {"virus": "#c0392b", "non-virus": "#2e86c1", "no_open_frame": "#b0b7bf", "invalid": "#5d6d7e"}


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
    """One horizontal stacked bar per sample: virus, non-virus, no open frame, invalid."""
    label_w, bar_w, row_h, top = 170, 560, 26, 34
    height = top + row_h * len(samples) + 12
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + bar_w + 90} {height}" role="img" aria-label="sequences per sample">']
    x = label_w
    for key, text in (("virus", "virus"), ("non-virus", "non-virus"), ("no_open_frame", "no open frame"), ("invalid", "invalid")):
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{COLOURS[key]}"/><text x="{x + 16}" y="18" class="legend">{text}</text>')
        x += 22 + 8 * len(text)
    for row, sample in enumerate(samples):
        counts = sample.counts
        y = top + row * row_h
        name = sample.name if len(sample.name) <= 24 else sample.name[:23] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" class="ytick">{escape(name)}<title>{escape(sample.name)}</title></text>')
        offset = label_w
        for key in ("virus", "non-virus", "no_open_frame", "invalid"):
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
"""


def _table(headers: Sequence[tuple[str, str]], rows: Sequence[Sequence[tuple[str, str]]], widths: Sequence[str] | None = None) -> str:
    """An HTML table; each header and cell is (class, already-escaped html)."""
    colgroup = "".join(f'<col style="width:{width}">' for width in widths) if widths else ""
    head = "".join(f'<th class="{css}">{text}</th>' for css, text in headers)
    body = "".join("<tr>" + "".join(f'<td class="{css}">{text}</td>' for css, text in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td class="empty" colspan="{len(headers)}">none</td></tr>'
    return f"<table><colgroup>{colgroup}</colgroup><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _samples_section(samples: Sequence[SampleCounts]) -> str:
    headers = [("", "sample"), ("num", "input"), ("num", "scored"), ("num", "no open frame"), ("num", "invalid"),
               ("num", "virus"), ("num", "non-virus"), ("num", "chunks"), ("num", "chunks scored"), ("num", "frames scored")]
    rows = []
    for sample in samples:
        counts = sample.counts
        keys = ("sequences", "scored", "no_open_frame", "invalid", "virus", "non-virus", "chunks", "chunks_scored", "frames_scored")
        rows.append([("", escape(sample.name))] + [("num", f"{counts[key]:,}") for key in keys])
    chart = f"<figure>{svg_sample_bars(samples)}<figcaption>Input sequences per sample by outcome.</figcaption></figure>" if samples else ""
    intro = "<p>Input sequences per sample and what became of them; &ldquo;chunks&rdquo; counts every chunk of every sequence, the scored columns those with at least one open reading frame.</p>"
    return "<h2>Samples</h2>" + intro + _table(headers, rows, ["16%"] + ["9.33%"] * 9) + chart


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
    rows = [[("", escape(model["role"])), ("", escape(model["name"])), ("mono", escape(model["path"])), ("mono", escape(model["sha256"]))] for model in models]
    return "<h2>Models</h2>" + _table(headers, rows, ["11%", "21%", "34%", "34%"])


def _stages_section(stages: Sequence[dict]) -> str:
    headers = [("", "stage"), ("num", "tasks"), ("num", "items"), ("num", "tokens"), ("num", "compute s"), ("num", "load s"),
               ("num", "items/s"), ("num", "tokens/s"), ("", "device"), ("", "precision"), ("num", "peak GPU memory")]
    rows = [
        [
            ("", escape(stage["stage"])), ("num", str(stage["tasks"])), ("num", _fmt_int(stage["items"])), ("num", _fmt_int(stage["tokens"])),
            ("num", _fmt_float(stage["seconds"])), ("num", _fmt_float(stage["load_seconds"])),
            ("num", _fmt_float(stage["items_per_second"])), ("num", _fmt_float(stage["tokens_per_second"], 0)),
            ("", escape(", ".join(stage["devices"]) or "–")), ("", escape(", ".join(stage["precisions"]) or "–")),
            ("num", _fmt_bytes(stage["peak_gpu_memory_bytes"])),
        ]
        for stage in stages
    ]
    note = "<p>Compute seconds exclude model loading; throughput is items (or tokens) per compute second, summed over the stage's tasks.</p>"
    return "<h2>Runtime per stage</h2>" + _table(headers, rows, ["14%", "6%", "9%", "10%", "9%", "7%", "9%", "9%", "9%", "8%", "10%"]) + note


def render_html(run: RunCalls, models: Sequence[dict], stages: Sequence[dict]) -> str:
    sequences = sum(sample.counts["sequences"] for sample in run.samples)
    virus = sum(sample.counts["virus"] for sample in run.samples)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>VirNucPro report</title><style>{CSS}</style></head><body><main>"
        "<h1>VirNucPro report</h1>"
        f'<p class="meta">virnucpro {escape(__version__)} · {len(run.samples)} sample(s) · {sequences:,} input sequences · {virus:,} called virus</p>'
        f'<div class="rule"><strong>Call rule.</strong> {escape(call_rule(run.threshold))}</div>'
        + _samples_section(run.samples)
        + _histograms_section(run)
        + _top_section(run.top)
        + _models_section(models)
        + _stages_section(stages)
        + "</main></body></html>\n"
    )
