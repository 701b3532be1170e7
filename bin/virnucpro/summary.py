"""Per-sample results: gathers the shards' predictions, checks that every frame was scored once,
and calls each input sequence from its chunks' scores.

The predictions are streamed, never held: memory grows with the number of chunks and sequences,
not frames, and prediction_results.txt is copied from the shard files line by line.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .atomic import atomic_open
from .errors import InputError, VirNucProError
from .fasta import open_text, read_fasta

log = logging.getLogger("virnucpro")

# The per-frame predictions file, as the original's prediction_results.txt (written by classifier.py)
PREDICTION_HEADER = "Sequence_ID\tPrediction\tscore1\tscore2\n"
LABELS = ("others", "virus")  # class index -> label
DEFAULT_THRESHOLD = 0.5
FASTA_LINE_WIDTH = 60
SHARD_COLUMNS = ("shard", "frames", "tokens", "first_id", "last_id")
SEQUENCE_COLUMNS = ("record", "sequence_id", "input_id", "length", "chunks", "frames", "status", "reason")
CALL_COLUMNS = (
    "sample", "sequence_id", "input_id", "length", "chunks", "chunks_scored", "frames_scored", "viral_chunks",
    "viral_chunk_fraction", "max_chunk_score", "mean_chunk_score", "call", "status", "reason",
)
STATUSES = ("scored", "no_open_frame", "invalid")
CALLS = ("virus", "non-virus")


def call_rule(threshold: float) -> str:
    """The call rule in words, for summary.json and the report."""
    return (
        "A chunk's virus score is the highest virus probability (score2) among its open reading frames; "
        "a chunk is viral when that score is at least its highest non-virus probability (score1), the "
        f"original VirNucPro rule. A sequence is called virus when the mean virus score of its scored "
        f"chunks is at least {threshold:g}, otherwise non-virus; sequences without any scored frame get no call."
    )


# ---------------------------------------------------------------- reading


def read_tsv(path: str | Path, columns: Sequence[str]) -> Iterator[dict[str, str]]:
    """Rows of a tab-separated file with a header line that names at least ``columns``."""
    with open_text(path) as handle:
        first = handle.readline()
        if not first:
            raise InputError(path, "empty file: expected a header line")
        header = first.rstrip("\r\n").split("\t")
        missing = [column for column in columns if column not in header]
        if missing:
            raise InputError(path, f"header lacks column(s) {', '.join(missing)}")
        for number, line in enumerate(handle, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            values = line.split("\t")
            if len(values) != len(header):
                raise InputError(path, f"line {number} has {len(values)} fields, the header {len(header)}")
            yield dict(zip(header, values))


def parse_int(path: str | Path, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(path, f"{what} {value!r} is not an integer") from None


@dataclass(frozen=True)
class Shard:
    name: str
    frames: int
    first_id: str
    last_id: str


@dataclass(frozen=True, slots=True)
class SequenceEntry:
    record: int
    sequence_id: str
    input_id: str
    length: int
    chunks: int
    frames: int
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Prediction:
    frame_id: str
    others: float  # the float32 value of score1 (compares as float32 does)
    virus: float


def read_shards(path: str | Path) -> list[Shard]:
    shards = []
    for row in read_tsv(path, SHARD_COLUMNS):
        frames = parse_int(path, row["frames"], f"shard {row['shard']} frame count")
        shards.append(Shard(row["shard"], frames, row["first_id"], row["last_id"]))
    return shards


def read_sequences(path: str | Path) -> list[SequenceEntry]:
    entries = []
    for row in read_tsv(path, SEQUENCE_COLUMNS):
        if row["status"] not in ("pending", "no_open_frame", "invalid"):
            raise InputError(path, f"unknown status {row['status']!r}", row["sequence_id"])
        entries.append(
            SequenceEntry(
                record=parse_int(path, row["record"], "record"),
                sequence_id=row["sequence_id"],
                input_id=row["input_id"],
                length=parse_int(path, row["length"], "length"),
                chunks=parse_int(path, row["chunks"], "chunk count"),
                frames=parse_int(path, row["frames"], "frame count"),
                status=row["status"],
                reason=row["reason"],
            )
        )
    return entries


def prediction_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of each row of a predictions file, the header checked."""
    with open_text(path) as handle:
        if handle.readline().rstrip("\r\n") != PREDICTION_HEADER.rstrip("\n"):
            raise InputError(path, "not a predictions file: the header must be " + PREDICTION_HEADER.rstrip("\n").replace("\t", " "))
        for number, line in enumerate(handle, start=2):
            line = line.rstrip("\r\n")
            if line:
                yield number, line


def read_predictions(path: str | Path) -> Iterator[Prediction]:
    for number, line in prediction_lines(path):
        fields = line.split("\t")
        if len(fields) != 4 or fields[1] not in LABELS:
            raise InputError(path, f"line {number} is not 'Sequence_ID, Prediction, score1, score2'")
        try:
            others, virus = float(np.float32(fields[2])), float(np.float32(fields[3]))
        except ValueError:
            raise InputError(path, f"line {number} has a score that is not a number", fields[0]) from None
        yield Prediction(fields[0], others, virus)


# ---------------------------------------------------------------- checking


def files_by_shard(shards: Sequence[Shard], prediction_paths: Sequence[str], shards_path: str | Path) -> list[tuple[str, Shard]]:
    """Match each predictions file to its shard by first frame ID; (file, shard) in shard order.

    Every shard needs exactly one file; ``shard_predictions`` checks that it holds exactly its frames.
    """
    shard_by_first = {shard.first_id: shard for shard in shards}
    matched: dict[str, str] = {}
    for path in prediction_paths:
        first = next(read_predictions(path), None)
        if first is None:
            continue  # a header-only file scores no frame, so it cannot stand for any shard
        shard = shard_by_first.get(first.frame_id)
        if shard is None:
            raise InputError(path, f"its first frame belongs to no shard of {shards_path}", first.frame_id)
        if shard.name in matched:
            raise InputError(path, f"shard {shard.name} already has predictions in {matched[shard.name]}")
        matched[shard.name] = path
    missing = [shard.name for shard in shards if shard.name not in matched]
    if missing:
        raise InputError(shards_path, f"no predictions for shard(s) {', '.join(missing)}")
    return [(matched[shard.name], shard) for shard in shards]


def shard_predictions(files: Sequence[tuple[str, Shard]]) -> Iterator[tuple[str, Prediction]]:
    """(file, prediction) of every file in order, checking that each holds exactly its shard's frames."""
    for path, shard in files:
        count, last = 0, ""
        for prediction in read_predictions(path):
            count, last = count + 1, prediction.frame_id
            yield path, prediction
        if count != shard.frames or last != shard.last_id:
            raise InputError(
                path,
                f"shard {shard.name} has {shard.frames} frames ending at '{shard.last_id}' but the file holds "
                f"{count} predictions ending at '{last}' (incomplete or mixed up)",
            )


def sequence_of(frame_id: str) -> str:
    return chunk_of(frame_id).rpartition("_chunk_")[0]


def chunk_of(frame_id: str) -> str:
    return frame_id[:-2]


# ---------------------------------------------------------------- calling


@dataclass(slots=True)
class ChunkScores:
    others: float
    virus: float

    @property
    def viral(self) -> bool:
        return bool(self.virus >= self.others)


@dataclass(slots=True)
class SequenceCall:
    entry: SequenceEntry
    frames_scored: int = 0
    chunks: dict[str, ChunkScores] = field(default_factory=dict)

    def add(self, prediction: Prediction) -> None:
        """Count a scored frame and keep its chunk's highest score1 and score2."""
        self.frames_scored += 1
        chunk_id = chunk_of(prediction.frame_id)
        chunk = self.chunks.get(chunk_id)
        if chunk is None:
            self.chunks[chunk_id] = ChunkScores(prediction.others, prediction.virus)
        else:
            chunk.others = max(chunk.others, prediction.others)
            chunk.virus = max(chunk.virus, prediction.virus)

    @property
    def status(self) -> str:
        return "scored" if self.entry.status == "pending" else self.entry.status

    @property
    def viral_chunks(self) -> int:
        return sum(chunk.viral for chunk in self.chunks.values())

    @property
    def chunk_scores(self) -> list[float]:
        return [float(chunk.virus) for chunk in self.chunks.values()]

    @property
    def mean_chunk_score(self) -> float | None:
        scores = self.chunk_scores
        return math.fsum(scores) / len(scores) if scores else None

    def call(self, threshold: float) -> str:
        mean = self.mean_chunk_score
        if mean is None:
            return ""
        return "virus" if mean >= threshold else "non-virus"


def call_sequences(
    entries: Sequence[SequenceEntry], predictions: Iterable[tuple[str, Prediction]], sequences_path: str | Path
) -> list[SequenceCall]:
    """Attach each (file, prediction) to its sequence and check that each pending sequence got all its frames."""
    calls = [SequenceCall(entry) for entry in entries]
    by_id: dict[str, SequenceCall] = {}
    for call in calls:
        if call.entry.sequence_id in by_id:
            raise InputError(sequences_path, "sequence ID listed twice", call.entry.sequence_id)
        by_id[call.entry.sequence_id] = call
    for path, prediction in predictions:
        call = by_id.get(sequence_of(prediction.frame_id))
        if call is None:
            raise InputError(path, f"frame belongs to no sequence listed in {sequences_path}", prediction.frame_id)
        call.add(prediction)
    for call in calls:
        expected = call.entry.frames if call.entry.status == "pending" else 0
        if call.entry.status == "pending" and not call.frames_scored:
            raise VirNucProError(f"{sequences_path}: sequence '{call.entry.sequence_id}' is pending but no frame of it was scored")
        if call.frames_scored != expected:
            raise InputError(
                sequences_path,
                f"status {call.entry.status} with {expected} frames to score, but {call.frames_scored} frames were scored",
                call.entry.sequence_id,
            )
    return calls


# ---------------------------------------------------------------- writing


def format_score(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def call_row(sample: str, call: SequenceCall, threshold: float) -> list[str]:
    entry, scores = call.entry, call.chunk_scores
    return [
        sample, entry.sequence_id, entry.input_id, str(entry.length), str(entry.chunks), str(len(scores)),
        str(call.frames_scored), str(call.viral_chunks),
        format_score(call.viral_chunks / len(scores) if scores else None),
        format_score(max(scores) if scores else None),
        format_score(call.mean_chunk_score), call.call(threshold), call.status, entry.reason,
    ]


def write_calls(handle: IO[str], sample: str, calls: Sequence[SequenceCall], threshold: float) -> None:
    handle.write("\t".join(CALL_COLUMNS) + "\n")
    for call in calls:
        handle.write("\t".join(call_row(sample, call, threshold)) + "\n")


def write_prediction_results(handle: IO[str], prediction_paths: Iterable[str]) -> None:
    """The original's prediction_results.txt: every shard's rows, as read, in shard order."""
    handle.write(PREDICTION_HEADER)
    for path in prediction_paths:
        for _, line in prediction_lines(path):
            handle.write(f"{line}\n")


def write_highest_scores(handle: IO[str], calls: Iterable[SequenceCall]) -> None:
    """The original's prediction_results_highestscore.csv: per chunk, max(score2) >= max(score1),
    rows sorted by chunk ID as pandas groupby sorts, written as pandas to_csv(sep='\\t') does."""
    chunks = {chunk_id: chunk for call in calls for chunk_id, chunk in call.chunks.items()}
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
    writer.writerow(["Modified_ID", "Is_Virus"])
    for chunk_id in sorted(chunks):
        writer.writerow([chunk_id, str(chunks[chunk_id].viral)])


def header_lines(path: str | Path, line_numbers: set[int]) -> dict[int, str]:
    """The header lines at ``line_numbers``, exactly as in the file (without the line end)."""
    found: dict[int, str] = {}
    if not line_numbers:
        return found
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number in line_numbers:
                found[number] = line.rstrip("\r\n")
                if len(found) == len(line_numbers):
                    break
    return found


def wrap(sequence: str, width: int = FASTA_LINE_WIDTH) -> str:
    return "".join(f"{sequence[start:start + width]}\n" for start in range(0, len(sequence), width))


def viral_header_lines(fasta_path: str | Path, calls: Sequence[SequenceCall], threshold: float) -> set[int]:
    """The header line numbers of the input records called virus, each record checked against
    sequences.tsv by record number."""
    by_record = {call.entry.record: call for call in calls}
    viral_lines = set()
    count = 0
    for count, record in enumerate(read_fasta(fasta_path), start=1):
        call = by_record.get(count)
        if call is None or call.entry.input_id != record.id:
            listed = f"'{call.entry.input_id}'" if call else "nothing"
            raise InputError(fasta_path, f"record {count} is not what sequences.tsv lists there ({listed}): not the input FASTA of this sample", record.id)
        if call.call(threshold) == "virus":
            viral_lines.add(record.line)
    if count != len(calls):
        raise InputError(fasta_path, f"holds {count} records but sequences.tsv lists {len(calls)}: not the input FASTA of this sample")
    return viral_lines


def write_viral_fasta(handle: IO[str], fasta_path: str | Path, viral_lines: set[int]) -> None:
    """The records with a header on ``viral_lines``: the header unmodified, the sequence wrapped."""
    headers = header_lines(fasta_path, viral_lines)
    for record in read_fasta(fasta_path):
        if record.line in headers:
            handle.write(f"{headers[record.line]}\n{wrap(record.sequence)}")


def sample_summary(sample: str, calls: Sequence[SequenceCall], shards: int, threshold: float) -> dict:
    statuses = Counter(call.status for call in calls)
    outcomes = Counter(call.call(threshold) for call in calls)
    return {
        "sample": sample,
        "threshold": threshold,
        "call_rule": call_rule(threshold),
        "shards": shards,
        "sequences": len(calls),
        "status": {status: statuses[status] for status in STATUSES},
        "calls": {outcome: outcomes[outcome] for outcome in CALLS},
        "chunks": sum(call.entry.chunks for call in calls),
        "chunks_scored": sum(len(call.chunks) for call in calls),
        "viral_chunks": sum(call.viral_chunks for call in calls),
        "frames_scored": sum(call.frames_scored for call in calls),
    }


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise VirNucProError(f"--threshold {threshold}: must be a probability between 0 and 1")


def check_sample_name(sample: str) -> None:
    if not sample or any(character in sample for character in "\t\r\n"):
        raise VirNucProError(f"--sample {sample!r}: must be non-empty without tabs or line breaks")


def summarize(
    sample: str,
    prediction_paths: Sequence[str],
    shards_path: str,
    sequences_path: str,
    fasta_path: str | None,
    outdir: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    stage_metrics: Mapping[str, object] | None = None,
) -> dict:
    """Check and combine one sample's predictions, then write its result files into ``outdir``.

    Everything is checked before the first file is written, so a failure leaves no results.
    """
    check_sample_name(sample)
    check_threshold(threshold)
    shards = read_shards(shards_path)
    entries = read_sequences(sequences_path)
    files = files_by_shard(shards, prediction_paths, shards_path)
    calls = call_sequences(entries, shard_predictions(files), sequences_path)
    viral_lines = viral_header_lines(fasta_path, calls, threshold) if fasta_path else None
    summary = sample_summary(sample, calls, len(shards), threshold)
    if stage_metrics is not None:
        summary["stages"] = stage_metrics

    outdir = Path(outdir)
    with atomic_open(outdir / "prediction_results.txt") as handle:
        write_prediction_results(handle, [path for path, _ in files])
    with atomic_open(outdir / "prediction_results_highestscore.csv") as handle:
        write_highest_scores(handle, calls)
    with atomic_open(outdir / "sequence_calls.tsv") as handle:
        write_calls(handle, sample, calls, threshold)
    with atomic_open(outdir / "summary.json") as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if viral_lines is None:
        log.warning("no --fasta given: viral_sequences.fasta is not written")
    else:
        with atomic_open(outdir / "viral_sequences.fasta") as handle:
            write_viral_fasta(handle, fasta_path, viral_lines)
    return summary
