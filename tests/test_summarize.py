"""summarize.py: the original's result files, the completeness checks and the per-sequence calls."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_script
from virnucpro.fasta import read_fasta

SEQUENCES_HEADER = "record\tsequence_id\tinput_id\tlength\tchunks\tframes\tstatus\treason\n"
SHARDS_HEADER = "shard\tframes\ttokens\tfirst_id\tlast_id\n"
PREDICTIONS_HEADER = "Sequence_ID\tPrediction\tscore1\tscore2\n"
OUTPUTS = ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_calls.tsv", "viral_sequences.fasta", "summary.json")


def sequence_of(frame_or_chunk_id: str) -> str:
    return frame_or_chunk_id.rpartition("_chunk_")[0]


def write_shards(directory: Path, prefix: str, shards: list[list[str]]) -> list[Path]:
    """Per-shard predictions files from prediction rows, and the matching P.shards.tsv."""
    paths, table = [], [SHARDS_HEADER]
    for number, rows in enumerate(shards, start=1):
        name = f"{prefix}.{number:04d}"
        ids = [row.split("\t")[0] for row in rows]
        table.append(f"{name}\t{len(rows)}\t{10 * len(rows)}\t{ids[0]}\t{ids[-1]}\n")
        path = directory / f"{name}.predictions.tsv"
        path.write_text(PREDICTIONS_HEADER + "".join(f"{row}\n" for row in rows))
        paths.append(path)
    (directory / f"{prefix}.shards.tsv").write_text("".join(table))
    return paths


def read_table(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]


def summarize(directory: Path, prefix: str, predictions: list[Path], fasta: Path, *extra, check=True):
    return run_script(
        "summarize.py", "--sample", "S1", "--predictions", *predictions,
        "--shards", directory / f"{prefix}.shards.tsv", "--sequences", directory / f"{prefix}.sequences.tsv",
        "--fasta", fasta, "--outdir", directory / "out", *extra, check=check,
    )


# ---------------------------------------------------------------- the reference corpus


@pytest.fixture(params=[300, 500])
def reference_run(request, reference, tmp_path):
    """prepare_frames-style inputs derived from the reference corpus, predictions split into 3 shards."""
    chunk_size = request.param
    prediction_rows = (reference / "expected" / f"prediction_results_{chunk_size}.txt").read_text().splitlines()[1:]
    chunks = Counter(sequence_of(record.id) for record in read_fasta(reference / f"chunked{chunk_size}.fa"))
    frames = Counter(sequence_of(row.split("\t")[0][:-2]) for row in prediction_rows)
    table = [SEQUENCES_HEADER]
    for number, record in enumerate(read_fasta(reference / "input.fa"), start=1):
        status = "pending" if frames[record.id] else "no_open_frame"
        table.append(f"{number}\t{record.id}\t{record.id}\t{len(record.sequence)}\t{chunks[record.id]}\t{frames[record.id]}\t{status}\t\n")
    (tmp_path / "P.sequences.tsv").write_text("".join(table))
    third = len(prediction_rows) // 3
    shards = [prediction_rows[:third], prediction_rows[third : 2 * third], prediction_rows[2 * third :]]
    return chunk_size, write_shards(tmp_path, "P", shards), tmp_path


def test_reproduces_the_original_result_files(reference, reference_run):
    chunk_size, predictions, directory = reference_run
    summarize(directory, "P", list(reversed(predictions)), reference / "input.fa")  # any file order
    out = directory / "out"
    expected = reference / "expected"
    assert (out / "prediction_results.txt").read_bytes() == (expected / f"prediction_results_{chunk_size}.txt").read_bytes()
    assert (out / "prediction_results_highestscore.csv").read_bytes() == (
        expected / f"prediction_results_highestscore_{chunk_size}.csv"
    ).read_bytes()

    # per-sequence viral chunk counts agree with the original's per-chunk verdicts
    verdicts = read_table(expected / f"prediction_results_highestscore_{chunk_size}.csv")
    viral = Counter(sequence_of(row["Modified_ID"]) for row in verdicts if row["Is_Virus"] == "True")
    scored = Counter(sequence_of(row["Modified_ID"]) for row in verdicts)
    calls = read_table(out / "sequence_calls.tsv")
    inputs = list(read_fasta(reference / "input.fa"))
    assert [row["sequence_id"] for row in calls] == [record.id for record in inputs]
    for row in calls:
        assert int(row["viral_chunks"]) == viral[row["sequence_id"]]
        assert int(row["chunks_scored"]) == scored[row["sequence_id"]]
        assert row["status"] == ("scored" if scored[row["sequence_id"]] else "no_open_frame")
        if row["status"] == "scored":
            assert row["call"] == ("virus" if float(row["mean_chunk_score"]) >= 0.5 else "non-virus")
        else:
            assert row["call"] == "" and row["mean_chunk_score"] == ""

    # the viral FASTA holds exactly the virus-called input records, headers as in the input
    called = {row["sequence_id"] for row in calls if row["call"] == "virus"}
    viral_records = list(read_fasta(out / "viral_sequences.fasta"))
    assert [(r.id, r.description, r.sequence) for r in viral_records] == [
        (r.id, r.description, r.sequence) for r in inputs if r.id in called
    ]
    input_headers = {line for line in (reference / "input.fa").read_text().splitlines() if line.startswith(">")}
    assert {line for line in (out / "viral_sequences.fasta").read_text().splitlines() if line.startswith(">")} <= input_headers

    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences"] == len(inputs)
    assert summary["calls"]["virus"] == len(called)
    assert summary["frames_scored"] == sum(int(row["frames_scored"]) for row in calls)


def test_the_issue_command_line_defaults_sample_and_shards_from_the_sequences_table(reference, reference_run):
    """summarize.py --predictions ... --sequences P.sequences.tsv --outdir D, as the core-stages issue spells it."""
    chunk_size, predictions, directory = reference_run
    result = run_script("summarize.py", "--predictions", *predictions, "--sequences", directory / "P.sequences.tsv", "--outdir", directory / "out")
    out = directory / "out"
    expected = reference / "expected"
    assert (out / "prediction_results_highestscore.csv").read_bytes() == (
        expected / f"prediction_results_highestscore_{chunk_size}.csv"
    ).read_bytes()
    assert {row["sample"] for row in read_table(out / "sequence_calls.tsv")} == {"P"}
    assert not (out / "viral_sequences.fasta").exists() and "viral_sequences.fasta is not written" in result.stderr
    (directory / "P.shards.tsv").unlink()  # the default shard table is required: completeness is always checked
    missing = run_script("summarize.py", "--predictions", *predictions, "--sequences", directory / "P.sequences.tsv", "--outdir", directory / "again", check=False)
    assert missing.returncode == 1 and "P.shards.tsv" in missing.stderr


def test_rerun_is_byte_identical(reference, reference_run):
    _, predictions, directory = reference_run
    summarize(directory, "P", predictions, reference / "input.fa")
    first = {name: (directory / "out" / name).read_bytes() for name in OUTPUTS}
    summarize(directory, "P", list(reversed(predictions)), reference / "input.fa")
    assert {name: (directory / "out" / name).read_bytes() for name in OUTPUTS} == first


def test_a_missing_shard_fails_and_writes_nothing(reference, reference_run):
    _, predictions, directory = reference_run
    result = summarize(directory, "P", [predictions[0], predictions[2]], reference / "input.fa", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "P.0002" in result.stderr
    assert not (directory / "out").exists()


def test_a_truncated_shard_fails(reference, reference_run):
    _, predictions, directory = reference_run
    lines = predictions[1].read_text().splitlines(keepends=True)
    predictions[1].write_text("".join(lines[:-1]))
    result = summarize(directory, "P", predictions, reference / "input.fa", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "P.0002" in result.stderr
    assert not (directory / "out").exists()


def test_the_same_shard_twice_fails(reference, reference_run):
    _, predictions, directory = reference_run
    result = summarize(directory, "P", [*predictions, predictions[0]], reference / "input.fa", check=False)
    assert result.returncode == 1 and "P.0001" in result.stderr


# ---------------------------------------------------------------- a case worked out by hand

HAND_FASTA = (
    ">A first one\nACGTACGTAC\nGTACGT\n"
    ">B  two\tspaces\nacgtNNacgt\n"
    ">B duplicate\nGGGGCCCC\n"
    ">C\nAAAA\n"
    ">D\n"
)
HAND_SEQUENCES = (
    SEQUENCES_HEADER
    + "1\tA\tA\t16\t2\t3\tpending\t\n"
    + "2\tB\tB\t10\t1\t1\tpending\t\n"
    + "3\tB_2\tB\t8\t1\t1\tpending\t\n"
    + "4\tC\tC\t4\t1\t0\tno_open_frame\tno frame without a stop codon\n"
    + "5\tD\tD\t0\t0\t0\tinvalid\tempty sequence\n"
)
HAND_SHARDS = [
    [
        "A_chunk_1F1\tvirus\t0.3\t0.7",
        "A_chunk_1R2\tothers\t0.6\t0.4",
        "A_chunk_2F1\tothers\t0.8\t0.2",
    ],
    ["B_chunk_1F3\tvirus\t0.1\t0.9", "B_2_chunk_1R1\tvirus\t0.45\t0.55"],
]


@pytest.fixture
def hand_case(tmp_path):
    (tmp_path / "in.fa").write_text(HAND_FASTA)
    (tmp_path / "H.sequences.tsv").write_text(HAND_SEQUENCES)
    return write_shards(tmp_path, "H", HAND_SHARDS), tmp_path


def test_sequence_calls_computed_by_hand(hand_case):
    predictions, directory = hand_case
    summarize(directory, "H", predictions, directory / "in.fa")
    calls = (directory / "out" / "sequence_calls.tsv").read_text().splitlines()
    assert calls == [
        "sample\tsequence_id\tinput_id\tlength\tchunks\tchunks_scored\tframes_scored\tviral_chunks\t"
        "viral_chunk_fraction\tmax_chunk_score\tmean_chunk_score\tcall\tstatus\treason",
        # chunk 1: max score2 0.7 >= max score1 0.6 -> viral, score 0.7; chunk 2: 0.2 < 0.8, score 0.2; mean 0.45
        "S1\tA\tA\t16\t2\t2\t3\t1\t0.500000\t0.700000\t0.450000\tnon-virus\tscored\t",
        "S1\tB\tB\t10\t1\t1\t1\t1\t1.000000\t0.900000\t0.900000\tvirus\tscored\t",
        "S1\tB_2\tB\t8\t1\t1\t1\t1\t1.000000\t0.550000\t0.550000\tvirus\tscored\t",
        "S1\tC\tC\t4\t1\t0\t0\t0\t\t\t\t\tno_open_frame\tno frame without a stop codon",
        "S1\tD\tD\t0\t0\t0\t0\t0\t\t\t\t\tinvalid\tempty sequence",
    ]
    assert (directory / "out" / "prediction_results_highestscore.csv").read_text() == (
        "Modified_ID\tIs_Virus\nA_chunk_1\tTrue\nA_chunk_2\tFalse\nB_2_chunk_1\tTrue\nB_chunk_1\tTrue\n"
    )
    # both records named B are called virus: each is written once, header and letters unchanged
    assert (directory / "out" / "viral_sequences.fasta").read_text() == ">B  two\tspaces\nacgtNNacgt\n>B duplicate\nGGGGCCCC\n"
    summary = json.loads((directory / "out" / "summary.json").read_text())
    assert summary["status"] == {"scored": 3, "no_open_frame": 1, "invalid": 1}
    assert summary["calls"] == {"virus": 2, "non-virus": 1}
    assert (summary["chunks"], summary["chunks_scored"], summary["viral_chunks"], summary["frames_scored"]) == (5, 4, 3, 5)
    assert summary["threshold"] == 0.5 and "at least 0.5" in summary["call_rule"]


def test_threshold_changes_the_call(hand_case):
    predictions, directory = hand_case
    summarize(directory, "H", predictions, directory / "in.fa", "--threshold", "0.4")
    calls = {row["sequence_id"]: row["call"] for row in read_table(directory / "out" / "sequence_calls.tsv")}
    assert calls == {"A": "virus", "B": "virus", "B_2": "virus", "C": "", "D": ""}
    assert (directory / "out" / "viral_sequences.fasta").read_text().startswith(">A first one\nACGTACGTACGTACGT\n")


def test_a_prediction_for_an_unknown_sequence_fails(hand_case):
    _, directory = hand_case
    shards = [HAND_SHARDS[0], HAND_SHARDS[1] + ["Z_chunk_1F1\tvirus\t0.1\t0.9"]]
    predictions = write_shards(directory, "H", shards)
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False)
    assert result.returncode == 1 and "Z_chunk_1F1" in result.stderr and "Traceback" not in result.stderr


def test_a_pending_sequence_without_predictions_fails(hand_case):
    predictions, directory = hand_case
    (directory / "H.sequences.tsv").write_text(HAND_SEQUENCES.replace("4\tC\tC\t4\t1\t0\tno_open_frame", "4\tC\tC\t4\t1\t2\tpending"))
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False)
    assert result.returncode == 1 and "'C'" in result.stderr
    assert not (directory / "out").exists()


def test_the_wrong_fasta_fails(hand_case):
    predictions, directory = hand_case
    (directory / "other.fa").write_text(HAND_FASTA.replace(">C\n", ">E\n"))
    result = summarize(directory, "H", predictions, directory / "other.fa", check=False)
    assert result.returncode == 1 and "record 4" in result.stderr


def test_empty_input_writes_headers_only(tmp_path):
    (tmp_path / "in.fa").write_text(">C\nAAAA\n")
    (tmp_path / "E.sequences.tsv").write_text(SEQUENCES_HEADER + "1\tC\tC\t4\t1\t0\tno_open_frame\tno open frame\n")
    (tmp_path / "E.shards.tsv").write_text(SHARDS_HEADER)
    run_script("summarize.py", "--sample", "S1", "--shards", tmp_path / "E.shards.tsv", "--sequences", tmp_path / "E.sequences.tsv",
               "--fasta", tmp_path / "in.fa", "--outdir", tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "prediction_results.txt").read_text() == PREDICTIONS_HEADER
    assert (out / "prediction_results_highestscore.csv").read_text() == "Modified_ID\tIs_Virus\n"
    assert (out / "viral_sequences.fasta").read_text() == ""
    rows = read_table(out / "sequence_calls.tsv")
    assert [(row["sequence_id"], row["status"], row["call"]) for row in rows] == [("C", "no_open_frame", "")]
    assert json.loads((out / "summary.json").read_text())["calls"] == {"virus": 0, "non-virus": 0}


def test_stage_metrics_are_summed_into_the_summary(hand_case):
    predictions, directory = hand_case
    metrics = []
    for number, seconds in enumerate((2.0, 3.0), start=1):
        path = directory / f"m{number}.json"
        path.write_text(json.dumps({"stage": "embed_esm", "name": f"H.000{number}", "items": 10, "tokens": 100, "seconds": seconds,
                                    "load_seconds": 1.0, "device": "cuda:0", "precision": "bf16", "peak_gpu_memory_bytes": None}))
        metrics.append(path)
    summarize(directory, "H", predictions, directory / "in.fa", "--metrics", *metrics)
    [stage] = json.loads((directory / "out" / "summary.json").read_text())["stages"]
    assert (stage["stage"], stage["tasks"], stage["items"], stage["seconds"], stage["items_per_second"]) == ("embed_esm", 2, 20, 5.0, 4.0)
