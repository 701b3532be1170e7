"""The run report: one self-contained HTML page (inline CSS and hand-drawn SVG, no scripts) and a
MultiQC custom-content table, both built from the samples' sequence_calls.tsv, models.json and
the stages' metrics files."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Iterable, Sequence

from . import __version__
from .errors import InputError, VirNucProError
from .summary import CALL_COLUMNS, CALLS, STATUSES, call_rule, read_tsv

METRIC_KEYS = ("stage", "name", "items", "tokens", "seconds", "load_seconds", "device", "precision", "peak_gpu_memory_bytes")
PIPELINE_STAGES = ("prepare_frames", "embed_dnabert", "embed_esm", "classify_frames", "summarize")
MODEL_ROLES = ("dnabert", "esm", "classifier")
TOP_SEQUENCES = 50
HISTOGRAM_BINS = 20
MQC_COLUMNS = ("sequences", "scored", "no_open_frame", "invalid", "virus", "non_virus", "virus_percent")


# ---------------------------------------------------------------- inputs


def _load_json(path: str | Path) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f"not valid JSON ({error})") from None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def read_metrics(paths: Iterable[str | Path]) -> list[dict]:
    """Stage metrics records with every key present (None where missing), in a stable order."""
    records = []
    for path in paths:
        data = _load_json(path)
        if not isinstance(data, dict):
            raise InputError(path, "a metrics file must hold a JSON object")
        record = {key: data.get(key) for key in METRIC_KEYS}
        record["stage"] = str(record["stage"] or "unknown")
        for key in ("items", "tokens", "seconds", "load_seconds", "peak_gpu_memory_bytes"):
            record[key] = _number(record[key])
        records.append(record)
    return sorted(records, key=lambda record: json.dumps(record, sort_keys=True))


def _stage_order(stage: str) -> tuple[int, str]:
    return (PIPELINE_STAGES.index(stage) if stage in PIPELINE_STAGES else len(PIPELINE_STAGES), stage)


def _total(records: Sequence[dict], key: str) -> float | None:
    values = [record[key] for record in records if record[key] is not None]
    return sum(values) if values else None


def _rate(amount: float | None, seconds: float | None) -> float | None:
    return amount / seconds if amount is not None and seconds else None


def aggregate_stages(records: Sequence[dict]) -> list[dict]:
    """Per stage, in pipeline order: task count, summed items/tokens/seconds, throughput, devices."""
    stages = []
    for stage in sorted({record["stage"] for record in records}, key=_stage_order):
        group = [record for record in records if record["stage"] == stage]
        seconds = _total(group, "seconds")
        peaks = [record["peak_gpu_memory_bytes"] for record in group if record["peak_gpu_memory_bytes"] is not None]
        stages.append(
            {
                "stage": stage,
                "tasks": len(group),
                "items": _total(group, "items"),
                "tokens": _total(group, "tokens"),
                "seconds": seconds,
                "load_seconds": _total(group, "load_seconds"),
                "items_per_second": _rate(_total(group, "items"), seconds),
                "tokens_per_second": _rate(_total(group, "tokens"), seconds),
                "devices": sorted({str(record["device"]) for record in group if record["device"] is not None}),
                "precisions": sorted({str(record["precision"]) for record in group if record["precision"] is not None}),
                "peak_gpu_memory_bytes": max(peaks) if peaks else None,
            }
        )
    return stages


def read_models(path: str | Path) -> list[dict]:
    """(role, name, path, sha256) of each model in models.json, the three pipeline models first."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "models.json must hold a JSON object keyed by model role")
    roles = [role for role in MODEL_ROLES if role in data] + sorted(role for role in data if role not in MODEL_ROLES)
    models = []
    for role in roles:
        entry = data[role] if isinstance(data[role], dict) else {}
        models.append({"role": role, **{key: str(entry.get(key) or "") for key in ("name", "path", "sha256")}})
    return models


@dataclass(frozen=True)
class SampleCalls:
    name: str
    rows: list[dict[str, str]]

    def count(self, column: str, value: str) -> int:
        return sum(row[column] == value for row in self.rows)

    def total(self, column: str) -> int:
        return sum(int(row[column] or 0) for row in self.rows)

    def scores(self, column: str) -> list[float]:
        return [float(row[column]) for row in self.rows if row[column]]


def read_sample_calls(paths: Sequence[str | Path], threshold: float) -> list[SampleCalls]:
    """Each sample's sequence_calls.tsv, sorted by sample name.

    A summary.json beside a calls file (written with it by summarize.py) names the sample when
    the table has no rows, and records the threshold the calls were made with: that must be the
    threshold the report states.
    """
    samples: dict[str, SampleCalls] = {}
    for path in paths:
        rows = list(read_tsv(path, CALL_COLUMNS))
        summary = _read_summary(Path(path).parent / "summary.json")
        names = sorted({row["sample"] for row in rows}) or [str(summary.get("sample") or Path(path).parent.name)]
        if len(names) > 1:
            raise InputError(path, f"holds several samples ({', '.join(names)}); expected one sample per file")
        name = names[0]
        if name in samples:
            raise InputError(path, f"sample '{name}' is given twice")
        for row in rows:
            for column in ("mean_chunk_score", "max_chunk_score", "viral_chunk_fraction"):
                try:
                    float(row[column] or 0)
                except ValueError:
                    raise InputError(path, f"{column} {row[column]!r} is not a number", row["sequence_id"]) from None
        used = summary.get("threshold")
        if used is not None and used != threshold:
            raise VirNucProError(
                f"sample '{name}' was called with threshold {used} ({Path(path).parent / 'summary.json'}) "
                f"but the report was asked to state {threshold}"
            )
        samples[name] = SampleCalls(name, rows)
    return [samples[name] for name in sorted(samples)]


def _read_summary(path: Path) -> dict:
    if not path.is_file():
        return {}
    summary = _load_json(path)
    if not isinstance(summary, dict):
        raise InputError(path, "a summary.json must hold a JSON object")
    return summary


# ---------------------------------------------------------------- numbers and counts


def sample_counts(sample: SampleCalls) -> dict[str, int]:
    counts = {"sequences": len(sample.rows)}
    counts.update({status: sample.count("status", status) for status in STATUSES})
    counts.update({call: sample.count("call", call) for call in CALLS})
    counts.update({column: sample.total(column) for column in ("chunks", "chunks_scored", "frames_scored")})
    return counts


def histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> list[int]:
    """Counts of values in ``bins`` equal bins over [0, 1]; 1.0 falls in the last bin."""
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value * bins)))] += 1
    return counts


def _fmt_int(value: float | None) -> str:
    return "–" if value is None else f"{int(round(value)):,}"


def _fmt_float(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


# ---------------------------------------------------------------- MultiQC


def format_mqc(samples: Sequence[SampleCalls], threshold: float) -> str:
    """MultiQC custom content: a commented YAML header, then one row of counts per sample."""
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
    for sample in samples:
        counts = sample_counts(sample)
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


def svg_sample_bars(samples: Sequence[SampleCalls]) -> str:
    """One horizontal stacked bar per sample: virus, non-virus, no open frame, invalid."""
    label_w, bar_w, row_h, top = 170, 560, 26, 34
    height = top + row_h * len(samples) + 12
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + bar_w + 90} {height}" role="img" aria-label="sequences per sample">']
    x = label_w
    for key, text in (("virus", "virus"), ("non-virus", "non-virus"), ("no_open_frame", "no open frame"), ("invalid", "invalid")):
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{COLOURS[key]}"/><text x="{x + 16}" y="18" class="legend">{text}</text>')
        x += 22 + 8 * len(text)
    for row, sample in enumerate(samples):
        counts = sample_counts(sample)
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


def _samples_section(samples: Sequence[SampleCalls]) -> str:
    headers = [("", "sample"), ("num", "input"), ("num", "scored"), ("num", "no open frame"), ("num", "invalid"),
               ("num", "virus"), ("num", "non-virus"), ("num", "chunks"), ("num", "chunks scored"), ("num", "frames scored")]
    rows = []
    for sample in samples:
        counts = sample_counts(sample)
        keys = ("sequences", "scored", "no_open_frame", "invalid", "virus", "non-virus", "chunks", "chunks_scored", "frames_scored")
        rows.append([("", escape(sample.name))] + [("num", f"{counts[key]:,}") for key in keys])
    chart = f"<figure>{svg_sample_bars(samples)}<figcaption>Input sequences per sample by outcome.</figcaption></figure>" if samples else ""
    intro = "<p>Input sequences per sample and what became of them; &ldquo;chunks&rdquo; counts every chunk of every sequence, the scored columns those with at least one open reading frame.</p>"
    return "<h2>Samples</h2>" + intro + _table(headers, rows, ["16%"] + ["9.33%"] * 9) + chart


def _histograms_section(samples: Sequence[SampleCalls], threshold: float) -> str:
    means = [score for sample in samples for score in sample.scores("mean_chunk_score")]
    maxima = [score for sample in samples for score in sample.scores("max_chunk_score")]
    return (
        "<h2>Score distributions</h2><div class=\"charts\">"
        f"<figure>{svg_histogram(histogram(means), 'Mean chunk virus score per sequence', 'mean chunk virus score', threshold)}"
        f"<figcaption>{len(means):,} scored sequences, all samples; the call uses this score.</figcaption></figure>"
        f"<figure>{svg_histogram(histogram(maxima), 'Highest chunk virus score per sequence', 'max chunk virus score')}"
        f"<figcaption>{len(maxima):,} scored sequences, all samples.</figcaption></figure></div>"
    )


def _top_section(samples: Sequence[SampleCalls]) -> str:
    scored = [(sample.name, row) for sample in samples for row in sample.rows if row["mean_chunk_score"]]
    scored.sort(key=lambda item: (-float(item[1]["mean_chunk_score"]), -float(item[1]["max_chunk_score"]), item[0], item[1]["sequence_id"]))
    headers = [("num", "#"), ("", "sample"), ("", "sequence"), ("num", "length"), ("num", "chunks scored"),
               ("num", "viral chunks"), ("num", "max score"), ("num", "mean score"), ("", "call")]
    rows = []
    for rank, (name, row) in enumerate(scored[:TOP_SEQUENCES], start=1):
        rows.append([
            ("num", str(rank)), ("", escape(name)), ("mono", escape(row["sequence_id"])), ("num", f"{int(row['length']):,}"),
            ("num", row["chunks_scored"]), ("num", row["viral_chunks"]), ("num", row["max_chunk_score"]),
            ("num", row["mean_chunk_score"]), (escape(row["call"]), escape(row["call"])),
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


def render_html(samples: Sequence[SampleCalls], models: Sequence[dict], stages: Sequence[dict], threshold: float) -> str:
    totals = [sample_counts(sample) for sample in samples]
    sequences = sum(counts["sequences"] for counts in totals)
    virus = sum(counts["virus"] for counts in totals)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>VirNucPro report</title><style>{CSS}</style></head><body><main>"
        "<h1>VirNucPro report</h1>"
        f'<p class="meta">virnucpro {escape(__version__)} · {len(samples)} sample(s) · {sequences:,} input sequences · {virus:,} called virus</p>'
        f'<div class="rule"><strong>Call rule.</strong> {escape(call_rule(threshold))}</div>'
        + _samples_section(samples)
        + _histograms_section(samples, threshold)
        + _top_section(samples)
        + _models_section(models)
        + _stages_section(stages)
        + "</main></body></html>\n"
    )
