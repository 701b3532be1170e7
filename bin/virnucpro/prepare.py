"""The PREPARE stage: validate the input FASTA, chunk and six-frame translate it, write shards.

One streaming pass reads the FASTA, validates each record, writes its row of
``P.sequences.tsv`` and appends its kept frames to two temporary spool files, remembering only
each frame's token count and record sizes. The shard boundaries follow from the token counts, and
each shard is then a byte range of the spools. A bad input fails during the pass, before any
output exists; memory stays bounded whatever the input size.
"""

from __future__ import annotations

import logging
import tempfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Iterator

import numpy as np

from .atomic import atomic_open
from .contracts import (
    INVALID, NO_OPEN_FRAME, PENDING, SEQUENCE_COLUMNS, SHARD_COLUMNS, SEQUENCES_SUFFIX, SHARDS_SUFFIX, FrameIdDigest,
    esm_tokens, record_digest, shard_name, tsv_line,
)
from .errors import InputError
from .fasta import IUPAC_NUCLEOTIDES, FastaRecord, format_record, nucleotide_problem, read_fasta
from .frames import FrameBlock, translate_sequences

log = logging.getLogger("virnucpro")

SHORTER_THAN_A_CODON = "shorter than one codon"
NO_OPEN_FRAME_REASON = "every frame of every chunk has a stop codon or no complete codon"
_IUPAC_BYTES = "".join(sorted(IUPAC_NUCLEOTIDES)).encode() + "".join(sorted(IUPAC_NUCLEOTIDES)).lower().encode()


def sequence_problem(sequence: str) -> str | None:
    """Why ``sequence`` cannot be chunked, or None (a C-speed check first: almost every sequence is fine)."""
    if sequence and not sequence.encode("utf-8").translate(None, _IUPAC_BYTES):
        return None
    return nucleotide_problem(sequence)


def sequence_status(length: int, frames: int, invalid_reason: str | None) -> tuple[str, str]:
    if invalid_reason is not None:
        return INVALID, invalid_reason
    if frames:
        return PENDING, ""
    return NO_OPEN_FRAME, SHORTER_THAN_A_CODON if length < 3 else NO_OPEN_FRAME_REASON


class SequenceIds:
    """Unique sequence IDs in input order: a repeated ID is an error, or is renamed ``{id}_dup{n}``
    with the smallest n giving a name not used by any earlier record."""

    def __init__(self, path: str | Path, rename_duplicates: bool) -> None:
        self.path = path
        self.rename_duplicates = rename_duplicates
        self._owner: dict[str, int] = {}  # ID -> number of the record holding it
        self._header_lines = array("q", [0])  # by record number, for error messages
        self._next_copy: dict[str, int] = {}  # where the search for a free {id}_dup{n} resumes

    def assign(self, number: int, record: FastaRecord) -> str:
        identifier = record.id
        self._header_lines.append(record.line)
        if identifier in self._owner:
            earlier = self._owner[identifier]
            line = self._header_lines[earlier]
            if not self.rename_duplicates:
                raise InputError(
                    self.path,
                    f"duplicate sequence ID in records {earlier} (line {line}) and {number} (line {record.line}); "
                    "--rename-duplicates renames later ones",
                    identifier,
                )
            copy = self._next_copy.get(record.id, 1)
            while f"{record.id}_dup{copy}" in self._owner:
                copy += 1
            self._next_copy[record.id] = copy + 1
            identifier = f"{record.id}_dup{copy}"
        self._owner[identifier] = number
        return identifier


@dataclass
class FrameSpool:
    """Kept frames appended in order to a nucleotide and a protein file, with the byte size of
    each record and its ESM token count, so that any run of frames is a byte range."""

    nucleotides: BinaryIO
    proteins: BinaryIO
    tokens: array = field(default_factory=lambda: array("q"))
    nucleotide_sizes: array = field(default_factory=lambda: array("q"))
    protein_sizes: array = field(default_factory=lambda: array("q"))

    def add(self, sequence_id: str, block: FrameBlock) -> None:
        if not block.frames:
            return
        # sizes are in bytes: a non-ASCII ID is longer encoded than as text
        extra = len(sequence_id.encode()) - len(sequence_id)
        for handle, sizes, records in (
            (self.nucleotides, self.nucleotide_sizes, [format_record(sequence_id + f.suffix, f.nucleotide) for f in block.frames]),
            (self.proteins, self.protein_sizes, [format_record(sequence_id + f.suffix, f.protein) for f in block.frames]),
        ):
            handle.write("".join(records).encode())
            sizes.extend([len(record) + extra for record in records])
        self.tokens.extend(esm_tokens(block.protein_lengths).tolist())


@dataclass(frozen=True)
class Summary:
    records: int
    bases: int
    frames: int
    tokens: int
    shards: int


@dataclass
class InputCounts:
    records: int = 0
    bases: int = 0
    invalid: int = 0


def _checked_records(path: str | Path, ids: SequenceIds, skip_invalid: bool) -> Iterator[tuple[tuple, str]]:
    """((record number, sequence ID, record, problem), sequence to translate) for each record."""
    for number, record in enumerate(read_fasta(path), start=1):
        sequence_id = ids.assign(number, record)
        problem = sequence_problem(record.sequence)
        if problem is not None and not skip_invalid:
            raise InputError(path, f"record {number} (line {record.line}): {problem}", record.id)
        yield (number, sequence_id, record, problem), "" if problem else record.sequence


def translate_fasta(
    path: str | Path, chunk_size: int, ids: SequenceIds, skip_invalid: bool, spool: FrameSpool, rows: IO[str]
) -> InputCounts:
    """The pass over the FASTA: spool the kept frames and write one P.sequences.tsv row per record."""
    counts = InputCounts()
    chunks = frames = 0
    for (number, sequence_id, record, problem), block in translate_sequences(
        _checked_records(path, ids, skip_invalid), chunk_size, with_sequences=True
    ):
        spool.add(sequence_id, block)
        chunks += block.chunks
        frames += len(block.frames)
        if block.last:
            status, reason = sequence_status(len(record.sequence), frames, problem)
            digest = record_digest(record.header, record.sequence)
            rows.write(tsv_line((number, sequence_id, record.id, len(record.sequence), chunks, frames, status, reason, digest)))
            counts.records = number
            counts.bases += len(record.sequence)
            counts.invalid += problem is not None
            chunks = frames = 0
    return counts


def shard_sizes(tokens: np.ndarray, max_frames: int) -> list[int]:
    """Frames per shard: ceil(frames / max_frames) contiguous shards of at most ``max_frames``
    frames, each cut placed where the running token sum is closest to its share of the total."""
    frame_count = len(tokens)
    if frame_count == 0:
        return []
    count = -(-frame_count // max_frames)
    cumulative = np.concatenate([[0], np.cumsum(tokens, dtype=np.int64)])
    scaled = cumulative * count  # compared with index * total to stay in integers
    total = int(cumulative[-1])
    cuts = [0]
    for index in range(1, count):
        # the remaining shards must still hold the remaining frames, at least one each
        low = max(cuts[-1] + 1, frame_count - (count - index) * max_frames)
        high = min(cuts[-1] + max_frames, frame_count - (count - index))
        target = index * total
        above = int(np.searchsorted(scaled, target))
        candidates = [min(max(cut, low), high) for cut in (above - 1, above)]
        cuts.append(min(candidates, key=lambda cut: (abs(int(scaled[cut]) - target), cut)))
    cuts.append(frame_count)
    return [end - start for start, end in zip(cuts, cuts[1:])]


def _copy_range(source: BinaryIO, start: int, size: int, target: BinaryIO) -> None:
    source.seek(start)
    while size > 0:
        data = source.read(min(size, 1 << 22))
        target.write(data)
        size -= len(data)


def _frame_ids(source: BinaryIO, start: int, size: int) -> Iterator[str]:
    """The IDs of the frame records in a byte range of a spool (each record is two lines)."""
    source.seek(start)
    end = start + size
    while source.tell() < end:
        yield source.readline().decode()[1:-1]
        source.readline()


def write_shards(prefix: str, sizes: list[int], spool: FrameSpool) -> list[tuple]:
    """Cut the spooled frames into shards of the given sizes; return the rows of P.shards.tsv."""
    tokens = np.frombuffer(spool.tokens, dtype=np.int64)
    nucleotide_offsets = np.concatenate([[0], np.cumsum(np.frombuffer(spool.nucleotide_sizes, dtype=np.int64))])
    protein_offsets = np.concatenate([[0], np.cumsum(np.frombuffer(spool.protein_sizes, dtype=np.int64))])
    rows = []
    first = 0
    for number, size in enumerate(sizes, start=1):
        shard = shard_name(prefix, number)
        last = first + size
        for suffix, source, offsets in ((".fna", spool.nucleotides, nucleotide_offsets), (".faa", spool.proteins, protein_offsets)):
            with atomic_open(shard + suffix, "wb") as target:
                _copy_range(source, int(offsets[first]), int(offsets[last] - offsets[first]), target)
        ids = list(_frame_ids(spool.proteins, int(protein_offsets[first]), int(protein_offsets[last] - protein_offsets[first])))
        digest = FrameIdDigest()
        digest.update(ids)
        rows.append((Path(shard).name, size, int(tokens[first:last].sum()), ids[0], ids[-1], digest.hexdigest()))
        first = last
    return rows


def prepare(path: str | Path, chunk_size: int, prefix: str, shard_size: int, rename_duplicates: bool, skip_invalid: bool) -> Summary:
    """Write the frame shards P.NNNN.fna/.faa, P.shards.tsv and P.sequences.tsv for ``path``."""
    if not Path(path).exists():
        raise InputError(path, "no such file")
    if not Path(path).is_file():
        raise InputError(path, "not a regular file")
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    spool_directory = tempfile.TemporaryDirectory(dir=Path(prefix).parent, prefix=f".{Path(prefix).name}.spool")
    with spool_directory as directory, atomic_open(prefix + SEQUENCES_SUFFIX) as rows:
        with open(Path(directory) / "frames.fna", "w+b") as nucleotides, open(Path(directory) / "frames.faa", "w+b") as proteins:
            spool = FrameSpool(nucleotides, proteins)
            rows.write(tsv_line(SEQUENCE_COLUMNS))
            counts = translate_fasta(path, chunk_size, SequenceIds(path, rename_duplicates), skip_invalid, spool, rows)
            if counts.records == 0:
                log.warning("%s holds no sequences: writing empty outputs", path)
            if counts.invalid:
                log.warning("%s: %d of %d records are invalid and were skipped", path, counts.invalid, counts.records)
            nucleotides.flush()
            proteins.flush()
            tokens = np.frombuffer(spool.tokens, dtype=np.int64)
            sizes = shard_sizes(tokens, shard_size)
            shard_rows = write_shards(prefix, sizes, spool)
        with atomic_open(prefix + SHARDS_SUFFIX) as handle:
            for row in [SHARD_COLUMNS, *shard_rows]:
                handle.write(tsv_line(row))
    return Summary(counts.records, counts.bases, len(tokens), int(tokens.sum()), len(sizes))
