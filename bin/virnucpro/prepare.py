"""The PREPARE stage: validate the input FASTA, chunk and six-frame translate it, write shards.

One streaming pass reads the FASTA, validates each record, writes its row of
``P.sequences.tsv`` and appends its kept frames to two anonymous spool files (nothing is left of
them however the process ends), remembering only each frame's ESM token count and a 16-byte
key of each sequence ID. The shard boundaries follow from the token counts; each shard is then
a run of lines of the spools (two per frame). Every output is written under a temporary name and
renamed into place once all are complete, P.shards.tsv (the set's manifest) last. A bad input
fails during the pass, before any output exists. Memory grows by about 16 bytes per input
record (its ID key; twice that while two levels of keys merge) and 2 bytes per frame.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Iterable, Iterator, Sequence

import numpy as np

from .atomic import atomic_path
from .contracts import (
    INVALID, NO_OPEN_FRAME, PENDING, SEQUENCE_COLUMNS, SEQUENCES_SUFFIX, SHARD_COLUMNS, SHARDS_SUFFIX, TOO_SHORT, FrameIdDigest,
    esm_tokens, record_digest, shard_name, tsv_line,
)
from .errors import InputError
from .fasta import IUPAC_LETTERS, FastaRecord, format_record, nucleotide_problem, read_fasta
from .frames import FrameBatch, translate_batches

log = logging.getLogger("virnucpro")

DEFAULT_SHARD_TOKENS = 50_000_000  # ESM-2 tokens per shard: what sets an embedding task's GPU time
DEFAULT_MIN_LENGTH = 0  # every sequence is chunked and scored, as by the original
SHORTER_THAN_A_CODON = "shorter than one codon"
NO_OPEN_FRAME_REASON = "every frame of every chunk has a stop codon or no complete codon"
RNA_REASON = "RNA: U read as T"
_IUPAC_BYTES = "".join(sorted(IUPAC_LETTERS)).encode()
_U_TO_T = str.maketrans("Uu", "Tt")
BATCH_RECORDS = 4096  # records whose IDs are looked up together
BATCH_BASES = 1 << 20
COPY_BLOCK = 1 << 22


def sequence_problem(sequence: str) -> str | None:
    """Why ``sequence`` cannot be chunked, or None (a C-speed check first: almost every sequence is fine)."""
    if sequence and not sequence.encode("utf-8").translate(None, _IUPAC_BYTES):
        return None
    return nucleotide_problem(sequence)


def too_short_reason(length: int, min_length: int) -> str | None:
    """Why a valid sequence is not chunked (--min-length), or None."""
    return f"shorter than the minimum length, {min_length} bp" if length < min_length else None


def sequence_status(length: int, frames: int, refusal: tuple[str, str] | None) -> tuple[str, str]:
    if refusal is not None:
        return refusal
    if frames:
        return PENDING, ""
    return NO_OPEN_FRAME, SHORTER_THAN_A_CODON if length < 3 else NO_OPEN_FRAME_REASON


# ---------------------------------------------------------------- sequence IDs

def _id_key(identifier: str) -> bytes:
    return hashlib.blake2b(identifier.encode("utf-8"), digest_size=16).digest()


def _key_halves(keys: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit halves of concatenated 16-byte keys."""
    pairs = np.frombuffer(keys, dtype="<u8").reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def _interleaved(larger: np.ndarray, smaller: np.ndarray, positions: np.ndarray, others: np.ndarray) -> np.ndarray:
    merged = np.empty(len(others), dtype=larger.dtype)
    merged[positions] = smaller
    merged[others] = larger
    return merged


class SequenceIds:
    """Unique sequence IDs in input order: a repeated ID is an error, or is renamed ``{id}_dup{n}``
    with the smallest n giving a name not used by any earlier record (renamed IDs count as used).

    The IDs given so far are held as 128-bit BLAKE2b keys (a false match among 10^9 IDs has a
    chance of about 10^-21): the latest in a set, the rest in numpy levels sorted by their first
    64 bits whose sizes halve from one to the next (a new level merges into the one before while
    that is less than twice its size). About 16 bytes per ID; a batch of records is looked up in
    the levels at once. The error for a duplicate reads the input again to name the earlier record.
    """

    RECENT = 1 << 16  # keys kept in the set before they become a level

    def __init__(self, path: str | Path, rename_duplicates: bool) -> None:
        self.path = path
        self.rename_duplicates = rename_duplicates
        self._recent: set[bytes] = set()
        self._levels: list[tuple[np.ndarray, np.ndarray]] = []
        self._next_copy: dict[str, int] = {}  # where the search for a free {id}_dup{n} resumes

    def assign(self, first_number: int, records: Sequence[FastaRecord]) -> Iterator[str]:
        """The ID of each record (numbered from ``first_number``), in order; raises at a duplicate."""
        if len(self._recent) >= self.RECENT:
            self._flush()
        blake2b = hashlib.blake2b
        keys = [blake2b(record.id.encode("utf-8"), digest_size=16).digest() for record in records]  # _id_key, inlined
        known = self._in_levels(keys)
        for number, record, key, old in zip(itertools.count(first_number), records, keys, known.tolist()):
            identifier = record.id
            if old or key in self._recent:
                if self.rename_duplicates:
                    identifier, key = self._free_copy(record.id)
                elif (earlier := self._earlier_record(record.id)) is not None:  # None: another ID of the same key
                    raise InputError(
                        self.path,
                        f"duplicate sequence ID in records {earlier[0]} (line {earlier[1]}) and {number} (line {record.line}); "
                        "--rename-duplicates renames later ones",
                        record.id,
                    )
            self._recent.add(key)
            yield identifier

    def _free_copy(self, identifier: str) -> tuple[str, bytes]:
        copy = self._next_copy.get(identifier, 1)
        while True:
            name = f"{identifier}_dup{copy}"
            key = _id_key(name)
            if key not in self._recent and not self._in_levels([key])[0]:
                break
            copy += 1
        self._next_copy[identifier] = copy + 1
        return name, key

    def _in_levels(self, keys: list[bytes]) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        if not self._levels or not keys:
            return found
        first, second = _key_halves(b"".join(keys))
        order = np.argsort(first)  # sorted queries make searchsorted walk each level once
        first, second = first[order], second[order]
        for level_first, level_second in self._levels:
            low = np.searchsorted(level_first, first)
            # equal first halves: a duplicate, almost surely; the run of equal ones decides
            for query in np.flatnonzero(level_first.take(low, mode="clip") == first).tolist():
                index = int(low[query])
                while index < len(level_first) and level_first[index] == first[query]:
                    if level_second[index] == second[query]:
                        found[order[query]] = True
                        break
                    index += 1
        return found

    def _flush(self) -> None:
        first, second = _key_halves(b"".join(self._recent))
        order = np.argsort(first)
        self._levels.append((first[order], second[order]))
        self._recent = set()
        while len(self._levels) >= 2 and len(self._levels[-2][0]) < 2 * len(self._levels[-1][0]):
            self._merge_last_two()

    def _merge_last_two(self) -> None:
        """Merge in linear time, one half at a time, so that the old and the new copies of only
        one half of the keys exist at once."""
        smaller_first, smaller_second = self._levels.pop()
        larger_first, larger_second = self._levels.pop()
        positions = np.searchsorted(larger_first, smaller_first)
        positions += np.arange(len(positions))
        others = np.ones(len(larger_first) + len(smaller_first), dtype=bool)
        others[positions] = False
        first = _interleaved(larger_first, smaller_first, positions, others)
        del larger_first, smaller_first
        self._levels.append((first, _interleaved(larger_second, smaller_second, positions, others)))

    def _earlier_record(self, identifier: str) -> tuple[int, int] | None:
        """(number, header line) of the first record with ``identifier``, read again from the input."""
        found = ((number, record.line) for number, record in enumerate(read_fasta(self.path), start=1) if record.id == identifier)
        return next(found, None)


# ---------------------------------------------------------------- the pass over the FASTA

@dataclass(frozen=True, slots=True)
class _Checked:
    number: int
    sequence_id: str
    record: FastaRecord
    refusal: tuple[str, str] | None  # (status, reason) of a sequence that is not chunked
    rna: bool


@dataclass
class InputCounts:
    records: int = 0
    bases: int = 0
    invalid: int = 0
    too_short: int = 0
    rna: int = 0


def _record_batches(records: Iterator[FastaRecord]) -> Iterator[list[FastaRecord]]:
    """Consecutive records in lists of BATCH_RECORDS or BATCH_BASES at most; an error reading the
    file comes after the records read before it, so the first bad record is still the one named."""
    batch: list[FastaRecord] = []
    bases = 0
    try:
        for record in records:
            batch.append(record)
            bases += len(record.sequence)
            if len(batch) == BATCH_RECORDS or bases >= BATCH_BASES:
                yield batch
                batch, bases = [], 0
    except Exception:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def _checked_records(
    path: str | Path, ids: SequenceIds, skip_invalid: bool, min_length: int, counts: InputCounts
) -> Iterator[tuple[_Checked, str]]:
    """(checked record, sequence to translate) for each record: RNA read as DNA, nothing for an
    invalid or too short one."""
    number = 1
    for batch in _record_batches(read_fasta(path)):
        for record, sequence_id in zip(batch, ids.assign(number, batch)):
            problem = sequence_problem(record.sequence)
            if problem is not None and not skip_invalid:
                raise InputError(path, f"record {number} (line {record.line}): {problem}", record.id)
            short = too_short_reason(len(record.sequence), min_length)
            refusal = (INVALID, problem) if problem is not None else (TOO_SHORT, short) if short else None
            sequence = "" if refusal else record.sequence
            rna = "U" in sequence or "u" in sequence
            if rna:
                sequence = sequence.translate(_U_TO_T)
                counts.rna += 1
            yield _Checked(number, sequence_id, record, refusal, rna), sequence
            number += 1


def _row(checked: _Checked, chunks: int, frames: int) -> str:
    record = checked.record
    status, reason = sequence_status(len(record.sequence), frames, checked.refusal)
    if checked.rna:
        reason = f"{reason}; {RNA_REASON}" if reason else RNA_REASON
    digest = record_digest(record.header, record.sequence)
    return tsv_line((checked.number, checked.sequence_id, record.id, len(record.sequence), chunks, frames, status, reason, digest))


class FrameSpool:
    """Kept frames appended in order to a nucleotide and a protein file, two lines each, with the
    ESM token count of each frame (uint16 while a chunk's proteins fit, as for any usual chunk size)."""

    def __init__(self, nucleotides: BinaryIO, proteins: BinaryIO, chunk_size: int) -> None:
        self.nucleotides, self.proteins = nucleotides, proteins
        self.tokens = array("H" if esm_tokens(chunk_size // 3) <= np.iinfo(np.uint16).max else "I")

    def add(self, batch: FrameBatch, sequence_ids: list[str]) -> None:
        ids = [sequence_ids[piece] + suffix for piece, suffix in zip(batch.frame_pieces.tolist(), batch.suffixes())]
        nucleotides, proteins = zip(*batch.sequences()) if ids else ((), ())
        self.nucleotides.write("".join(map(format_record, ids, nucleotides)).encode())
        self.proteins.write("".join(map(format_record, ids, proteins)).encode())
        self.tokens.frombytes(esm_tokens(batch.protein_lengths).astype(self.tokens.typecode).tobytes())


def translate_fasta(
    path: str | Path, chunk_size: int, ids: SequenceIds, skip_invalid: bool, min_length: int, spool: FrameSpool, rows: IO[str]
) -> InputCounts:
    """The pass over the FASTA: spool the kept frames and write one P.sequences.tsv row per record."""
    counts = InputCounts()
    chunks = frames = 0  # of the record whose pieces are being read
    items = _checked_records(path, ids, skip_invalid, min_length, counts)
    for batch in translate_batches(items, chunk_size, BATCH_BASES):
        spool.add(batch, [checked.sequence_id for checked in batch.tags])
        lines = []
        for checked, piece_chunks, piece_frames, last in zip(batch.tags, batch.chunks.tolist(), batch.frame_counts().tolist(), batch.last):
            chunks += piece_chunks
            frames += piece_frames
            if last:
                lines.append(_row(checked, chunks, frames))
                counts.records = checked.number
                counts.bases += len(checked.record.sequence)
                refused = checked.refusal[0] if checked.refusal else None
                counts.invalid += refused == INVALID
                counts.too_short += refused == TOO_SHORT
                chunks = frames = 0
        rows.write("".join(lines))
    return counts


# ---------------------------------------------------------------- shards

def _greedy_ends(cumulative: np.ndarray, max_tokens: int, max_frames: int, start: int) -> int:
    """The furthest end of a shard from ``start`` within both caps, at least one frame."""
    by_tokens = int(np.searchsorted(cumulative, cumulative[start] + max_tokens, side="right")) - 1
    return max(start + 1, min(start + max_frames, by_tokens, len(cumulative) - 1))


def _earliest_start(cumulative: np.ndarray, max_tokens: int, max_frames: int, end: int) -> int:
    """The earliest start of a shard ending at ``end`` within both caps, at least one frame."""
    by_tokens = int(np.searchsorted(cumulative, cumulative[end] - max_tokens, side="left"))
    return min(end - 1, max(end - max_frames, by_tokens))


def shard_sizes(tokens: np.ndarray, max_tokens: int, max_frames: int | None = None) -> list[int]:
    """Frames per shard: the fewest contiguous shards of at most ``max_tokens`` tokens and
    ``max_frames`` frames (a frame above the token cap alone in its shard), each cut placed where
    the running token sum is closest to its share of the total among the cuts that keep the
    shards before and after it within the caps."""
    frame_count = len(tokens)
    if frame_count == 0:
        return []
    max_frames = max_frames or frame_count
    cumulative = np.zeros(frame_count + 1, dtype=np.int64)
    np.cumsum(tokens, dtype=np.int64, out=cumulative[1:])
    # the earliest cut from which the last m shards can hold the rest, m = 0, 1, ... (greedy from the end)
    earliest = [frame_count]
    while earliest[-1] > 0:
        earliest.append(_earliest_start(cumulative, max_tokens, max_frames, earliest[-1]))
    count = len(earliest) - 1
    total = int(cumulative[-1])
    cuts = [0]
    for index in range(1, count):
        low = max(cuts[-1] + 1, earliest[count - index])
        high = _greedy_ends(cumulative, max_tokens, max_frames, cuts[-1])
        target = index * total  # compared with cumulative * count, to stay in integers
        above = int(np.searchsorted(cumulative, -(-target // count)))
        candidates = [min(max(cut, low), high) for cut in (above - 1, above)]
        cuts.append(min(candidates, key=lambda cut: (abs(int(cumulative[cut]) * count - target), cut)))
    cuts.append(frame_count)
    return [end - start for start, end in zip(cuts, cuts[1:])]


def _line_runs(source: BinaryIO, line_counts: Iterable[int]) -> Iterator[tuple[int, bytes]]:
    """(run index, bytes) that together are the file from its start cut into runs of the given
    numbers of lines; a run may come in several pieces, in order."""
    source.seek(0)
    counts = iter(line_counts)
    run, remaining = 0, next(counts, 0)
    if remaining == 0:
        return
    while data := source.read(COPY_BLOCK):
        line_ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        start = used = 0
        while remaining <= len(line_ends) - used:
            end = int(line_ends[used + remaining - 1]) + 1
            yield run, data[start:end]
            start, used = end, used + remaining
            run, remaining = run + 1, next(counts, 0)
            if remaining == 0:
                return
        remaining -= len(line_ends) - used
        if start < len(data):
            yield run, data[start:]


def _frame_ids(protein_lines: bytes) -> list[str]:
    """The frame IDs of whole frame records of a protein spool (header lines ">id", then the protein)."""
    return [header[1:] for header in protein_lines.decode("utf-8").split("\n")[0:-1:2]]


def write_shards(spool: FrameSpool, sizes: list[int], temporary_paths: list[tuple[Path, Path]]) -> list[tuple[str, str, str]]:
    """Copy the spooled frames into the shards' (.fna, .faa) temporary paths; return each shard's
    (ids_sha256, first ID, last ID)."""
    lines = [2 * size for size in sizes]
    for run, data in _grouped(_line_runs(spool.nucleotides, lines)):
        with open(temporary_paths[run][0], "wb") as target:
            target.writelines(data)
    described = []
    for run, data in _grouped(_line_runs(spool.proteins, lines)):
        digest = FrameIdDigest()
        first_id = last_id = ""
        tail = b""  # a protein record cut by a read, completed by the next piece
        with open(temporary_paths[run][1], "wb") as target:
            for piece in data:
                target.write(piece)
                piece = tail + piece
                cut = _record_end(piece)
                tail = piece[cut:]
                ids = _frame_ids(piece[:cut])
                digest.update(ids)
                if ids:
                    first_id, last_id = first_id or ids[0], ids[-1]
        described.append((digest.hexdigest(), first_id, last_id))
    return described


def _record_end(data: bytes) -> int:
    """Where the last whole two-line record of ``data`` ends (data starts at a record)."""
    line_ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    whole = len(line_ends) // 2 * 2
    return int(line_ends[whole - 1]) + 1 if whole else 0


def _grouped(pieces: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, Iterator[bytes]]]:
    for run, group in itertools.groupby(pieces, key=lambda item: item[0]):
        yield run, (data for _, data in group)


# ---------------------------------------------------------------- the stage

@dataclass(frozen=True)
class Summary:
    records: int
    bases: int
    frames: int
    tokens: int
    shards: int


def check_paths(path: str | Path, prefix: str) -> None:
    """Refuse a missing or non-file input and an output prefix that cannot name files, before any work."""
    if not Path(path).exists():
        raise InputError(path, "no such file")
    if not Path(path).is_file():
        raise InputError(path, "not a regular file")
    folder = Path(prefix).parent
    if prefix.endswith(os.sep) or Path(prefix).is_dir():
        raise InputError(prefix, "the output prefix is a folder; give a folder and a file name stem, e.g. out/sample")
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InputError(prefix, f"the output folder cannot be made: {parent} is a file")
            break


@contextlib.contextmanager
def _renamed_at_exit(path: str, renamed: list[Path]) -> Iterator[Path]:
    """A temporary path that becomes ``path`` when the block ends well; then added to ``renamed``."""
    with atomic_path(path) as temporary:
        yield temporary
    renamed.append(Path(path))


def prepare(
    path: str | Path, chunk_size: int, prefix: str, *, shard_tokens: int = DEFAULT_SHARD_TOKENS,
    shard_frames: int | None = None, rename_duplicates: bool = False, skip_invalid: bool = False, min_length: int = DEFAULT_MIN_LENGTH,
) -> Summary:
    """Write the frame shards P.NNNN.fna/.faa, P.shards.tsv and P.sequences.tsv for ``path``."""
    check_paths(path, prefix)
    folder = Path(prefix).parent
    folder.mkdir(parents=True, exist_ok=True)
    renamed: list[Path] = []
    try:
        with contextlib.ExitStack() as outputs:
            # renamed in the reverse order of entering: the shards, then P.sequences.tsv, P.shards.tsv last
            manifest = outputs.enter_context(_renamed_at_exit(prefix + SHARDS_SUFFIX, renamed))
            sequences = outputs.enter_context(_renamed_at_exit(prefix + SEQUENCES_SUFFIX, renamed))
            nucleotides = outputs.enter_context(tempfile.TemporaryFile(dir=folder, prefix=f".{Path(prefix).name}.spool"))
            proteins = outputs.enter_context(tempfile.TemporaryFile(dir=folder, prefix=f".{Path(prefix).name}.spool"))
            spool = FrameSpool(nucleotides, proteins, chunk_size)
            with open(sequences, "w", encoding="utf-8", newline="\n") as rows:
                rows.write(tsv_line(SEQUENCE_COLUMNS))
                counts = translate_fasta(
                    path, chunk_size, SequenceIds(path, rename_duplicates), skip_invalid, min_length, spool, rows
                )
            if counts.records == 0:
                log.warning("%s holds no sequences: writing empty outputs", path)
            if counts.invalid:
                log.warning("%s: %d of %d records are invalid and were skipped", path, counts.invalid, counts.records)
            if counts.too_short:
                log.warning(
                    "%s: %d of %d records are shorter than the minimum length, %d bp, and were not scored",
                    path, counts.too_short, counts.records, min_length,
                )
            if counts.rna:
                log.warning("%s: %d records are RNA (U for T): U read as T for translation and embedding", path, counts.rna)
            tokens = np.frombuffer(spool.tokens, dtype=spool.tokens.typecode)
            sizes = shard_sizes(tokens, shard_tokens, shard_frames)
            names = [shard_name(prefix, number) for number in range(1, len(sizes) + 1)]
            shard_paths = [
                tuple(outputs.enter_context(_renamed_at_exit(name + suffix, renamed)) for suffix in (".fna", ".faa"))
                for name in names
            ]
            described = write_shards(spool, sizes, shard_paths)
            bounds = np.cumsum([0, *sizes])
            with open(manifest, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(tsv_line(SHARD_COLUMNS))
                for name, size, start, (digest, first_id, last_id) in zip(names, sizes, bounds.tolist(), described):
                    shard_tokens_sum = int(tokens[start : start + size].sum(dtype=np.int64))
                    handle.write(tsv_line((Path(name).name, size, shard_tokens_sum, first_id, last_id, digest)))
    except BaseException:
        for done in renamed:  # a set is whole or absent: undo the renames before the failure
            done.unlink(missing_ok=True)
        raise
    return Summary(counts.records, counts.bases, len(tokens), int(tokens.sum(dtype=np.int64)), len(sizes))
