"""Chunking and six-frame translation exactly as the original VirNucPro, vectorised with numpy.

The original (``split_fasta_chunk`` then ``identify_seq`` on each upper-cased chunk) translates
every chunk codon by codon in Python. Here each batch of sequences is translated once per strand
at every position (bytes.translate over codon indices); a chunk's frame is a stride-3 slice of
that translation, and binary searches over the positions of stop and ambiguous codons decide
which frames to keep without building any string. Only kept frames are turned into strings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

import numpy as np

from .contracts import frame_suffix

_TCAG_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
STANDARD_CODE = {
    "".join(codon): amino for codon, amino in zip(itertools.product("TCAG", repeat=3), _TCAG_AMINO_ACIDS)
}
# Only ACGT is complemented, so IUPAC codes stay as they are in reverse frames (as the original).
COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")

_BASES = "ACGT"
_NOT_ACGT = 4  # base code of every other letter
_GAP = "-"  # translation of a codon holding a letter other than ACGT: dropped from proteins
_STOP = "*"


def _byte_table(mapping: dict[int, str], default: str) -> bytes:
    return bytes(ord(mapping.get(value, default)) for value in range(256))


def _codon_tables() -> tuple[bytes, bytes, bytes]:
    """bytes.translate tables: letter -> base code (0..4); codon index 25*b0 + 5*b1 + b2 -> amino
    acid, read forward and read as its reverse complement."""
    base_code = _byte_table({ord(base): chr(code) for code, base in enumerate(_BASES)}, chr(_NOT_ACGT))
    forward: dict[int, str] = {}
    reverse: dict[int, str] = {}
    for b0, b1, b2 in itertools.product(range(4), repeat=3):
        codon = _BASES[b0] + _BASES[b1] + _BASES[b2]
        forward[25 * b0 + 5 * b1 + b2] = STANDARD_CODE[codon]
        reverse[25 * b0 + 5 * b1 + b2] = STANDARD_CODE[codon.translate(COMPLEMENT)[::-1]]
    return base_code, _byte_table(forward, _GAP), _byte_table(reverse, _GAP)


_BASE_CODE, _FORWARD_AMINO, _REVERSE_AMINO = _codon_tables()


def chunk_bounds(length: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each chunk of a sequence, as the original ``split_fasta_chunk``.

    The original shifts chunk j+1 back by b[j] from j*k, with b = [lo+1]*need + [lo]*(n-1-need)
    + [0] (a negative count gives no items); only b[0..n-2] matter, which gives the closed form
    start_j = j*(k - lo) - min(j, need).
    """
    count = -(-length // chunk_size)
    repeat = count * chunk_size - length
    per_chunk = repeat // count if count else 0
    need = repeat - per_chunk * (count - 1)
    index = np.arange(count, dtype=np.int64)
    starts = index * (chunk_size - per_chunk) - np.minimum(index, need)
    return starts, np.minimum(starts + chunk_size, length)


def _count_in_frames(amino: bytes, letter: str, first: np.ndarray, codon_counts: np.ndarray) -> np.ndarray:
    """How many codons translate to ``letter`` at positions first, first+3, ... (codon_counts of them).

    Keys 0..3*rows number the positions phase by phase (position 3r + phase has key
    phase*rows + r), so a frame's codons have consecutive keys and its count is the difference
    of two binary searches in the sorted keys of the letter's positions.
    """
    rows = -(-len(amino) // 3)
    letters = np.frombuffer(amino + bytes(3 * rows - len(amino)), dtype=np.uint8)
    keys = np.flatnonzero((letters == ord(letter)).reshape(rows, 3).T)
    low = first % 3 * rows + first // 3
    return np.searchsorted(keys, low + codon_counts) - np.searchsorted(keys, low)


class TranslatedChunks:
    """The six frames of chunks [starts[i], ends[i]) of an upper-cased IUPAC text, and which are kept.

    ``kept_chunk``, ``kept_frame`` (index into FRAME_LABELS) and ``protein_lengths`` list the kept
    frames in output order: chunk by chunk, F1..F3 then R1..R3.
    """

    def __init__(self, text: str, starts: np.ndarray, ends: np.ndarray) -> None:
        self.text = text
        width = len(text)
        codes = text.encode("ascii").translate(_BASE_CODE)
        bases = np.frombuffer(codes, dtype=np.uint8)
        codons = (bases[:-2] * 25 + bases[1:-1] * 5 + bases[2:]).tobytes()
        # Reverse frames are read on the forward strand: reverse_amino[p] translates the reverse
        # complement of the codon at p, and the reverse strand's codons run right to left.
        self._aminos = (codons.translate(_FORWARD_AMINO), codons.translate(_REVERSE_AMINO))

        offsets = np.arange(3, dtype=np.int64)
        codon_counts = np.maximum((ends - starts)[:, None] - offsets, 0) // 3
        forward_first = starts[:, None] + offsets
        reverse_first = ends[:, None] - offsets - 3 * codon_counts
        codon_counts = np.hstack([codon_counts, codon_counts])
        first_codons = np.hstack([forward_first, reverse_first])
        stops = np.hstack([
            _count_in_frames(amino, _STOP, first_codons[:, strand], codon_counts[:, strand])
            for amino, strand in zip(self._aminos, (slice(0, 3), slice(3, 6)))
        ])
        protein_lengths = codon_counts
        has_gaps = np.zeros(codon_counts.shape, dtype=bool)
        if bytes([_NOT_ACGT]) in codes:
            gaps = np.hstack([
                _count_in_frames(amino, _GAP, first_codons[:, strand], codon_counts[:, strand])
                for amino, strand in zip(self._aminos, (slice(0, 3), slice(3, 6)))
            ])
            protein_lengths = codon_counts - gaps
            has_gaps = gaps > 0
        kept = np.flatnonzero(((stops == 0) & (protein_lengths > 0)).ravel())
        self.kept_chunk, self.kept_frame = np.divmod(kept, 6)
        self.protein_lengths = protein_lengths.ravel()[kept]
        self._first_codons = first_codons.ravel()[kept]
        self._codon_counts = codon_counts.ravel()[kept]
        self._has_gaps = has_gaps.ravel()[kept]
        # the frame's nucleotide slice, on its own strand (reverse: in the reverse complement)
        offset = self.kept_frame % 3
        reverse = self.kept_frame >= 3
        chunk_starts, chunk_ends = starts[self.kept_chunk], ends[self.kept_chunk]
        self._nucleotide_starts = np.where(reverse, width - chunk_ends, chunk_starts) + offset
        strand_ends = np.where(reverse, width - chunk_starts, chunk_ends)
        self._nucleotide_ends = np.minimum(self._nucleotide_starts + 1 + 3 * self.protein_lengths, strand_ends)

    def sequences(self) -> Iterator[tuple[str, str]]:
        """(nucleotide, protein) of each kept frame, in order.

        The nucleotide of frame i is chunk[i-1 : i + 3*len(protein)] on its strand: one base
        longer than the codons, an off-by-one the published classifiers were trained with.
        """
        texts = (self.text, self.text.translate(COMPLEMENT)[::-1])
        aminos = tuple(amino.decode("ascii") for amino in self._aminos)
        columns = (
            (self.kept_frame >= 3).tolist(),
            self._first_codons.tolist(),
            self._codon_counts.tolist(),
            self._has_gaps.tolist(),
            self._nucleotide_starts.tolist(),
            self._nucleotide_ends.tolist(),
        )
        for reverse, first, codon_count, has_gaps, start, end in zip(*columns):
            protein = aminos[reverse][first : first + 3 * codon_count : 3]
            if reverse:
                protein = protein[::-1]
            if has_gaps:
                protein = protein.replace(_GAP, "")
            yield texts[reverse][start:end], protein


T = TypeVar("T")


def batch_chunk_bounds(lengths: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``chunk_bounds`` of many sequences at once: (sequence index, start, end) of every chunk,
    sequence by sequence, with starts and ends within each sequence."""
    counts = -(-lengths // chunk_size)
    repeat = counts * chunk_size - lengths
    per_chunk = repeat // np.maximum(counts, 1)
    need = repeat - per_chunk * (counts - 1)
    owner = np.repeat(np.arange(len(lengths)), counts)
    index = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = index * (chunk_size - per_chunk[owner]) - np.minimum(index, need[owner])
    return owner, starts, np.minimum(starts + chunk_size, lengths[owner])


class _Batch:
    """Pieces gathered for one translation: a piece is a whole sequence, or for a long one a run
    of its chunks (those come with their bounds; whole sequences get theirs in one numpy pass)."""

    def __init__(self) -> None:
        self.tags: list = []
        self.texts: list[str] = []
        self.first_chunks: list[int] = []  # 1-based number of each piece's first chunk
        self.last: list[bool] = []
        self.bounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # piece -> chunk bounds, for runs
        self.size = 0

    def add(self, tag: object, text: str, first_chunk: int, last: bool, bounds: tuple[np.ndarray, np.ndarray] | None) -> None:
        if bounds is not None:
            self.bounds[len(self.tags)] = bounds
        self.tags.append(tag)
        self.texts.append(text)
        self.first_chunks.append(first_chunk)
        self.last.append(last)
        self.size += len(text)

    def chunk_bounds(self, chunk_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(piece index, start, end) of every chunk in piece order, the bounds within the joined texts."""
        lengths = np.fromiter(map(len, self.texts), dtype=np.int64, count=len(self.texts))
        whole = lengths.copy()
        whole[list(self.bounds)] = 0  # runs of long sequences bring their own bounds
        owner, starts, ends = batch_chunk_bounds(whole, chunk_size)
        if self.bounds:
            runs = [(np.full(len(run[0]), piece), *run) for piece, run in self.bounds.items()]
            owner, starts, ends = (np.concatenate([column, *parts]) for column, *parts in zip((owner, starts, ends), *runs))
            order = np.argsort(owner, kind="stable")
            owner, starts, ends = owner[order], starts[order], ends[order]
        offsets = np.cumsum(lengths) - lengths
        return owner, starts + offsets[owner], ends + offsets[owner]


@dataclass(frozen=True)
class FrameBatch:
    """The kept frames of a batch of pieces, in output order (piece by piece, chunk by chunk,
    F1..F3 then R1..R3). A piece is a whole sequence or, for a long one, a run of its chunks:
    its pieces come in order, in one batch or more, the final one with ``last`` set."""

    tags: list  # of each piece
    chunks: np.ndarray  # chunks of each piece
    last: list[bool]  # whether the piece ends its sequence
    frame_pieces: np.ndarray  # index into tags of each kept frame
    chunk_numbers: np.ndarray  # 1-based number of each kept frame's chunk in its sequence
    frame_labels: np.ndarray  # index into FRAME_LABELS of each kept frame
    protein_lengths: np.ndarray
    translated: TranslatedChunks

    def frame_counts(self) -> np.ndarray:
        """Kept frames of each piece."""
        return np.bincount(self.frame_pieces, minlength=len(self.tags))

    def suffixes(self) -> list[str]:
        """What each kept frame adds to its sequence ID: ``_chunk_{j}{F|R}{1..3}``."""
        return list(map(frame_suffix, self.chunk_numbers.tolist(), self.frame_labels.tolist()))

    def sequences(self) -> Iterator[tuple[str, str]]:
        """(nucleotide, protein) of each kept frame."""
        return self.translated.sequences()


def _translate(batch: _Batch, chunk_size: int) -> FrameBatch:
    owner, starts, ends = batch.chunk_bounds(chunk_size)
    translated = TranslatedChunks("".join(batch.texts), starts, ends)
    chunks = np.bincount(owner, minlength=len(batch.tags))
    first_chunk_index = np.cumsum(chunks) - chunks  # of each piece, in the batch's chunk order
    frame_pieces = owner[translated.kept_chunk]
    first_chunks = np.asarray(batch.first_chunks, dtype=np.int64)
    chunk_numbers = translated.kept_chunk - first_chunk_index[frame_pieces] + first_chunks[frame_pieces]
    return FrameBatch(
        batch.tags, chunks, batch.last, frame_pieces, chunk_numbers, translated.kept_frame, translated.protein_lengths, translated
    )


def translate_batches(items: Iterable[tuple[T, str]], chunk_size: int, batch_bases: int = 1 << 20) -> Iterator[FrameBatch]:
    """Chunk and six-frame translate each (tag, sequence), in batches of about ``batch_bases``.

    Short sequences share the numpy work of a batch; a sequence longer than ``batch_bases`` is
    cut into runs of chunks of about that size, so that no batch holds all its frames. Every
    sequence gives at least one piece (an empty one a piece of no chunks). Each piece is
    upper-cased on its own, as the original upper-cases each chunk.
    """
    batch = _Batch()
    for tag, sequence in items:
        if len(sequence) <= batch_bases:
            batch.add(tag, sequence.upper(), 1, True, None)
        else:
            starts, ends = chunk_bounds(len(sequence), chunk_size)
            group = max(1, batch_bases // chunk_size)
            for first in range(0, len(starts), group):
                stop = min(first + group, len(starts))
                begin, end = int(starts[first]), int(ends[stop - 1])
                bounds = (starts[first:stop] - begin, ends[first:stop] - begin)
                batch.add(tag, sequence[begin:end].upper(), first + 1, stop == len(starts), bounds)
                if batch.size >= batch_bases:
                    yield _translate(batch, chunk_size)
                    batch = _Batch()
        if batch.size >= batch_bases:
            yield _translate(batch, chunk_size)
            batch = _Batch()
    if batch.tags:
        yield _translate(batch, chunk_size)
