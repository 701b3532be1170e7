"""The PREPARE stage: validate the input FASTA, chunk and six-frame translate it, write shards.

One streaming pass reads the FASTA, validates each record, writes its row of
``P.sequences.tsv`` and appends its kept frames to anonymous spool files (nothing is left of
them however the process ends): the frames' records, and a 16-byte key of each frame's
nucleotide and protein sequence; in memory stay each frame's ESM token count and length and a
16-byte key of each sequence ID. The keys then number the distinct sequences of each kind in
order of first occurrence (sorted in bounded partitions), so that each model embeds each
distinct sequence of the sample once: the shards of distinct nucleotide and protein sequences
(named after the first frame with each) are the spooled records of first occurrences, and the
frame shards list every frame with the numbers of its two sequences. Every output is written
under a temporary name and renamed into place once all are complete, P.shards.tsv (the set's
manifest) last. A bad input fails during the pass, before any output exists. Memory grows by
about 16 bytes per input record (its ID key; twice that while two levels of keys merge) and 14
bytes per frame (18 while the second kind is numbered), plus one partition of keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import os
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterator, Sequence

import numpy as np

from .atomic import atomic_path
from .contracts import (
    DNABERT, EMBEDDING_KINDS, ESM, FRAME_COLUMNS, FRAMES, INVALID, NO_OPEN_FRAME, PENDING, SEQUENCE_COLUMNS, SEQUENCES_SUFFIX,
    SHARD_COLUMNS, SHARD_KINDS, SHARD_SUFFIXES, SHARDS_SUFFIX, TOO_SHORT, FrameIdDigest, Shard, dnabert_shard_tokens, esm_tokens,
    record_digest, shard_name, shard_row, tsv_line,
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
    """Kept frames appended in order to a nucleotide and a protein file, two lines each; the
    16-byte BLAKE2b key of each frame's nucleotide and protein sequence to two key files; and
    each frame's ESM token count and nucleotide length (uint16 while a chunk fits, as for any
    usual chunk size). A false match of two keys among 10^9 sequences has a chance of about 10^-21."""

    def __init__(self, files: Sequence[BinaryIO], chunk_size: int) -> None:
        self.nucleotides, self.proteins, self.nucleotide_keys, self.protein_keys = files
        typecode = "H" if chunk_size + 1 <= np.iinfo(np.uint16).max else "I"
        self.tokens = array(typecode)
        self.bases = array(typecode)

    @property
    def count(self) -> int:
        return len(self.tokens)

    def add(self, batch: FrameBatch, sequence_ids: list[str]) -> None:
        ids = [sequence_ids[piece] + suffix for piece, suffix in zip(batch.frame_pieces.tolist(), batch.suffixes())]
        nucleotides, proteins = zip(*batch.sequences()) if ids else ((), ())
        self.nucleotides.write("".join(map(format_record, ids, nucleotides)).encode())
        self.proteins.write("".join(map(format_record, ids, proteins)).encode())
        blake2b = hashlib.blake2b
        for sequences, keys in ((nucleotides, self.nucleotide_keys), (proteins, self.protein_keys)):
            keys.write(b"".join(blake2b(sequence.encode("ascii"), digest_size=KEY_BYTES).digest() for sequence in sequences))
        self.tokens.frombytes(esm_tokens(batch.protein_lengths).astype(self.tokens.typecode).tobytes())
        self.bases.frombytes(np.fromiter(map(len, nucleotides), dtype=self.bases.typecode, count=len(ids)).tobytes())


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


# ---------------------------------------------------------------- each distinct sequence once

KEY_BYTES = 16
PARTITION_FRAMES = 1 << 20  # keys sorted in memory at once: about 80 bytes each while sorted
_KEY_RECORD = np.dtype([("high", "<u8"), ("low", "<u8"), ("frame", "<u4")])


def _key_partitions(keys: BinaryIO, count: int, bits: int, folder: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frames, first 64 bits, last 64 bits) of the spooled keys, frames in input order, in 2**bits
    partitions by their leading bits: every copy of a key is in the same partition."""
    keys.flush()
    keys.seek(0)
    if bits == 0:
        pairs = np.frombuffer(keys.read(count * KEY_BYTES), dtype="<u8").reshape(-1, 2)
        yield np.arange(count, dtype=np.uint32), pairs[:, 0].copy(), pairs[:, 1].copy()
        return
    with contextlib.ExitStack() as stack:
        parts = [stack.enter_context(tempfile.TemporaryFile(dir=folder, prefix=".keys")) for _ in range(1 << bits)]
        for start in range(0, count, PARTITION_FRAMES):
            pairs = np.frombuffer(keys.read(min(PARTITION_FRAMES, count - start) * KEY_BYTES), dtype="<u8").reshape(-1, 2)
            records = np.empty(len(pairs), dtype=_KEY_RECORD)
            records["high"], records["low"] = pairs[:, 0], pairs[:, 1]
            records["frame"] = np.arange(start, start + len(pairs), dtype=np.uint32)
            partition = (records["high"] >> np.uint64(64 - bits)).astype(np.intp)
            order = np.argsort(partition, kind="stable")
            bounds = np.searchsorted(partition[order], np.arange((1 << bits) + 1))
            for part, low, high in zip(parts, bounds[:-1], bounds[1:]):
                part.write(records[order[low:high]].tobytes())
        for part in parts:
            part.seek(0)
            records = np.frombuffer(part.read(), dtype=_KEY_RECORD)
            yield records["frame"].copy(), records["high"].copy(), records["low"].copy()


def sequence_indices(keys: BinaryIO, count: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct sequences in order of first occurrence, from the ``count`` keys spooled
    to ``keys`` (one per frame): each frame's sequence number (uint32) and whether the frame is
    the first with its sequence. The keys are sorted in partitions of about PARTITION_FRAMES, so
    memory holds 9 bytes per frame and one partition (4 more per frame while numbering)."""
    if count >= np.iinfo(np.uint32).max:
        raise InputError(folder, f"{count} frames: more than one run can number (split the input)")
    first = np.empty(count, dtype=np.uint32)  # the first frame with each frame's sequence
    bits = max(0, math.ceil(math.log2(max(count, 1) / PARTITION_FRAMES)))
    for frames, high, low in _key_partitions(keys, count, bits, folder):
        order = np.lexsort((low, high))  # stable: the frames of a key stay in input order
        high, low, frames = high[order], low[order], frames[order]
        starts = np.ones(len(frames), dtype=bool)
        starts[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
        first[frames] = frames[starts][np.cumsum(starts) - 1]
    is_first = np.empty(count, dtype=bool)
    number = np.empty(count, dtype=np.uint32)
    seen = 0
    for start in range(0, count, PARTITION_FRAMES):
        stop = min(start + PARTITION_FRAMES, count)
        block = is_first[start:stop]
        np.equal(first[start:stop], np.arange(start, stop, dtype=np.uint32), out=block)
        number[start:stop] = np.cumsum(block, dtype=np.uint32) + np.uint32(seen) - np.uint32(1)
        seen += int(block.sum())
    for start in range(0, count, PARTITION_FRAMES):
        first[start : start + PARTITION_FRAMES] = number[first[start : start + PARTITION_FRAMES]]
    return first, is_first


# ---------------------------------------------------------------- shards

def _record_blocks(spool: BinaryIO) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A spool from its start in blocks of whole two-line records: (bytes, where each record starts)."""
    spool.flush()
    spool.seek(0)
    tail = b""
    while data := spool.read(COPY_BLOCK):
        data = tail + data
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        whole = len(newlines) // 2 * 2
        if whole == 0:
            tail = data
            continue
        cut = int(newlines[whole - 1]) + 1
        ends = newlines[1:whole:2] + 1
        yield np.frombuffer(data, dtype=np.uint8, count=cut), np.concatenate([[0], ends[:-1]])
        tail = data[cut:]


def _ragged(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bytes:
    """The byte ranges [starts[i], ends[i]) of ``data``, joined."""
    lengths = ends - starts
    if len(lengths) and int(starts[-1]) - int(starts[0]) == int(lengths[:-1].sum()):  # adjacent: one slice
        return data[int(starts[0]) : int(ends[-1])].tobytes()
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return data[offsets + np.arange(int(lengths.sum()))].tobytes()


class ShardWriter:
    """Consecutive records cut into shards of the given sizes, each written to its temporary
    path after ``header``; ``described`` gets the digest, first and last ID of each shard."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int], header: bytes = b"") -> None:
        self.paths, self.sizes, self.header = paths, sizes, header
        self.described: list[tuple[str, str, str]] = []
        self._left = 0
        self._handle: IO[bytes] | None = None

    def write(self, ids: list[str], records: bytes, record_ends: np.ndarray) -> None:
        """Add records (``records``, the i-th ending at byte ``record_ends[i]``) of frames ``ids``."""
        done = 0
        while done < len(ids):
            if self._left == 0:
                self._next()
            stop = done + min(self._left, len(ids) - done)
            self._handle.write(records[int(record_ends[done - 1]) if done else 0 : int(record_ends[stop - 1])])
            self._digest.update_lines(("\n".join(ids[done:stop]) + "\n").encode("utf-8"))
            self._first = self._first or ids[done]
            self._last = ids[stop - 1]
            self._left -= stop - done
            done = stop

    def _next(self) -> None:
        self.close()
        self._handle = open(self.paths[len(self.described)], "wb")
        self._handle.write(self.header)
        self._left = self.sizes[len(self.described)]
        self._digest, self._first, self._last = FrameIdDigest(), "", ""

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.described.append((self._digest.hexdigest(), self._first, self._last))


def _byte_ends(texts: list[str], joined: bytes) -> np.ndarray:
    """Where each of ``texts`` ends in ``joined``, their UTF-8 encoding joined."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    if len(joined) != int(lengths.sum()):  # not all ASCII
        lengths = np.fromiter((len(text.encode("utf-8")) for text in texts), dtype=np.int64, count=len(texts))
    return np.cumsum(lengths)


def copy_spool(spool: BinaryIO, is_first: np.ndarray, writer: ShardWriter, frame_ids: Callable[[int, list[str]], None] | None = None) -> None:
    """Copy the spooled records of the frames that are first with their sequence into
    ``writer``'s shards; pass ``frame_ids`` the number of each block's first frame and the IDs
    of all its frames."""
    frame = 0
    for data, starts in _record_blocks(spool):
        ends = np.append(starts[1:], len(data))
        ids = [header[1:] for header in data.tobytes().decode("utf-8").split("\n")[0:-1:2]]
        if frame_ids is not None:
            frame_ids(frame, ids)
        kept = np.flatnonzero(is_first[frame : frame + len(ids)])
        if len(kept):
            records = _ragged(data, starts[kept], ends[kept])
            writer.write([ids[index] for index in kept.tolist()], records, np.cumsum(ends[kept] - starts[kept]))
        frame += len(ids)
    writer.close()


class FrameRows:
    """Writes the frame shards from the frames' IDs: per frame its ID and the numbers of its
    nucleotide and protein sequences (FRAME_COLUMNS)."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int], dnabert: np.ndarray, esm: np.ndarray) -> None:
        self.writer = ShardWriter(paths, sizes, tsv_line(FRAME_COLUMNS).encode())
        self.dnabert, self.esm = dnabert, esm

    def __call__(self, frame: int, ids: list[str]) -> None:
        stop = frame + len(ids)
        rows = list(map("{}\t{}\t{}\n".format, ids, self.dnabert[frame:stop].tolist(), self.esm[frame:stop].tolist()))
        joined = "".join(rows).encode("utf-8")
        self.writer.write(ids, joined, _byte_ends(rows, joined))


# ---------------------------------------------------------------- the stage

@dataclass(frozen=True)
class Summary:
    records: int
    bases: int
    frames: int
    tokens: int
    shards: dict[str, int]  # per kind (SHARD_KINDS)
    distinct: dict[str, int]  # distinct sequences per embedding kind: what each model embeds


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
    """Write P.sequences.tsv, the frame shards P.NNNN.frames.tsv, the shards of distinct
    sequences P.dnabert.NNNN.fna and P.esm.NNNN.faa, and P.shards.tsv for ``path``."""
    check_paths(path, prefix)
    folder = Path(prefix).parent
    folder.mkdir(parents=True, exist_ok=True)
    renamed: list[Path] = []
    try:
        with contextlib.ExitStack() as outputs:
            # renamed in the reverse order of entering: the shards, then P.sequences.tsv, P.shards.tsv last
            manifest = outputs.enter_context(_renamed_at_exit(prefix + SHARDS_SUFFIX, renamed))
            sequences = outputs.enter_context(_renamed_at_exit(prefix + SEQUENCES_SUFFIX, renamed))
            spools = [outputs.enter_context(tempfile.TemporaryFile(dir=folder, prefix=f".{Path(prefix).name}.spool")) for _ in range(4)]
            spool = FrameSpool(spools, chunk_size)
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
            numbers, is_first = {}, {}
            for kind, keys in ((DNABERT, spool.nucleotide_keys), (ESM, spool.protein_keys)):
                numbers[kind], is_first[kind] = sequence_indices(keys, spool.count, folder)
            bases = np.frombuffer(spool.bases, dtype=spool.bases.typecode)
            weights = {FRAMES: tokens, DNABERT: dnabert_shard_tokens(bases[is_first[DNABERT]]), ESM: tokens[is_first[ESM]]}
            sizes = {kind: shard_sizes(weights[kind], shard_tokens, shard_frames) for kind in SHARD_KINDS}
            paths = {
                kind: [outputs.enter_context(_renamed_at_exit(shard_name(prefix, kind, number) + SHARD_SUFFIXES[kind], renamed))
                       for number in range(1, len(sizes[kind]) + 1)]
                for kind in SHARD_KINDS
            }  # fmt: skip
            writers = {kind: ShardWriter(paths[kind], sizes[kind]) for kind in EMBEDDING_KINDS}
            frame_rows = FrameRows(paths[FRAMES], sizes[FRAMES], numbers[DNABERT], numbers[ESM])
            copy_spool(spool.nucleotides, is_first[DNABERT], writers[DNABERT])
            copy_spool(spool.proteins, is_first[ESM], writers[ESM], frame_rows)
            frame_rows.writer.close()
            described = {DNABERT: writers[DNABERT].described, ESM: writers[ESM].described, FRAMES: frame_rows.writer.described}
            with open(manifest, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(tsv_line(SHARD_COLUMNS))
                for kind in SHARD_KINDS:
                    for shard in manifest_rows(prefix, kind, sizes[kind], weights[kind], described[kind], is_first):
                        handle.write(shard_row(shard))
    except BaseException:
        for done in renamed:  # a set is whole or absent: undo the renames before the failure
            done.unlink(missing_ok=True)
        raise
    return Summary(
        counts.records, counts.bases, spool.count, int(tokens.sum(dtype=np.int64)), {kind: len(sizes[kind]) for kind in SHARD_KINDS},
        {kind: int(is_first[kind].sum()) for kind in EMBEDDING_KINDS},
    )


def manifest_rows(
    prefix: str, kind: str, sizes: list[int], weights: np.ndarray, described: list[tuple[str, str, str]], is_first: dict[str, np.ndarray]
) -> Iterator[Shard]:
    """The P.shards.tsv rows of one kind of shard."""
    if not sizes:
        return
    starts = np.cumsum([0, *sizes[:-1]])
    shard_tokens = np.add.reduceat(weights, starts, dtype=np.int64).tolist()
    if kind == FRAMES:  # the distinct sequences seen before each frame shard
        before = {
            model: np.cumsum(np.concatenate([[0], np.add.reduceat(is_first[model], starts, dtype=np.int64)[:-1]])).tolist()
            for model in EMBEDDING_KINDS
        }
    else:
        before = {model: starts.tolist() if model == kind else [None] * len(sizes) for model in EMBEDDING_KINDS}
    for number, (size, tokens, (digest, first_id, last_id)) in enumerate(zip(sizes, shard_tokens, described)):
        name = Path(shard_name(prefix, kind, number + 1)).name
        yield Shard(name, kind, size, tokens, first_id, last_id, digest, before[DNABERT][number], before[ESM][number])
