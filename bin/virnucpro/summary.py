"""Per-sample results: one streaming pass over P.sequences.tsv, the shards' predictions and the
input FASTA, proving each is what PREPARE wrote or read, and calling every input sequence from
its chunks' scores.

PREPARE wrote each sequence's frames contiguously, chunk by chunk, in the order of
P.sequences.tsv and of the FASTA, so the three are read side by side and a sequence is called as
soon as its frames are in: memory does not grow with the sample. prediction_results_highestscore.csv
is sorted by chunk ID, so its rows go through an external merge sort. The result files are written
into a hidden sibling of the output folder that then takes the folder's place, so that the folder
holds one run's complete set or nothing, never a mix.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import logging
import math
import os
import tempfile
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping, Sequence

from .contracts import (
    CALL_COLUMNS, CALL_STATUSES, CALLS, DEFAULT_THRESHOLD, FRAMES, HIGHEST_SCORES, NO_OPEN_FRAME, NON_VIRUS, PENDING,
    PREDICTION_HEADER, PREDICTION_RESULTS, SAMPLE_RESULT_FILES, SCORED, SEQUENCE_CALLS, SUMMARY_JSON, VIRAL_SEQUENCES, VIRUS,
    FrameIdDigest, Prediction, SequenceEntry, Shard, call_rule, chunk_of, file_sha256, flag, one_file_per_shard, parse_frame_id,
    parse_prediction, prediction_lines, read_predictions, read_sequences, read_shards, record_digest, shards_of, tsv_line,
)  # fmt: skip
from .atomic import atomic_folder, json_text
from .errors import InputError, VirNucProError
from .fasta import FastaRecord, read_fasta

log = logging.getLogger("virnucpro")

FASTA_LINE_WIDTH = 60
SORT_RUN_CHUNKS = 200_000  # chunk verdicts sorted in memory before they go to a run file
SORT_FAN_IN = 64  # run files merged into one when this many exist, to bound open files
OUTPUT_BUFFER = 1 << 20


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise VirNucProError(f"--threshold {threshold}: must be a probability between 0 and 1")


def check_sample_name(sample: str) -> None:
    if not sample or any(character in sample for character in "\t\r\n"):
        raise VirNucProError(f"--sample {sample!r}: must be non-empty without tabs or line breaks")


# ---------------------------------------------------------------- the shards' predictions


def files_by_shard(shards: Sequence[Shard], prediction_paths: Sequence[str], shards_path: str | Path) -> list[tuple[str, Shard]]:
    """Match each predictions file to its shard by first frame ID; (file, shard) in shard order.

    Every shard needs exactly one file; ShardStream checks that it holds exactly its frames.
    """
    shard_by_first = {shard.first_id: shard for shard in shards}

    def held() -> Iterator[tuple[str, Shard]]:
        for path in prediction_paths:
            first = next(read_predictions(path), None)
            if first is None:
                continue  # a header-only file scores no frame, so it cannot stand for any shard
            shard = shard_by_first.get(first.frame_id)
            if shard is None:
                raise InputError(path, f"its first frame belongs to no shard of {shards_path}", first.frame_id)
            yield path, shard

    return one_file_per_shard(held(), shards, shards_path, "predictions")


class ShardStream:
    """The predictions of every shard in shard order, each line copied to ``copy`` as read.

    At the end of each file its frame count and the hash of its frame IDs must be the shard's in
    P.shards.tsv: a file holding anything but the frames PREPARE wrote, in its order, fails.
    """

    def __init__(self, files: Sequence[tuple[str, Shard]], shards_path: str | Path, copy: IO[str]) -> None:
        self._files = iter(files)
        self._shards_path = shards_path
        self._copy = copy
        self._open_next()

    def _open_next(self) -> None:
        self.path, self.shard = next(self._files, ("", None))
        self._lines = prediction_lines(self.path) if self.shard else None
        self._digest = FrameIdDigest()
        self._last = ""

    def next(self) -> tuple[int, Prediction] | None:
        """The next (line number, prediction); None after the last shard."""
        while self._lines is not None:
            item = next(self._lines, None)
            if item is None:
                self._check_complete()
                self._open_next()
                continue
            number, line = item
            prediction = parse_prediction(self.path, number, line)
            self._digest.update((prediction.frame_id,))
            self._last = prediction.frame_id
            self._copy.write(f"{line}\n")
            return number, prediction
        return None

    def _check_complete(self) -> None:
        shard, count = self.shard, self._digest.count
        if count != shard.items or self._last != shard.last_id:
            raise InputError(
                self.path,
                f"shard {shard.name} has {shard.items} frames ending at '{shard.last_id}' but the file holds "
                f"{count} predictions ending at '{self._last}' (incomplete or mixed up)",
            )
        if self._digest.hexdigest() != shard.ids_sha256:
            raise InputError(
                self.path,
                f"holds frames other than those of shard {shard.name}: its {count} frame IDs do not hash to the "
                f"ids_sha256 of {self._shards_path}",
            )

    def holds_its_shard(self) -> bool:
        """Whether the current file, read on to its end, holds exactly its shard's frames."""
        for _, line in self._lines:
            self._digest.update((line.partition("\t")[0],))
        return self._digest.count == self.shard.items and self._digest.hexdigest() == self.shard.ids_sha256

    def misplaced(self, number: int, frame_id: str, why: str, sequences_path: str | Path) -> InputError:
        """The error for a frame that is not where P.sequences.tsv puts the next one: the file is
        not its shard's, or (if it is) the sequences table is not of the same PREPARE run."""
        if not self.holds_its_shard():
            return InputError(self.path, f"holds frames other than those of shard {self.shard.name}: line {number} is {why}", frame_id)
        return InputError(
            sequences_path,
            f"disagrees with shard {self.shard.name} ({self.path} line {number} is {why}): are it and "
            f"{self._shards_path} from one prepare_frames.py run?",
            frame_id,
        )


# ---------------------------------------------------------------- calling


class SortedVerdicts:
    """(chunk ID, viral) pairs, iterated sorted by chunk ID with bounded memory: sorted runs of at
    most SORT_RUN_CHUNKS pairs spill to files in ``directory`` and are merged at the end."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._pairs: list[tuple[str, bool]] = []
        self._runs: list[Path] = []
        self._written = 0

    def add(self, chunk_id: str, viral: bool) -> None:
        self._pairs.append((chunk_id, viral))
        if len(self._pairs) >= SORT_RUN_CHUNKS:
            self._pairs.sort()
            self._write_run(self._pairs)
            self._pairs = []

    def _write_run(self, pairs: Iterable[tuple[str, bool]]) -> None:
        path = self._directory / f"run{self._written}.tsv"
        self._written += 1
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{chunk_id}\t{int(viral)}\n" for chunk_id, viral in pairs)
        self._runs.append(path)
        if len(self._runs) >= SORT_FAN_IN:
            runs, self._runs = self._runs, []
            with contextlib.ExitStack() as stack:
                self._write_run(heapq.merge(*(_read_run(stack, run) for run in runs)))
            for run in runs:
                run.unlink()

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        self._pairs.sort()
        if not self._runs:
            yield from self._pairs
            return
        with contextlib.ExitStack() as stack:
            yield from heapq.merge(self._pairs, *(_read_run(stack, run) for run in self._runs))


def _read_run(stack: contextlib.ExitStack, path: Path) -> Iterator[tuple[str, bool]]:
    # chunk IDs hold no tab or line break: they are fields of the tables they come from
    for line in stack.enter_context(open(path, encoding="utf-8", newline="\n")):
        chunk_id, _, viral = line.rpartition("\t")
        yield chunk_id, viral == "1\n"


@dataclass(slots=True)
class SequenceScores:
    """A sequence's scored frames: per chunk its virus score (highest score2 of its frames),
    the chunk viral when that is at least its highest score1 (the original's rule)."""

    frames: int = 0
    chunk_scores: array = field(default_factory=lambda: array("d"))
    viral_chunks: int = 0

    def add_chunk(self, others: float, virus: float) -> bool:
        viral = virus >= others
        self.chunk_scores.append(virus)
        self.viral_chunks += viral
        return viral

    def mean(self) -> float | None:
        return math.fsum(self.chunk_scores) / len(self.chunk_scores) if self.chunk_scores else None


def call_of(mean: float | None, threshold: float) -> str:
    if mean is None:
        return ""
    return VIRUS if mean >= threshold else NON_VIRUS


def score_sequence(entry: SequenceEntry, stream: ShardStream, verdicts: SortedVerdicts, sequences_path: str | Path) -> SequenceScores:
    """Read a pending sequence's frames, which come next in the stream chunk by chunk, F1..R3."""
    scores = SequenceScores()
    if entry.status != PENDING:
        return scores
    chunk_id, place, others, virus, previous = "", (0, -1), 0.0, 0.0, ""
    for _ in range(entry.frames):
        item = stream.next()
        if item is None:
            raise InputError(
                sequences_path, f"status pending with {entry.frames} frames to score, but the shards hold {scores.frames}", entry.sequence_id
            )
        number, prediction = item
        frame_id = prediction.frame_id
        parsed = parse_frame_id(frame_id)
        if parsed is None:
            raise stream.misplaced(number, frame_id, "not a frame ID", sequences_path)
        if parsed[0] != entry.sequence_id:
            raise stream.misplaced(number, frame_id, f"a frame of '{parsed[0]}' where those of '{entry.sequence_id}' belong", sequences_path)
        if parsed[1:] <= place:
            why = "a repeated frame" if parsed[1:] == place else f"out of order after '{previous}'"
            raise stream.misplaced(number, frame_id, why, sequences_path)
        if parsed[1] != place[0]:
            if chunk_id:
                verdicts.add(chunk_id, scores.add_chunk(others, virus))
            chunk_id, others, virus = chunk_of(frame_id), prediction.others, prediction.virus
        else:
            others, virus = max(others, prediction.others), max(virus, prediction.virus)
        place, previous = parsed[1:], frame_id
        scores.frames += 1
    verdicts.add(chunk_id, scores.add_chunk(others, virus))
    return scores


def check_entry(sequences_path: str | Path, number: int, entry: SequenceEntry, chunk_size: int) -> None:
    if entry.record != number:
        raise InputError(sequences_path, f"lists record {entry.record} where record {number} belongs (rows missing or reordered)", entry.sequence_id)
    if (entry.status == PENDING) != (entry.frames > 0):
        raise InputError(sequences_path, f"status {entry.status} with {entry.frames} frames: exactly the pending sequences have frames", entry.sequence_id)
    if entry.status in (PENDING, NO_OPEN_FRAME) and entry.chunks != -(-entry.length // chunk_size):
        raise InputError(
            sequences_path, f"{entry.chunks} chunks of a {entry.length} bp sequence: not cut into chunks of --chunk-size {chunk_size}", entry.sequence_id
        )


def checked_record(records: Iterator[FastaRecord], entry: SequenceEntry, fasta_path: str | Path, sequences_path: str | Path) -> FastaRecord:
    """The next input record, which must be the one PREPARE read for ``entry``."""
    record = next(records, None)
    if record is None:
        raise InputError(
            fasta_path,
            f"ends after {entry.record - 1} records but {sequences_path} lists record {entry.record} '{entry.input_id}': "
            "not the input prepare_frames.py read",
        )
    if (record.id, len(record.sequence), record_digest(record.header, record.sequence)) != (entry.input_id, entry.length, entry.digest):
        raise InputError(fasta_path, f"record {entry.record} '{record.id}': not the record prepare_frames.py read (header or sequence differs)")
    return record


# ---------------------------------------------------------------- writing


def format_score(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def call_status(entry: SequenceEntry) -> str:
    return SCORED if entry.status == PENDING else entry.status


def shorter_than_chunk(entry: SequenceEntry, chunk_size: int) -> bool:
    return entry.length < chunk_size


def call_row(sample: str, entry: SequenceEntry, scores: SequenceScores, mean: float | None, call: str, short: bool) -> list[object]:
    chunks = scores.chunk_scores
    return [
        sample, entry.sequence_id, entry.input_id, entry.length, entry.chunks, len(chunks), scores.frames, scores.viral_chunks,
        format_score(scores.viral_chunks / len(chunks) if chunks else None), format_score(max(chunks) if chunks else None),
        format_score(mean), call, call_status(entry), entry.reason, flag(short),
    ]  # fmt: skip


def wrap(sequence: str, width: int = FASTA_LINE_WIDTH) -> str:
    return "".join(f"{sequence[start:start + width]}\n" for start in range(0, len(sequence), width))


def write_highest_scores(handle: IO[str], verdicts: Iterable[tuple[str, bool]], sequences_path: str | Path) -> None:
    """The original's prediction_results_highestscore.csv: per chunk, max(score2) >= max(score1),
    rows sorted by chunk ID as pandas groupby sorts, written as pandas to_csv(sep='\\t') does."""
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
    writer.writerow(["Modified_ID", "Is_Virus"])
    previous = None
    for chunk_id, viral in verdicts:
        if chunk_id == previous:
            raise InputError(sequences_path, f"two sequences have the chunk '{chunk_id}': a sequence ID is listed twice")
        writer.writerow([chunk_id, str(viral)])
        previous = chunk_id


@dataclass
class SampleTally:
    sequences: int = 0
    statuses: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)
    chunks: int = 0
    chunks_scored: int = 0
    viral_chunks: int = 0
    frames_scored: int = 0
    scored_shorter_than_chunk: int = 0

    def add(self, entry: SequenceEntry, scores: SequenceScores, call: str, short: bool) -> None:
        self.sequences += 1
        self.statuses[call_status(entry)] += 1
        self.calls[call] += 1
        self.chunks += entry.chunks
        self.chunks_scored += len(scores.chunk_scores)
        self.viral_chunks += scores.viral_chunks
        self.frames_scored += scores.frames
        self.scored_shorter_than_chunk += short and call_status(entry) == SCORED

    def summary(self, sample: str, shards: int, threshold: float, chunk_size: int) -> dict:
        return {
            "sample": sample,
            "threshold": threshold,
            "call_rule": call_rule(threshold),
            "chunk_size": chunk_size,
            "shards": shards,
            "sequences": self.sequences,
            "status": {status: self.statuses[status] for status in CALL_STATUSES},
            "scored_shorter_than_chunk": self.scored_shorter_than_chunk,
            "calls": {outcome: self.calls[outcome] for outcome in CALLS},
            "chunks": self.chunks,
            "chunks_scored": self.chunks_scored,
            "viral_chunks": self.viral_chunks,
            "frames_scored": self.frames_scored,
        }


@dataclass(frozen=True)
class SampleInputs:
    sample: str
    sequences: str
    fasta: str | None
    threshold: float
    chunk_size: int


def call_sequences(inputs: SampleInputs, stream: ShardStream, verdicts: SortedVerdicts, calls: IO[str], viral: IO[str] | None) -> SampleTally:
    """The pass: each row of P.sequences.tsv with its FASTA record and frames, its row of
    sequence_calls.tsv and, when called virus, its record in viral_sequences.fasta."""
    tally = SampleTally()
    records = read_fasta(inputs.fasta) if inputs.fasta else None
    calls.write(tsv_line(CALL_COLUMNS))
    number = 0
    for number, entry in enumerate(read_sequences(inputs.sequences), start=1):
        check_entry(inputs.sequences, number, entry, inputs.chunk_size)
        record = checked_record(records, entry, inputs.fasta, inputs.sequences) if records is not None else None
        scores = score_sequence(entry, stream, verdicts, inputs.sequences)
        mean = scores.mean()
        call = call_of(mean, inputs.threshold)
        short = shorter_than_chunk(entry, inputs.chunk_size)
        calls.write(tsv_line(call_row(inputs.sample, entry, scores, mean, call, short)))
        if viral is not None and call == VIRUS:
            viral.write(f">{record.header}\n{wrap(record.sequence)}")
        tally.add(entry, scores, call, short)
    leftover = stream.next()
    if leftover is not None:
        line, prediction = leftover
        raise stream.misplaced(line, prediction.frame_id, "a frame after the last pending sequence", inputs.sequences)
    extra = next(records, None) if records is not None else None
    if extra is not None:
        raise InputError(
            inputs.fasta, f"record {number + 1} '{extra.id}': beyond the {number} records of {inputs.sequences}, not the input prepare_frames.py read"
        )
    return tally


# ---------------------------------------------------------------- the result folder


def check_replaceable(outdir: Path, shown: str | Path) -> None:
    """An existing output folder is replaced only when it holds nothing but result files."""
    if not os.path.lexists(outdir):
        return
    if outdir.is_symlink() or not outdir.is_dir():
        raise InputError(shown, "exists and is not a directory: not replaced by the results")
    foreign = sorted(name for name in os.listdir(outdir) if name not in SAMPLE_RESULT_FILES)
    if foreign:
        raise InputError(shown, f"holds '{foreign[0]}', which summarize.py does not write: not replaced (give a new or empty --outdir)")


def open_output(path: Path) -> IO[str]:
    return open(path, "w", encoding="utf-8", newline="\n", buffering=OUTPUT_BUFFER)


def summarize(
    sample: str,
    prediction_paths: Sequence[str],
    shards_path: str,
    sequences_path: str,
    fasta_path: str | None,
    outdir: str | Path,
    chunk_size: int,
    threshold: float = DEFAULT_THRESHOLD,
    stage_metrics: Mapping[str, object] | None = None,
) -> dict:
    """Check and combine one sample's predictions in one pass and publish its result files as
    ``outdir``; summary.json, written last, holds the SHA-256 of every other file."""
    check_sample_name(sample)
    check_threshold(threshold)
    final = Path(os.path.abspath(outdir))
    check_replaceable(final, outdir)
    shards = shards_of(read_shards(shards_path), FRAMES)
    files = files_by_shard(shards, prediction_paths, shards_path)
    inputs = SampleInputs(sample, sequences_path, fasta_path, threshold, chunk_size)
    if fasta_path is None:
        log.warning("no --fasta given: viral_sequences.fasta is not written")
    with atomic_folder(final) as staging:
        with tempfile.TemporaryDirectory(dir=staging, prefix=".sort") as spill, contextlib.ExitStack() as outputs:
            predictions = outputs.enter_context(open_output(staging / PREDICTION_RESULTS))
            calls = outputs.enter_context(open_output(staging / SEQUENCE_CALLS))
            viral = outputs.enter_context(open_output(staging / VIRAL_SEQUENCES)) if fasta_path else None
            predictions.write(PREDICTION_HEADER)
            verdicts = SortedVerdicts(Path(spill))
            tally = call_sequences(inputs, ShardStream(files, shards_path, predictions), verdicts, calls, viral)
            with open_output(staging / HIGHEST_SCORES) as handle:
                write_highest_scores(handle, verdicts, sequences_path)
        summary = tally.summary(sample, len(shards), threshold, chunk_size)
        if stage_metrics is not None:
            summary["stages"] = stage_metrics
        summary["files"] = {name: file_sha256(staging / name) for name in sorted(os.listdir(staging))}
        with open_output(staging / SUMMARY_JSON) as handle:
            handle.write(json_text(summary, sort_keys=True))
    return summary
