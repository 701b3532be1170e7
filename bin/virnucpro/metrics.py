"""Per-task timings and counts (the --metrics JSON of every stage): written by each stage, summed
per stage into a sample's summary.json and the run report. This module imports no torch, so the
CPU stages start fast.

They live beside the deterministic outputs, never inside them, so reruns stay byte-identical.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from .atomic import json_text, write_text
from .errors import InputError
from .values import checked_float, checked_int, load_json, shown

METRIC_KEYS = ("stage", "name", "items", "tokens", "padded_tokens", "seconds", "load_seconds", "device", "precision", "peak_gpu_memory_bytes")
COUNT_KEYS = ("items", "tokens", "padded_tokens", "peak_gpu_memory_bytes")
SECONDS_KEYS = ("seconds", "load_seconds")
MAX_TASK_SECONDS = 1e8  # over three years: no task runs that long
PIPELINE_STAGES = ("prepare_frames", "embed_dnabert", "embed_esm", "classify_frames", "summarize")


def write_metrics(
    path: str | os.PathLike,
    *,
    stage: str,
    name: str,
    items: int,
    tokens: int | None,  # None where no tokens apply (the classifier scores whole frames)
    seconds: float,
    device: str,
    load_seconds: float | None = None,
    precision: str | None = None,
    peak_gpu_memory_bytes: int | None = None,
    **extra: object,
) -> None:
    record = {
        "stage": stage,
        "name": name,
        "items": items,
        "tokens": tokens,
        "seconds": seconds,
        "load_seconds": load_seconds,
        "device": device,
        "precision": precision,
        "peak_gpu_memory_bytes": peak_gpu_memory_bytes,
        **extra,
    }
    write_text(path, json_text(record))


def checked_record(path: str | Path, data: object) -> dict:
    """A metrics record with every key of METRIC_KEYS (None where missing or null), each value
    of its type and range: counts whole and non-negative, seconds finite and non-negative."""
    if not isinstance(data, dict):
        raise InputError(path, "a metrics file must hold a JSON object")
    record = {key: data.get(key) for key in METRIC_KEYS}
    for key in METRIC_KEYS:
        value = record[key]
        if value is None:
            continue
        if key in COUNT_KEYS:
            checked_int(path, f"'{key}'", value)
        elif key in SECONDS_KEYS:
            checked_float(path, f"'{key}'", value, 0.0, MAX_TASK_SECONDS)
        elif not isinstance(value, str):
            raise InputError(path, f"'{key}' {shown(value)} is not a string")
    record["stage"] = record["stage"] or "unknown"
    return record


def read_metrics(paths: Iterable[str | Path]) -> list[dict]:
    """Stage metrics records with every key present (None where missing), in a stable order."""
    records = [checked_record(path, load_json(path)) for path in paths]
    return sorted(records, key=lambda record: json.dumps(record, sort_keys=True))


def _stage_order(stage: str) -> tuple[int, str]:
    return (PIPELINE_STAGES.index(stage) if stage in PIPELINE_STAGES else len(PIPELINE_STAGES), stage)


def _total(records: Sequence[dict], key: str) -> float | None:
    values = [record[key] for record in records if record[key] is not None]
    return sum(values) if values else None


def _rate(amount: float | None, seconds: float | None) -> float | None:
    """amount per second; None without both, or where a (subnormal) time would make it infinite."""
    if amount is None or not seconds:
        return None
    rate = amount / seconds
    return rate if math.isfinite(rate) else None


def aggregate_stages(records: Sequence[dict]) -> list[dict]:
    """Per stage, in pipeline order: task count, summed items/tokens/padded tokens/seconds,
    throughput, devices."""
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
                "padded_tokens": _total(group, "padded_tokens"),
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
