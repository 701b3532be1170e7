"""summarize.py: the original's result files, the identity and completeness checks, the
per-sequence calls and the result folder published as a unit."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import BIN, run_script
from virnucpro import summary as summary_module
from virnucpro.contracts import SEQUENCE_COLUMNS, SHARD_COLUMNS, FrameIdDigest, record_digest, tsv_line
from virnucpro.fasta import read_fasta

PREDICTIONS_HEADER = "Sequence_ID\tPrediction\tscore1\tscore2\n"
OUTPUTS = ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_calls.tsv", "viral_sequences.fasta", "summary.json")


def sequence_of(frame_or_chunk_id: str) -> str:
    return frame_or_chunk_id.rpartition("_chunk_")[0]


def write_shards(directory: Path, prefix: str, shards: list[list[str]]) -> list[Path]:
    """Per-shard predictions files from prediction rows, and the matching P.shards.tsv (its frame
    shards: SUMMARIZE reads no other kind)."""
    paths, table = [], [tsv_line(SHARD_COLUMNS)]
    for number, rows in enumerate(shards, start=1):
        name = f"{prefix}.{number:04d}"
        ids = [row.split("\t")[0] for row in rows]
        digest = FrameIdDigest()
        digest.update(ids)
        table.append(tsv_line((name, "frames", len(rows), 10 * len(rows), ids[0], ids[-1], digest.hexdigest(), 0, 0)))
        path = directory / f"{name}.predictions.tsv"
        path.write_text(PREDICTIONS_HEADER + "".join(f"{row}\n" for row in rows))
        paths.append(path)
    (directory / f"{prefix}.shards.tsv").write_text("".join(table))
    return paths


def write_sequences(path: Path, fasta: Path, rows: list[tuple]) -> None:
    """P.sequences.tsv from (sequence_id, chunks, frames, status, reason) per record of ``fasta``:
    record number, input ID, length and digest as prepare_frames.py computes them."""
    lines = [tsv_line(SEQUENCE_COLUMNS)]
    for number, (record, (sequence_id, chunks, frames, status, reason)) in enumerate(zip(read_fasta(fasta), rows, strict=True), start=1):
        digest = record_digest(record.header, record.sequence)
        lines.append(tsv_line((number, sequence_id, record.id, len(record.sequence), chunks, frames, status, reason, digest)))
    path.write_text("".join(lines))


def read_table(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]


def summarize(directory: Path, prefix: str, predictions: list[Path], fasta: Path, *extra, chunk_size: int, check=True, out="out"):
    return run_script(
        "summarize.py", "--sample", "S1", "--predictions", *predictions,
        "--shards", directory / f"{prefix}.shards.tsv", "--sequences", directory / f"{prefix}.sequences.tsv",
        "--fasta", fasta, "--outdir", directory / out, "--chunk-size", chunk_size, *extra, check=check,
    )  # fmt: skip


def assert_fails_cleanly(result, *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# ---------------------------------------------------------------- the reference corpus


@pytest.fixture(params=[300, 500])
def reference_run(request, reference, tmp_path):
    """prepare_frames-style inputs derived from the reference corpus, predictions split into 3 shards."""
    chunk_size = request.param
    prediction_rows = (reference / "expected" / f"prediction_results_{chunk_size}.txt").read_text().splitlines()[1:]
    chunks = Counter(sequence_of(record.id) for record in read_fasta(reference / f"chunked{chunk_size}.fa"))
    frames = Counter(sequence_of(row.split("\t")[0][:-2]) for row in prediction_rows)
    rows = []
    for record in read_fasta(reference / "input.fa"):
        status = "pending" if frames[record.id] else "no_open_frame"
        rows.append((record.id, chunks[record.id], frames[record.id], status, ""))
    write_sequences(tmp_path / "P.sequences.tsv", reference / "input.fa", rows)
    third = len(prediction_rows) // 3
    shards = [prediction_rows[:third], prediction_rows[third : 2 * third], prediction_rows[2 * third :]]
    return chunk_size, write_shards(tmp_path, "P", shards), tmp_path


def test_reproduces_the_original_result_files(reference, reference_run):
    chunk_size, predictions, directory = reference_run
    summarize(directory, "P", list(reversed(predictions)), reference / "input.fa", chunk_size=chunk_size)  # any file order
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


def test_external_sort_reproduces_the_original_order(reference, reference_run, monkeypatch):
    """Sorted runs of 7 chunk verdicts, merged 3 at a time: the rows come out as sorted() puts them."""
    chunk_size, predictions, directory = reference_run
    monkeypatch.setattr(summary_module, "SORT_RUN_CHUNKS", 7)
    monkeypatch.setattr(summary_module, "SORT_FAN_IN", 3)
    summary_module.summarize("P", [str(path) for path in predictions], str(directory / "P.shards.tsv"),
                             str(directory / "P.sequences.tsv"), None, directory / "out", chunk_size)  # fmt: skip
    assert (directory / "out" / "prediction_results_highestscore.csv").read_bytes() == (
        reference / "expected" / f"prediction_results_highestscore_{chunk_size}.csv"
    ).read_bytes()


def test_the_issue_command_line_defaults_sample_and_shards_from_the_sequences_table(reference, reference_run):
    """summarize.py --predictions ... --sequences P.sequences.tsv --outdir D, as the core-stages issue spells it (with
    the chunk size, which sets the shorter_than_chunk flag)."""
    chunk_size, predictions, directory = reference_run
    result = run_script("summarize.py", "--predictions", *predictions, "--sequences", directory / "P.sequences.tsv", "--outdir", directory / "out",
                        "--chunk-size", chunk_size)  # fmt: skip
    out = directory / "out"
    expected = reference / "expected"
    assert (out / "prediction_results_highestscore.csv").read_bytes() == (
        expected / f"prediction_results_highestscore_{chunk_size}.csv"
    ).read_bytes()
    assert {row["sample"] for row in read_table(out / "sequence_calls.tsv")} == {"P"}
    assert not (out / "viral_sequences.fasta").exists() and "viral_sequences.fasta is not written" in result.stderr
    (directory / "P.shards.tsv").unlink()  # the default shard table is required: completeness is always checked
    missing = run_script("summarize.py", "--predictions", *predictions, "--sequences", directory / "P.sequences.tsv", "--outdir", directory / "again",
                         "--chunk-size", chunk_size, check=False)  # fmt: skip
    assert missing.returncode == 1 and "P.shards.tsv" in missing.stderr


def test_rerun_is_byte_identical(reference, reference_run):
    chunk_size, predictions, directory = reference_run
    summarize(directory, "P", predictions, reference / "input.fa", chunk_size=chunk_size)
    first = folder_bytes(directory / "out")
    summarize(directory, "P", list(reversed(predictions)), reference / "input.fa", chunk_size=chunk_size)
    assert sorted(first) == sorted(OUTPUTS) and folder_bytes(directory / "out") == first


def test_a_missing_shard_fails_and_writes_nothing(reference, reference_run):
    chunk_size, predictions, directory = reference_run
    result = summarize(directory, "P", [predictions[0], predictions[2]], reference / "input.fa", chunk_size=chunk_size, check=False)
    assert_fails_cleanly(result, "P.0002")
    assert not (directory / "out").exists()


def test_a_truncated_shard_fails(reference, reference_run):
    chunk_size, predictions, directory = reference_run
    lines = predictions[1].read_text().splitlines(keepends=True)
    predictions[1].write_text("".join(lines[:-1]))
    result = summarize(directory, "P", predictions, reference / "input.fa", chunk_size=chunk_size, check=False)
    assert_fails_cleanly(result, "P.0002")
    assert sorted(path.name for path in directory.iterdir() if "out" in path.name) == []  # no result, no staging folder


def test_the_same_shard_twice_fails(reference, reference_run):
    chunk_size, predictions, directory = reference_run
    result = summarize(directory, "P", [*predictions, predictions[0]], reference / "input.fa", chunk_size=chunk_size, check=False)
    assert_fails_cleanly(result, "P.0001")


# ---------------------------------------------------------------- a case worked out by hand

HAND_FASTA = (
    ">A first one\nACGTACGTAC\nGTACGT\n"
    ">B  two\tspaces\nacgtNNacgt\n"
    ">B duplicate\nGGGGCCCC\n"
    ">C\nAAAA\n"
    ">D\n"
)
HAND_CHUNK_SIZE = 10  # A (16 bp) is cut into 2 chunks, B (10 bp) into 1 full chunk, B_2 and C into 1 short chunk
HAND_ROWS = [
    ("A", 2, 3, "pending", ""),
    ("B", 1, 1, "pending", ""),
    ("B_2", 1, 1, "pending", ""),
    ("C", 1, 0, "no_open_frame", "no frame without a stop codon"),
    ("D", 0, 0, "invalid", "empty sequence"),
]
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
    write_sequences(tmp_path / "H.sequences.tsv", tmp_path / "in.fa", HAND_ROWS)
    return write_shards(tmp_path, "H", HAND_SHARDS), tmp_path


def test_sequence_calls_computed_by_hand(hand_case):
    predictions, directory = hand_case
    summarize(directory, "H", predictions, directory / "in.fa", chunk_size=HAND_CHUNK_SIZE)
    calls = (directory / "out" / "sequence_calls.tsv").read_text().splitlines()
    assert calls == [
        "sample\tsequence_id\tinput_id\tlength\tchunks\tchunks_scored\tframes_scored\tviral_chunks\t"
        "viral_chunk_fraction\tmax_chunk_score\tmean_chunk_score\tcall\tstatus\treason\tshorter_than_chunk",
        # chunk 1: max score2 0.7 >= max score1 0.6 -> viral, score 0.7; chunk 2: 0.2 < 0.8, score 0.2; mean 0.45
        "S1\tA\tA\t16\t2\t2\t3\t1\t0.500000\t0.700000\t0.450000\tnon-virus\tscored\t\tfalse",
        "S1\tB\tB\t10\t1\t1\t1\t1\t1.000000\t0.900000\t0.900000\tvirus\tscored\t\tfalse",  # exactly one chunk long
        "S1\tB_2\tB\t8\t1\t1\t1\t1\t1.000000\t0.550000\t0.550000\tvirus\tscored\t\ttrue",
        "S1\tC\tC\t4\t1\t0\t0\t0\t\t\t\t\tno_open_frame\tno frame without a stop codon\ttrue",
        "S1\tD\tD\t0\t0\t0\t0\t0\t\t\t\t\tinvalid\tempty sequence\ttrue",
    ]
    assert (directory / "out" / "prediction_results_highestscore.csv").read_text() == (
        "Modified_ID\tIs_Virus\nA_chunk_1\tTrue\nA_chunk_2\tFalse\nB_2_chunk_1\tTrue\nB_chunk_1\tTrue\n"
    )
    # both records named B are called virus: each is written once, header and letters unchanged
    assert (directory / "out" / "viral_sequences.fasta").read_text() == ">B  two\tspaces\nacgtNNacgt\n>B duplicate\nGGGGCCCC\n"
    summary = json.loads((directory / "out" / "summary.json").read_text())
    assert summary["status"] == {"scored": 3, "no_open_frame": 1, "too_short": 0, "invalid": 1}
    assert summary["chunk_size"] == HAND_CHUNK_SIZE and summary["scored_shorter_than_chunk"] == 1
    assert summary["calls"] == {"virus": 2, "non-virus": 1}
    assert (summary["chunks"], summary["chunks_scored"], summary["viral_chunks"], summary["frames_scored"]) == (5, 4, 3, 5)
    assert summary["threshold"] == 0.5 and "at least 0.5" in summary["call_rule"]
    # summary.json seals the set: the SHA-256 of each other file
    assert summary["files"] == {
        name: hashlib.sha256((directory / "out" / name).read_bytes()).hexdigest() for name in OUTPUTS if name != "summary.json"
    }


def test_threshold_changes_the_call(hand_case):
    predictions, directory = hand_case
    summarize(directory, "H", predictions, directory / "in.fa", "--threshold", "0.4", chunk_size=HAND_CHUNK_SIZE)
    calls = {row["sequence_id"]: row["call"] for row in read_table(directory / "out" / "sequence_calls.tsv")}
    assert calls == {"A": "virus", "B": "virus", "B_2": "virus", "C": "", "D": ""}
    assert (directory / "out" / "viral_sequences.fasta").read_text().startswith(">A first one\nACGTACGTACGTACGT\n")


def test_a_prediction_for_an_unknown_sequence_fails(hand_case):
    _, directory = hand_case
    shards = [HAND_SHARDS[0], HAND_SHARDS[1] + ["Z_chunk_1F1\tvirus\t0.1\t0.9"]]
    predictions = write_shards(directory, "H", shards)  # a shard table that lists Z too: the sequences table disagrees
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, "H.sequences.tsv", "Z_chunk_1F1", "H.0002")


def test_a_pending_sequence_without_predictions_fails(hand_case):
    predictions, directory = hand_case
    rows = [*HAND_ROWS[:3], ("C", 1, 2, "pending", ""), HAND_ROWS[4]]
    write_sequences(directory / "H.sequences.tsv", directory / "in.fa", rows)
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, "H.sequences.tsv", "'C'")
    assert not (directory / "out").exists()


@pytest.mark.parametrize(
    "shard, row, replacement, needles",
    [
        # a copy of the previous frame's row: named at once
        (0, 1, "A_chunk_1F1\tvirus\t0.3\t0.7", ["line 3 is a repeated frame", "'A_chunk_1F1'"]),
        # a frame of another shard's sequence in its place: named at once
        (1, 1, "A_chunk_2F1\tothers\t0.8\t0.2", ["a frame of 'A' where those of 'B_2' belong", "'A_chunk_2F1'"]),
        # a frame PREPARE never wrote (R3 in place of R2): found by the hash of the shard's IDs
        (0, 1, "A_chunk_1R3\tothers\t0.6\t0.4", ["do not hash to the ids_sha256 of"]),
    ],
)
def test_predictions_of_other_frames_fail(hand_case, shard, row, replacement, needles):
    predictions, directory = hand_case
    lines = predictions[shard].read_text().splitlines(keepends=True)
    lines[row + 1] = replacement + "\n"
    predictions[shard].write_text("".join(lines))
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, str(predictions[shard]), f"holds frames other than those of shard H.000{shard + 1}", *needles)
    assert not (directory / "out").exists()


@pytest.mark.parametrize(
    "fasta, needle",
    [
        (HAND_FASTA.replace(">A first one", ">A first 1"), "record 1 'A': not the record prepare_frames.py read (header or sequence differs)"),
        (HAND_FASTA.replace("GGGGCCCC", "GGGGCCCA"), "record 3 'B': not the record prepare_frames.py read"),
        (HAND_FASTA.replace(">C\n", ">E\n"), "record 4 'E': not the record"),
        (HAND_FASTA + ">F\nACGT\n", "record 6 'F': beyond the 5 records"),
        (HAND_FASTA.replace(">D\n", ""), "ends after 4 records but"),
    ],
)
def test_a_fasta_other_than_the_prepared_one_fails(hand_case, fasta, needle):
    predictions, directory = hand_case
    (directory / "other.fa").write_text(fasta)
    result = summarize(directory, "H", predictions, directory / "other.fa", check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, "other.fa", needle)


@pytest.mark.parametrize(
    "table, old, new, needle",
    [
        ("H.sequences.tsv", "\tA\tA\t16\t2\t3\t", "\tA\tA\t16\t2\tthree\t", "frame count 'three' is not an integer"),
        ("H.sequences.tsv", "\tpending\t", "\tdone\t", "unknown status 'done'"),
        ("H.shards.tsv", "H.0001\tframes\t3\t", "H.0001\tframes\t3.0\t", "item count '3.0' is not an integer"),
        ("H.shards.tsv", "H.0001\tframes\t", "H.0001\tframe\t", "shard H.0001 has the unknown kind 'frame'"),
        ("H.0001.predictions.tsv", "\t0.3\t0.7", "\t0.3\t1.7", "line 2 has a score that is not a probability"),
        ("H.0002.predictions.tsv", "\t0.1\t0.9", "\t0.1\tnan", "line 2 has a score that is not a probability"),
        ("H.0002.predictions.tsv", "\t0.1\t0.9", "\t0.1\tinf", "line 2 has a score that is not a probability"),
        ("H.0002.predictions.tsv", "\t0.1\t0.9", "\t-0.1\t0.9", "line 2 has a score that is not a probability"),
        ("H.sequences.tsv", "\tA\tA\t16\t", "\tA\tA\t-16\t", "line 2: length '-16' is not an integer"),
        ("H.sequences.tsv", "\tA\tA\t16\t", "\tA\tA\t" + "9" * 20 + "\t", "line 2: length 99999999999999999999 is above 9007199254740992"),
        ("H.sequences.tsv", "\tA\tA\t16\t2\t3\t", "\tA\tA\t16\t2\t+3\t", "line 2: frame count '+3' is not an integer"),
        ("H.sequences.tsv", "\n1\tA\tA\t", "\n0\tA\tA\t", "line 2: record 0 is below 1"),
        ("H.shards.tsv", "H.0001\tframes\t3\t", "H.0001\tframes\t0\t", "line 2: shard H.0001 item count 0 is below 1"),
        ("H.shards.tsv", "H.0001\tframes\t3\t30\t", "H.0001\tframes\t3\t3e1\t", "line 2: shard H.0001 token count '3e1' is not an integer"),
    ],
)
def test_bad_values_in_the_tables_fail(hand_case, table, old, new, needle):
    predictions, directory = hand_case
    path = directory / table
    path.write_text(path.read_text().replace(old, new, 1))
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, table, needle)


def test_empty_input_writes_headers_only(tmp_path):
    (tmp_path / "in.fa").write_text(">C\nAAAA\n")
    write_sequences(tmp_path / "E.sequences.tsv", tmp_path / "in.fa", [("C", 1, 0, "no_open_frame", "no open frame")])
    (tmp_path / "E.shards.tsv").write_text(tsv_line(SHARD_COLUMNS))
    run_script("summarize.py", "--sample", "S1", "--shards", tmp_path / "E.shards.tsv", "--sequences", tmp_path / "E.sequences.tsv",
               "--fasta", tmp_path / "in.fa", "--outdir", tmp_path / "out", "--chunk-size", 300)  # fmt: skip
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
                                    "load_seconds": 1.0, "device": "cuda:0", "precision": "bf16", "peak_gpu_memory_bytes": None}))  # fmt: skip
        metrics.append(path)
    summarize(directory, "H", predictions, directory / "in.fa", "--metrics", *metrics, chunk_size=HAND_CHUNK_SIZE)
    [stage] = json.loads((directory / "out" / "summary.json").read_text())["stages"]
    assert (stage["stage"], stage["tasks"], stage["items"], stage["seconds"], stage["items_per_second"]) == ("embed_esm", 2, 20, 5.0, 4.0)


def strict_json(path: Path) -> object:
    """``path`` parsed as JSON proper: NaN and Infinity, which Python's json would accept, fail."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("key, value, needle", [
    ("items", "1e400", "'items' inf is not an integer"),
    ("seconds", "-1", "'seconds' -1 is below 0"),
    ("seconds", "Infinity", "'seconds' inf is above 1e+08"),
    ("tokens", "true", "'tokens' True is not an integer"),
])  # fmt: skip
def test_out_of_range_metrics_fail_and_write_nothing(hand_case, key, value, needle):
    predictions, directory = hand_case
    path = directory / "m.json"
    path.write_text(json.dumps({"stage": "embed_esm", "items": 10, "seconds": 2.0, key: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value))
    result = summarize(directory, "H", predictions, directory / "in.fa", "--metrics", path, check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, str(path), needle)
    assert not (directory / "out").exists()


def test_metrics_at_the_edges_of_their_range_give_valid_json(hand_case):
    """The largest counts and a subnormal time: the summary holds no Infinity (a rate of null)."""
    predictions, directory = hand_case
    path = directory / "m.json"
    path.write_text(json.dumps({"stage": "embed_esm", "items": 2**53, "tokens": 2**53, "seconds": 5e-324, "load_seconds": 1e8}))
    summarize(directory, "H", predictions, directory / "in.fa", "--metrics", path, chunk_size=HAND_CHUNK_SIZE)
    [stage] = strict_json(directory / "out" / "summary.json")["stages"]
    assert (stage["items"], stage["items_per_second"], stage["tokens_per_second"]) == (2**53, None, None)


# ---------------------------------------------------------------- the result folder as a unit


def test_a_second_run_replaces_the_whole_set(hand_case):
    predictions, directory = hand_case
    summarize(directory, "H", predictions, directory / "in.fa", "--threshold", "0.4", chunk_size=HAND_CHUNK_SIZE)
    summarize(directory, "H", predictions, directory / "in.fa", "--threshold", "0.5", chunk_size=HAND_CHUNK_SIZE)
    summarize(directory, "H", predictions, directory / "in.fa", "--threshold", "0.5", out="fresh", chunk_size=HAND_CHUNK_SIZE)
    assert folder_bytes(directory / "out") == folder_bytes(directory / "fresh")
    assert json.loads((directory / "out" / "summary.json").read_text())["threshold"] == 0.5
    assert not [path.name for path in directory.iterdir() if path.name.startswith(".")]  # no staging or old folder left


# run summarize.py, SIGKILLed by itself while writing the row of its third sequence
KILLED_MIDWAY = """
import os, runpy, signal, sys
sys.path.insert(0, sys.argv[1])
from virnucpro import summary
written = summary.call_row
def call_row(*args):
    if args[1].record == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return written(*args)
summary.call_row = call_row
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_run_killed_midway_leaves_the_previous_set(hand_case):
    predictions, directory = hand_case
    summarize(directory, "H", predictions, directory / "in.fa", "--threshold", "0.4", chunk_size=HAND_CHUNK_SIZE)
    before = folder_bytes(directory / "out")
    command = [sys.executable, "-c", KILLED_MIDWAY, str(BIN), str(BIN / "summarize.py"), "--sample", "S1", "--predictions", *map(str, predictions),
               "--shards", str(directory / "H.shards.tsv"), "--sequences", str(directory / "H.sequences.tsv"),
               "--fasta", str(directory / "in.fa"), "--outdir", str(directory / "out"), "--chunk-size", str(HAND_CHUNK_SIZE)]  # fmt: skip
    killed = subprocess.run(command, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [path.name for path in directory.iterdir() if path.name.startswith(".out.tmp")]  # it was killed mid-way
    assert folder_bytes(directory / "out") == before
    files = json.loads(before["summary.json"])["files"]
    assert {name: hashlib.sha256(before[name]).hexdigest() for name in files} == files


def test_an_outdir_with_other_files_is_not_replaced(hand_case):
    predictions, directory = hand_case
    (directory / "out").mkdir()
    (directory / "out" / "notes.txt").write_text("mine")
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False, chunk_size=HAND_CHUNK_SIZE)
    assert_fails_cleanly(result, "'notes.txt'", "not replaced")
    assert os.listdir(directory / "out") == ["notes.txt"]


def test_a_chunk_size_other_than_the_prepared_one_fails(hand_case):
    """The flag shorter_than_chunk comes from --chunk-size: one other than PREPARE's is caught by the chunk counts."""
    predictions, directory = hand_case
    result = summarize(directory, "H", predictions, directory / "in.fa", check=False, chunk_size=20)
    assert_fails_cleanly(result, "H.sequences.tsv", "'A'", "2 chunks of a 16 bp sequence: not cut into chunks of --chunk-size 20")
    assert not (directory / "out").exists()


def test_too_short_sequences_are_listed_with_their_reason(hand_case):
    predictions, directory = hand_case
    reason = "shorter than the minimum length, 6 bp"
    rows = [*HAND_ROWS[:3], ("C", 0, 0, "too_short", reason), HAND_ROWS[4]]
    write_sequences(directory / "H.sequences.tsv", directory / "in.fa", rows)
    summarize(directory, "H", predictions, directory / "in.fa", chunk_size=HAND_CHUNK_SIZE)
    calls = {row["sequence_id"]: row for row in read_table(directory / "out" / "sequence_calls.tsv")}
    assert (calls["C"]["status"], calls["C"]["reason"], calls["C"]["call"], calls["C"]["chunks"]) == ("too_short", reason, "", "0")
    summary = json.loads((directory / "out" / "summary.json").read_text())
    assert summary["status"] == {"scored": 3, "no_open_frame": 0, "too_short": 1, "invalid": 1}
