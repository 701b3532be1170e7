"""Per-task timings and counts (the --metrics JSON of every stage), read by the run report.
This module imports no torch, so the CPU stages start fast.

They live beside the deterministic outputs, never inside them, so reruns stay byte-identical.
"""

from __future__ import annotations

import json
import os

from .atomic import write_text


def write_metrics(
    path: str | os.PathLike,
    *,
    stage: str,
    name: str,
    items: int,
    tokens: int,
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
    write_text(path, json.dumps(record, indent=2) + "\n")
