"""make_report.py: the self-contained HTML report and the MultiQC table."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from conftest import run_script
from virnucpro.contracts import CALL_COLUMNS
from virnucpro.report import TOP_SEQUENCES, Histogram

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
    }  # fmt: skip
    return "\t".join(values[column] for column in CALL_COLUMNS)


def write_calls(directory: Path, sample: str, rows: list[str], threshold: float = 0.5) -> Path:
    """A result folder as summarize.py leaves it: sequence_calls.tsv sealed by its summary.json."""
    directory.mkdir(parents=True)
    path = directory / "sequence_calls.tsv"
    path.write_text("\t".join(CALL_COLUMNS) + "\n" + "".join(f"{row}\n" for row in rows))
    files = {"sequence_calls.tsv": hashlib.sha256(path.read_bytes()).hexdigest()}
    (directory / "summary.json").write_text(json.dumps({"sample": sample, "threshold": threshold, "files": files}))
    return path


@pytest.fixture
def run_inputs(tmp_path):
    calls = [
        write_calls(tmp_path / "b", "sample_B", [
            calls_row("sample_B", EVIL_ID, "scored", "0.950000", "0.910000", "virus"),
            calls_row("sample_B", "plain_2", "scored", "0.400000", "0.200000", "non-virus"),
            calls_row("sample_B", "no_frames", "no_open_frame"),
        ]),
        write_calls(tmp_path / "a", "sample_A", [calls_row("sample_A", "a1", "scored", "0.700000", "0.650000", "virus")]),
    ]  # fmt: skip
    (tmp_path / "models.json").write_text(json.dumps(MODELS))
    metrics = []
    for number, (stage, items, tokens, seconds) in enumerate(
        [("embed_esm", 100, 40000, 8.0), ("embed_esm", 50, 20000, 4.0), ("prepare_frames", 4, None, 0.5)], start=1
    ):
        path = tmp_path / f"m{number}.json"
        record = {"stage": stage, "name": f"x{number}", "items": items, "tokens": tokens, "seconds": seconds,
                  "load_seconds": 2.0, "device": "cuda:0" if stage == "embed_esm" else "cpu"}  # fmt: skip
        if stage == "embed_esm":
            record.update(precision="bf16", peak_gpu_memory_bytes=3 * 2**30)
        path.write_text(json.dumps(record))
        metrics.append(path)
    return calls, tmp_path / "models.json", metrics


def make_report(tmp_path: Path, calls, models, metrics, *extra, check=True):
    return run_script("make_report.py", "--calls", *calls, "--models", models, "--metrics", *metrics,
                      "--out", tmp_path / "report.html", "--mqc", tmp_path / "virnucpro_mqc.tsv", *extra, check=check)  # fmt: skip


def assert_fails_cleanly(tmp_path: Path, result, *needles: str) -> None:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "virnucpro_mqc.tsv").exists()


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


def test_top_sequences_rank_all_rows_of_all_samples(tmp_path, run_inputs):
    """Far more scored rows than the table shows, with ties: ranked by mean, max, sample, sequence."""
    _, models, metrics = run_inputs
    expected, calls = [], []
    for sample in ("s2", "s1"):
        rows = []
        for number in range(3 * TOP_SEQUENCES):
            mean, maximum = f"{(number * 7) % 10 / 10:.6f}", f"{(number * 3) % 4 / 4:.6f}"
            rows.append(calls_row(sample, f"seq{number:03d}", "scored", maximum, mean, "virus"))
            expected.append((-float(mean), -float(maximum), sample, f"seq{number:03d}"))
        calls.append(write_calls(tmp_path / sample, sample, rows))
    make_report(tmp_path, calls, models, metrics)
    html = (tmp_path / "report.html").read_text()
    table = html[html.index("Top 50"):html.index("<h2>Models")]
    shown = re.findall(r'<td class="">(s[12])</td><td class="mono">(seq\d+)</td>', table)
    assert shown == [(sample, sequence) for _, _, sample, sequence in sorted(expected)[:TOP_SEQUENCES]]


def test_the_report_states_the_threshold_of_the_summaries(tmp_path, run_inputs):
    _, models, metrics = run_inputs
    calls = [write_calls(tmp_path / "c", "sample_C", [calls_row("sample_C", "c1", "scored", "0.800000", "0.750000", "virus")], threshold=0.7)]
    make_report(tmp_path, calls, models, metrics)
    assert "at least 0.7," in (tmp_path / "report.html").read_text() and "threshold 0.7<" in (tmp_path / "report.html").read_text()
    assert "score >= 0.7)" in (tmp_path / "virnucpro_mqc.tsv").read_text()


def test_samples_called_with_different_thresholds_fail(tmp_path, run_inputs):
    calls, models, metrics = run_inputs
    other = write_calls(tmp_path / "c", "sample_C", [calls_row("sample_C", "c1", "scored", "0.800000", "0.750000", "virus")], threshold=0.7)
    result = make_report(tmp_path, [*calls, other], models, metrics, check=False)
    assert_fails_cleanly(tmp_path, result, str(tmp_path / "b" / "summary.json"), "threshold 0.5", str(tmp_path / "c" / "summary.json"), "has 0.7")


def test_the_threshold_option_is_gone(tmp_path, run_inputs):
    result = make_report(tmp_path, *run_inputs, "--threshold", "0.5", check=False)
    assert result.returncode == 2 and "--threshold" in result.stderr


def test_a_calls_file_without_its_summary_fails(tmp_path, run_inputs):
    calls, models, metrics = run_inputs
    (calls[1].parent / "summary.json").unlink()
    assert_fails_cleanly(tmp_path, make_report(tmp_path, calls, models, metrics, check=False), str(calls[1].parent / "summary.json"), "not found")


@pytest.mark.parametrize("change", ["a row dropped", "a row edited"])
def test_a_calls_file_not_sealed_by_its_summary_fails(tmp_path, run_inputs, change):
    calls, models, metrics = run_inputs
    lines = calls[0].read_text().splitlines(keepends=True)
    if change == "a row dropped":
        lines = lines[:-1]
    else:
        lines[2] = lines[2].replace("0.200000", "0.300000")
    calls[0].write_text("".join(lines))
    result = make_report(tmp_path, calls, models, metrics, check=False)
    assert_fails_cleanly(tmp_path, result, str(calls[0]), "SHA-256 differs", "mixed or incomplete result folder")


@pytest.mark.parametrize(
    "column, value, needle",
    [
        ("mean_chunk_score", "high", "line 2: mean_chunk_score 'high' is not a number"),
        ("max_chunk_score", "1.5", "line 2: max_chunk_score '1.5' is not a score between 0 and 1"),
        ("chunks_scored", "2.0", "line 2: chunks_scored '2.0' is not an integer"),
        ("call", "maybe", "line 2: call 'maybe' where status scored needs one of virus, non-virus"),
        ("status", "done", "line 2: status 'done' is not one of scored, no_open_frame, invalid"),
    ],
)
def test_bad_values_in_a_calls_table_fail(tmp_path, run_inputs, column, value, needle):
    _, models, metrics = run_inputs
    values = dict(zip(CALL_COLUMNS, calls_row("s", "x1", "scored", "0.800000", "0.750000", "virus").split("\t")))
    values[column] = value
    calls = [write_calls(tmp_path / "s", "s", ["\t".join(values.values())])]  # sealed: the value is what is wrong
    assert_fails_cleanly(tmp_path, make_report(tmp_path, calls, models, metrics, check=False), str(calls[0]), needle)


def test_tolerates_sparse_metrics_and_no_scored_sequences(tmp_path):
    calls = [
        write_calls(tmp_path / "e", "invalid_only", [calls_row("invalid_only", "x", "invalid")]),
        write_calls(tmp_path / "results_dir", "no_sequences", []),  # named by its summary.json
    ]
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
    histogram = Histogram(bins=20)
    for value in (0.0, 0.049, 0.05, 0.5, 0.999, 1.0):
        histogram.add(value)
    assert histogram.counts == [2, 1] + [0] * 8 + [1] + [0] * 8 + [2] and histogram.total == 6
