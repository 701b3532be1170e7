"""make_report.py: the self-contained HTML report and the MultiQC table."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from conftest import run_script
from virnucpro.contracts import CALL_COLUMNS
from virnucpro.report import REASONS_PER_STATUS, TOP_SEQUENCES, Histogram

EVIL_ID = 'contig<script>alert("x")</script>&' + "very_long_identifier_" * 8
MODELS = {
    "dnabert": {
        "name": "zhihan1996/DNABERT-S", "path": "/models/dnabert", "sha256": "a" * 64,
        "files": {"config.json": "d" * 64, "tokenizer.json": "e" * 64, "pytorch_model.bin": "a" * 64},
    },
    "esm": {"name": "esm2_t36_3B_UR50D", "path": "/models/esm2.pt", "sha256": "b" * 64},
    "classifier": {"name": "500_model.pth", "path": "/models/500_model.pth", "sha256": "c" * 64},
}


def calls_row(
    sample: str, sequence_id: str, status: str, max_score: str = "", mean_score: str = "", call: str = "", *,
    reason: str = "no open frame", short: bool = False,
) -> str:
    scored = status == "scored"
    values = {
        "sample": sample, "sequence_id": sequence_id, "input_id": sequence_id, "length": "120" if short else "1200",
        "chunks": "1" if short else "3", "chunks_scored": "2" if scored else "0", "frames_scored": "5" if scored else "0",
        "viral_chunks": "1" if scored else "0", "viral_chunk_fraction": "0.500000" if scored else "", "max_chunk_score": max_score,
        "mean_chunk_score": mean_score, "call": call, "status": status, "reason": "" if scored else reason,
        "shorter_than_chunk": "true" if short else "false",
    }  # fmt: skip
    return "\t".join(values[column] for column in CALL_COLUMNS)


def write_calls(directory: Path, sample: str, rows: list[str], threshold: float = 0.5, chunk_size: int = 500) -> Path:
    """A result folder as summarize.py leaves it: sequence_calls.tsv sealed by its summary.json."""
    directory.mkdir(parents=True)
    path = directory / "sequence_calls.tsv"
    path.write_text("\t".join(CALL_COLUMNS) + "\n" + "".join(f"{row}\n" for row in rows))
    files = {"sequence_calls.tsv": hashlib.sha256(path.read_bytes()).hexdigest()}
    summary = {"sample": sample, "threshold": threshold, "chunk_size": chunk_size, "files": files}
    (directory / "summary.json").write_text(json.dumps(summary))
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
            record.update(precision="bf16", peak_gpu_memory_bytes=3 * 2**30, padded_tokens=tokens + tokens // 20)
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
    # every file the embedder read, with its checksum (an older models.json: the weights' alone)
    assert all(f"{name}: {digest}" in html for name, digest in MODELS["dnabert"]["files"].items())
    # embed_esm: 2 tasks, 150 items and 60,000 tokens (63,000 with padding) in 12 s -> 12.5 items/s, 5,000 tokens/s
    esm_row = re.search(r"<tr><td[^>]*>embed_esm</td>.*?</tr>", html).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", esm_row)
    assert cells[1:10] == ["2", "150", "60,000", "5.0%", "12.0", "4.0", "12.5", "5,000", "cuda:0"]
    prepare_row = re.search(r"<tr><td[^>]*>prepare_frames</td>.*?</tr>", html).group(0)
    assert re.findall(r"<td[^>]*>(.*?)</td>", prepare_row)[4] == "–"  # no batches, no padding
    assert "3.00 GiB" in esm_row
    assert html.index(">prepare_frames<") < html.index(">embed_esm<")  # pipeline order
    assert html.count("<svg") >= 3
    # top sequences by mean chunk score
    top = html[html.index("Top 50"):]
    assert top.index("&lt;script&gt;") < top.index(">a1<") < top.index(">plain_2<")


def mqc_parts(path: Path) -> tuple[dict, list[list[str]]]:
    """The header as MultiQC's custom content reads it (the '#' lines as one YAML document) and the table."""
    lines = path.read_text().splitlines()
    config = yaml.safe_load("\n".join(line[1:] for line in lines if line.startswith("#")))
    return config, [line.split("\t") for line in lines if not line.startswith("#")]


MQC_HEADER = [
    "Sample", "sequences", "scored", "virus", "non_virus", "virus_pct_of_scored", "virus_pct_of_all", "scored_shorter_than_chunk",
    "no_open_frame", "too_short", "invalid",
]  # fmt: skip


def test_mqc_table(tmp_path, run_inputs):
    make_report(tmp_path, *run_inputs)
    config, (header, *rows) = mqc_parts(tmp_path / "virnucpro_mqc.tsv")
    assert (config["id"], config["plot_type"], config["format"], config["section_name"]) == ("virnucpro", "table", "tsv", "VirNucPro")
    assert header == MQC_HEADER
    # every column described, counts as integers, percentages bounded and marked as such
    assert list(config["headers"]) == header[1:]
    for column, spec in config["headers"].items():
        assert spec["title"] and spec["description"] and spec["format"], column
    assert config["headers"]["virus_pct_of_scored"]["suffix"] == "%" and config["headers"]["virus_pct_of_scored"]["max"] == 100
    assert "of the scored" in config["headers"]["virus_pct_of_scored"]["description"]
    assert rows == [
        ["sample_A", "1", "1", "1", "0", "100.00", "100.00", "0", "0", "0", "0"],
        ["sample_B", "3", "2", "1", "1", "50.00", "33.33", "0", "1", "0", "0"],
    ]


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
    assert "score >= 0.7;" in (tmp_path / "virnucpro_mqc.tsv").read_text()


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
        ("length", "-1200", "line 2: length '-1200' is not an integer"),
        ("length", "1_200", "line 2: length '1_200' is not an integer"),
        ("length", " 1200", "line 2: length ' 1200' is not an integer"),
        ("length", "\u0661\u0662", "line 2: length '\u0661\u0662' is not an integer"),  # Arabic-Indic digits, which int() reads
        ("length", "9" * 17, "line 2: length 99999999999999999 is above 9007199254740992"),
        ("length", "9" * 5000, "line 2: length 99999999999999999999... (5000 digits) is above 9007199254740992"),
        ("mean_chunk_score", "nan", "line 2: mean_chunk_score 'nan' is not a score between 0 and 1"),
        ("mean_chunk_score", "inf", "line 2: mean_chunk_score 'inf' is not a score between 0 and 1"),
        ("viral_chunk_fraction", "-0.5", "line 2: viral_chunk_fraction '-0.5' is not a score between 0 and 1"),
        ("call", "maybe", "line 2: call 'maybe' where status scored needs one of virus, non-virus"),
        ("status", "done", "line 2: status 'done' is not one of scored, no_open_frame, too_short, invalid"),
        ("shorter_than_chunk", "yes", "line 2: shorter_than_chunk 'yes' is not one of true, false"),
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
    _, (_, *rows) = mqc_parts(tmp_path / "virnucpro_mqc.tsv")
    assert rows == [["invalid_only", "1", "0", "0", "0", "", "0.00", "0", "0", "0", "1"], ["no_sequences", *"0000", "", "", *"0000"]]


BAD_METRIC_VALUES = [
    # (key, the value's JSON text, what the one-line error says)
    ("items", "-1", "'items' -1 is below 0"),
    ("items", "2.5", "'items' 2.5 is not an integer"),
    ("items", "true", "'items' True is not an integer"),
    ("items", '"12"', "'items' '12' is not an integer"),
    ("items", "1e400", "'items' inf is not an integer"),  # JSON's 1e400 reads as Infinity
    ("tokens", "1" + "0" * 30, "'tokens' 1000000000000000000000000000000 is above 9007199254740992"),
    ("tokens", "9" * 5000, "not valid JSON"),  # beyond the digits Python reads as an integer
    ("peak_gpu_memory_bytes", "-4096", "'peak_gpu_memory_bytes' -4096 is below 0"),
    ("seconds", "NaN", "'seconds' nan is not a finite number"),
    ("seconds", "Infinity", "'seconds' inf is above 1e+08"),
    ("seconds", "-Infinity", "'seconds' -inf is below 0"),
    ("seconds", "-0.5", "'seconds' -0.5 is below 0"),
    ("seconds", "1e300", "'seconds' 1e+300 is above 1e+08"),
    ("load_seconds", "[]", "'load_seconds' [] is not a number"),
    ("load_seconds", "false", "'load_seconds' False is not a number"),
    ("stage", "5", "'stage' 5 is not a string"),
    ("device", "{}", "'device' {} is not a string"),
]


@pytest.mark.parametrize("key, value, needle", BAD_METRIC_VALUES, ids=[f"{key}={value[:12]}" for key, value, _ in BAD_METRIC_VALUES])
def test_out_of_range_metrics_are_one_line_errors(tmp_path, run_inputs, key, value, needle):
    calls, models, metrics = run_inputs
    record = json.loads(metrics[0].read_text())
    record[key] = "PLACEHOLDER"
    metrics[0].write_text(json.dumps(record).replace('"PLACEHOLDER"', value))
    assert_fails_cleanly(tmp_path, make_report(tmp_path, calls, models, metrics, check=False), str(metrics[0]), needle)


def test_metrics_at_the_edges_of_their_range_make_a_valid_report(tmp_path, run_inputs):
    """The largest counts and a subnormal time: no Infinity in the rates, nothing refused."""
    calls, models, metrics = run_inputs
    for path in metrics:
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "items": 2**53, "tokens": 2**53, "padded_tokens": 2**53, "seconds": 5e-324, "load_seconds": 0}))
    make_report(tmp_path, calls, models, metrics)
    esm_row = re.search(r"<tr><td[^>]*>embed_esm</td>.*?</tr>", (tmp_path / "report.html").read_text()).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", esm_row)
    assert cells[1:9] == ["2", f"{2 * 2**53:,}", f"{2 * 2**53:,}", "0.0%", "0.0", "0.0", "–", "–"]  # no rate of infinity


@pytest.mark.parametrize(
    "summary, needle",
    [
        ({"threshold": float("nan")}, "threshold nan is not a finite number"),
        ({"threshold": 1.5}, "threshold 1.5 is above 1"),
        ({"threshold": -0.1}, "threshold -0.1 is below 0"),
        ({"threshold": True}, "threshold True is not a number"),
        ({"threshold": "0.5"}, "threshold '0.5' is not a number"),
        ({"threshold": None}, "threshold None is not a number"),
        ({"sample": 7}, "sample 7 is not a name"),
        ({"chunk_size": "500"}, "chunk_size '500' is not an integer"),
        ({"chunk_size": 0}, "chunk_size 0 is below 1"),
        ({"chunk_size": float("inf")}, "chunk_size inf is not an integer"),
        ({"chunk_size": 10**30}, "chunk_size 1000000000000000000000000000000 is above 9007199254740992"),
    ],
    ids=["nan", "above-1", "negative", "bool", "string", "missing", "sample-number", "chunk-text", "chunk-zero", "chunk-inf", "chunk-huge"],
)
def test_bad_values_in_a_summary_fail(tmp_path, run_inputs, summary, needle):
    _, models, metrics = run_inputs
    calls = write_calls(tmp_path / "s", "s", [])
    path = calls.parent / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **summary}))  # allow_nan: the file a broken writer left
    assert_fails_cleanly(tmp_path, make_report(tmp_path, [calls], models, metrics, check=False), str(path), needle)


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


# ---------------------------------------------------------------- provenance and the sequences without a call

RUN_INFO = {
    "pipeline": "virnucpro-nf/virnucpro-nf", "pipeline_version": "0.1.0", "nextflow_version": "25.04.4", "run_name": "tiny_turing",
    "profile": "test,docker", "command_line": "nextflow run . -profile test,docker --outdir '<results>'",
    "params": {"chunk_size": 500, "threshold": 0.5, "skip_invalid": False, "classifier": None, "input": "samples.csv"},
}  # fmt: skip


def cells(html: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    row = re.search(rf"<tr><td[^>]*>{re.escape(first)}</td>.*?</tr>", html).group(0)
    return re.findall(r"<td[^>]*>(.*?)</td>", row)


def test_the_run_section_states_what_nextflow_knows(tmp_path, run_inputs):
    started = datetime.now(timezone.utc) - timedelta(hours=2, minutes=5)
    (tmp_path / "run.json").write_text(json.dumps({**RUN_INFO, "started": started.isoformat()}))
    make_report(tmp_path, *run_inputs, "--run-info", tmp_path / "run.json")
    html = (tmp_path / "report.html").read_text()
    run = html[html.index("<h2>Run</h2>"):html.index("<h2>Samples</h2>")]
    assert cells(run, "started")[1] == started.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert cells(run, "wall time up to this report")[1].startswith("2 h 05 min")
    assert cells(run, "pipeline")[1] == "virnucpro-nf/virnucpro-nf 0.1.0" and cells(run, "Nextflow")[1] == "25.04.4"
    assert cells(run, "command line")[1] == "nextflow run . -profile test,docker --outdir &#x27;&lt;results&gt;&#x27;"
    assert [cells(run, name)[1] for name in ("chunk_size", "classifier", "skip_invalid")] == ["500", "(not set)", "false"]
    # without the run information (the scripts run by hand) the page has no run section and stays reproducible
    make_report(tmp_path, *run_inputs)
    assert "<h2>Run</h2>" not in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("info, needle", [
    ({**RUN_INFO, "started": "yesterday"}, "started 'yesterday' is not an ISO 8601 date and time"),
    ({**RUN_INFO, "started": "2026-01-01T10:00:00"}, "has no time zone"),
    ({**RUN_INFO, "started": "2026-01-01T10:00:00Z", "params": {"a": [1]}}, "params must be a JSON object of plain values"),
])  # fmt: skip
def test_bad_run_information_fails_cleanly(tmp_path, run_inputs, info, needle):
    (tmp_path / "run.json").write_text(json.dumps(info))
    assert_fails_cleanly(tmp_path, make_report(tmp_path, *run_inputs, "--run-info", tmp_path / "run.json", check=False), "run.json", needle)


def test_test_models_are_announced(tmp_path, run_inputs):
    calls, _, metrics = run_inputs
    make_report(tmp_path, *run_inputs)
    assert "these calls mean nothing" not in (tmp_path / "report.html").read_text()
    tiny = {role: {**entry, "test_only": True} for role, entry in MODELS.items()}
    (tmp_path / "tiny.json").write_text(json.dumps(tiny))
    make_report(tmp_path, calls, tmp_path / "tiny.json", metrics)
    html = (tmp_path / "report.html").read_text()
    assert html.index("Test models: these calls mean nothing") < html.index("<h2>Samples</h2>")


def test_sequences_without_a_call_are_counted_by_reason(tmp_path, run_inputs):
    _, models, metrics = run_inputs
    rows = [calls_row("s", f"n{number}", "no_open_frame", reason="every frame of every chunk has a stop codon") for number in range(3)]
    rows += [calls_row("s", "t1", "too_short", reason="shorter than the minimum length, 300 bp", short=True)]
    rows += [calls_row("s", f"i{number}", "invalid", reason=f"characters that are not IUPAC nucleotide codes: '{chr(74 + number)}'")
             for number in range(REASONS_PER_STATUS + 2)]  # fmt: skip
    rows += [calls_row("s", "v1", "scored", "0.9", "0.8", "virus", short=True), calls_row("s", "v2", "scored", "0.9", "0.8", "virus")]
    make_report(tmp_path, [write_calls(tmp_path / "s", "s", rows)], models, metrics)
    html = (tmp_path / "report.html").read_text()
    section = html[html.index("<h2>Sequences without a call</h2>"):html.index("<h2>Score distributions")]
    table = re.findall(r"<tr><td[^>]*>s</td><td[^>]*>(\w+)</td><td[^>]*>(.*?)</td><td[^>]*>([\d,]+)</td></tr>", section)
    assert table[0] == ("no_open_frame", "every frame of every chunk has a stop codon", "3")
    assert table[1] == ("too_short", "shorter than the minimum length, 300 bp", "1")
    invalid = [(reason, count) for status, reason, count in table if status == "invalid"]
    assert len(invalid) == REASONS_PER_STATUS + 1 and invalid[-1] == ("(other reasons)", "2")
    assert "expected, not an error" in section  # what no_open_frame means
    # the one scored sequence shorter than the chunk: counted and explained
    sample_row = cells(html[html.index("<h2>Samples</h2>"):], "s")
    assert sample_row[1:8] == [f"{len(rows)}", "2", "2", "0", "100.00%", "1", f"{len(rows) - 2}"]
    assert "1 scored sequence(s) are shorter than the chunk length, 500 bp" in html
    _, (_, row) = mqc_parts(tmp_path / "virnucpro_mqc.tsv")
    assert row[MQC_HEADER.index("scored_shorter_than_chunk")] == "1" and row[MQC_HEADER.index("too_short")] == "1"


def test_citations_and_no_token_rate_where_no_tokens_apply(tmp_path, run_inputs):
    calls, models, metrics = run_inputs
    (tmp_path / "classify.json").write_text(json.dumps({"stage": "classify_frames", "name": "x", "items": 1000, "tokens": None,
                                                        "seconds": 2.0, "device": "cpu"}))  # fmt: skip
    make_report(tmp_path, calls, models, [*metrics, tmp_path / "classify.json"])
    html = (tmp_path / "report.html").read_text()
    assert [cells(html, "classify_frames")[index] for index in (3, 4, 8)] == ["–"] * 3  # tokens, padding, tokens/s
    assert cells(html, "classify_frames")[7] == "500.0"  # items/s
    for doi in ("10.1093/bib/bbaf224", "10.1093/bioinformatics/btaf188", "10.1126/science.ade2574", "10.1038/nbt.3820"):
        assert f"doi:{doi}" in html


def test_samples_cut_into_chunks_of_different_sizes_fail(tmp_path, run_inputs):
    calls, models, metrics = run_inputs
    other = write_calls(tmp_path / "c", "sample_C", [calls_row("sample_C", "c1", "scored", "0.8", "0.75", "virus")], chunk_size=300)
    result = make_report(tmp_path, [*calls, other], models, metrics, check=False)
    assert_fails_cleanly(tmp_path, result, "has chunk_size 500 but", "has 300", "one chunk_size")
