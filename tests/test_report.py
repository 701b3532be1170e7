"""make_report.py: the self-contained HTML report and the MultiQC table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_script
from virnucpro.report import histogram
from virnucpro.summary import CALL_COLUMNS

EVIL_ID = 'contig<script>alert("x")</script>&' + "very_long_identifier_" * 8
MODELS = {
    "dnabert": {"name": "zhihan1996/DNABERT-S", "path": "/models/dnabert", "sha256": "a" * 64},
    "esm": {"name": "esm2_t36_3B_UR50D", "path": "/models/esm2.pt", "sha256": "b" * 64},
    "classifier": {"name": "500_model.pth", "path": "/models/500_model.pth", "sha256": "c" * 64},
}


def calls_row(sample: str, sequence_id: str, status: str, max_score: str = "", mean_score: str = "", call: str = "") -> str:
    scored = status == "scored"
    values = {
        "sample": sample, "sequence_id": sequence_id, "input_id": sequence_id, "length": "1200", "chunks": "3",
        "chunks_scored": "2" if scored else "0", "frames_scored": "5" if scored else "0", "viral_chunks": "1" if scored else "0",
        "viral_chunk_fraction": "0.500000" if scored else "", "max_chunk_score": max_score, "mean_chunk_score": mean_score,
        "call": call, "status": status, "reason": "" if scored else "no open frame",
    }
    return "\t".join(values[column] for column in CALL_COLUMNS)


def write_calls(directory: Path, sample: str, rows: list[str], threshold: float | None = None) -> Path:
    directory.mkdir(parents=True)
    path = directory / "sequence_calls.tsv"
    path.write_text("\t".join(CALL_COLUMNS) + "\n" + "".join(f"{row}\n" for row in rows))
    if threshold is not None:
        (directory / "summary.json").write_text(json.dumps({"sample": sample, "threshold": threshold}))
    return path


@pytest.fixture
def run_inputs(tmp_path):
    calls = [
        write_calls(tmp_path / "b", "sample_B", [
            calls_row("sample_B", EVIL_ID, "scored", "0.950000", "0.910000", "virus"),
            calls_row("sample_B", "plain_2", "scored", "0.400000", "0.200000", "non-virus"),
            calls_row("sample_B", "no_frames", "no_open_frame"),
        ], threshold=0.5),
        write_calls(tmp_path / "a", "sample_A", [calls_row("sample_A", "a1", "scored", "0.700000", "0.650000", "virus")]),
    ]
    (tmp_path / "models.json").write_text(json.dumps(MODELS))
    metrics = []
    for number, (stage, items, tokens, seconds) in enumerate(
        [("embed_esm", 100, 40000, 8.0), ("embed_esm", 50, 20000, 4.0), ("prepare_frames", 4, None, 0.5)], start=1
    ):
        path = tmp_path / f"m{number}.json"
        record = {"stage": stage, "name": f"x{number}", "items": items, "tokens": tokens, "seconds": seconds,
                  "load_seconds": 2.0, "device": "cuda:0" if stage == "embed_esm" else "cpu"}
        if stage == "embed_esm":
            record.update(precision="bf16", peak_gpu_memory_bytes=3 * 2**30)
        path.write_text(json.dumps(record))
        metrics.append(path)
    return calls, tmp_path / "models.json", metrics


def make_report(tmp_path: Path, calls, models, metrics, *extra, check=True):
    return run_script("make_report.py", "--calls", *calls, "--models", models, "--metrics", *metrics,
                      "--out", tmp_path / "report.html", "--mqc", tmp_path / "virnucpro_mqc.tsv", *extra, check=check)


def test_report_content(tmp_path, run_inputs):
    make_report(tmp_path, *run_inputs)
    html = (tmp_path / "report.html").read_text()
    assert "<script" not in html and "&lt;script&gt;" in html  # IDs are escaped, the page runs nothing
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # self-contained
    assert "at least 0.5" in html
    for model in MODELS.values():
        assert model["sha256"] in html and model["name"] in html and model["path"] in html
    # embed_esm: 2 tasks, 150 items and 60,000 tokens in 12 s -> 12.5 items/s, 5,000 tokens/s
    esm_row = re.search(r"<tr><td[^>]*>embed_esm</td>.*?</tr>", html).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", esm_row)
    assert cells[1:9] == ["2", "150", "60,000", "12.0", "4.0", "12.5", "5,000", "cuda:0"]
    assert "3.00 GiB" in esm_row
    assert html.index(">prepare_frames<") < html.index(">embed_esm<")  # pipeline order
    assert html.count("<svg") >= 3
    # top sequences by mean chunk score
    top = html[html.index("Top 50"):]
    assert top.index("&lt;script&gt;") < top.index(">a1<") < top.index(">plain_2<")


def test_mqc_table(tmp_path, run_inputs):
    make_report(tmp_path, *run_inputs)
    lines = (tmp_path / "virnucpro_mqc.tsv").read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert "# id: 'virnucpro'" in comments and "# plot_type: 'table'" in comments
    assert any(line.startswith("# section_name:") for line in comments)
    header, *rows = [line.split("\t") for line in lines if not line.startswith("#")]
    assert header == ["Sample", "sequences", "scored", "no_open_frame", "invalid", "virus", "non_virus", "virus_percent"]
    assert rows == [["sample_A", "1", "1", "0", "0", "1", "0", "100.00"], ["sample_B", "3", "2", "1", "0", "1", "1", "50.00"]]


def test_rerun_is_byte_identical_whatever_the_input_order(tmp_path, run_inputs):
    calls, models, metrics = run_inputs
    make_report(tmp_path, calls, models, metrics)
    first = (tmp_path / "report.html").read_bytes(), (tmp_path / "virnucpro_mqc.tsv").read_bytes()
    make_report(tmp_path, list(reversed(calls)), models, list(reversed(metrics)))
    assert ((tmp_path / "report.html").read_bytes(), (tmp_path / "virnucpro_mqc.tsv").read_bytes()) == first


def test_threshold_must_match_the_calls(tmp_path, run_inputs):
    result = make_report(tmp_path, *run_inputs, "--threshold", "0.7", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sample_B" in result.stderr and "0.7" in result.stderr
    assert not (tmp_path / "report.html").exists()


def test_tolerates_sparse_metrics_and_no_scored_sequences(tmp_path):
    calls = [
        write_calls(tmp_path / "e", "invalid_only", [calls_row("invalid_only", "x", "invalid")]),
        write_calls(tmp_path / "results_dir", "no_sequences", [], threshold=0.5),  # named by its summary.json
    ]
    (tmp_path / "results_dir" / "summary.json").write_text(json.dumps({"sample": "no_sequences", "threshold": 0.5}))
    (tmp_path / "models.json").write_text(json.dumps({"classifier": {"name": "c"}}))
    (tmp_path / "m.json").write_text(json.dumps({"stage": "summarize", "seconds": None}))
    make_report(tmp_path, calls, tmp_path / "models.json", [tmp_path / "m.json"])
    html = (tmp_path / "report.html").read_text()
    assert ">summarize<" in html and ">classifier<" in html
    rows = [line for line in (tmp_path / "virnucpro_mqc.tsv").read_text().splitlines() if not line.startswith(("#", "Sample"))]
    assert rows == ["invalid_only\t1\t0\t0\t1\t0\t0\t", "no_sequences\t0\t0\t0\t0\t0\t0\t"]


def test_bad_metrics_file_is_a_clear_error(tmp_path, run_inputs):
    calls, models, _ = run_inputs
    (tmp_path / "bad.json").write_text("{not json")
    result = make_report(tmp_path, calls, models, [tmp_path / "bad.json"], check=False)
    assert result.returncode == 1 and "bad.json" in result.stderr and "Traceback" not in result.stderr


def test_histogram_bins():
    assert histogram([0.0, 0.049, 0.05, 0.5, 0.999, 1.0], bins=20) == [2, 1] + [0] * 8 + [1] + [0] * 8 + [2]
