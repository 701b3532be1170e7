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
from typing import Iterable, Iterator, NamedTuple, TypeVar

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


class Frame(NamedTuple):
    suffix: str  # appended to the sequence ID: "_chunk_{j}{F|R}{1..3}"
    nucleotide: str
    protein: str


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


@dataclass(frozen=True)
class FrameBlock:
    """The kept frames of consecutive chunks of one sequence (a long sequence comes in several)."""

    chunks: int
    protein_lengths: np.ndarray  # of the kept frames, in output order
    frames: list[Frame]  # empty unless strings were asked for
    last: bool  # the sequence's final block


T = TypeVar("T")


@dataclass
class _Piece:
    tag: object
    text: str
    starts: np.ndarray  # chunk bounds within text
    ends: np.ndarray
    first_chunk: int  # 1-based number of the piece's first chunk in its sequence
    last: bool


def _pieces(tag: T, sequence: str, chunk_size: int, max_bases: int) -> Iterator[_Piece]:
    """Cut a sequence's chunks into runs spanning about ``max_bases`` at most, to bound memory."""
    starts, ends = chunk_bounds(len(sequence), chunk_size)
    if not len(starts):
        yield _Piece(tag, "", starts, ends, 1, True)
        return
    group = max(1, max_bases // chunk_size)
    for first in range(0, len(starts), group):
        stop = min(first + group, len(starts))
        begin, end = int(starts[first]), int(ends[stop - 1])
        text = sequence[begin:end].upper()
        yield _Piece(tag, text, starts[first:stop] - begin, ends[first:stop] - begin, first + 1, stop == len(starts))


def _translate_batch(pieces: list[_Piece], with_sequences: bool) -> Iterator[tuple[object, FrameBlock]]:
    offsets = np.cumsum([0] + [len(piece.text) for piece in pieces])
    starts = np.concatenate([piece.starts + offset for piece, offset in zip(pieces, offsets)])
    ends = np.concatenate([piece.ends + offset for piece, offset in zip(pieces, offsets)])
    translated = TranslatedChunks("".join(piece.text for piece in pieces), starts, ends)
    chunk_bounds_of_pieces = np.cumsum([0] + [len(piece.starts) for piece in pieces])
    frame_bounds = np.searchsorted(translated.kept_chunk, chunk_bounds_of_pieces).tolist()
    frames: list[Frame] = []
    if with_sequences:
        numbers_of_chunks = np.concatenate([piece.first_chunk + np.arange(len(piece.starts)) for piece in pieces])
        chunk_numbers = numbers_of_chunks[translated.kept_chunk]
        labels = zip(chunk_numbers.tolist(), translated.kept_frame.tolist(), translated.sequences())
        frames = [
            Frame(frame_suffix(number, frame), nucleotide, protein)
            for number, frame, (nucleotide, protein) in labels
        ]
    for index, piece in enumerate(pieces):
        low, high = frame_bounds[index], frame_bounds[index + 1]
        block = FrameBlock(len(piece.starts), translated.protein_lengths[low:high], frames[low:high], piece.last)
        yield piece.tag, block


def translate_sequences(
    items: Iterable[tuple[T, str]], chunk_size: int, with_sequences: bool, batch_bases: int = 1 << 20
) -> Iterator[tuple[T, FrameBlock]]:
    """Chunk and six-frame translate each (tag, sequence), yielding (tag, block) in input order.

    Every sequence yields one or more blocks, the last one with ``last`` set; an empty sequence
    yields one block of no chunks. Sequences are translated in batches of about ``batch_bases``
    so that short sequences share the numpy work and long ones do not hold all their frames.
    """
    batch: list[_Piece] = []
    size = 0
    for tag, sequence in items:
        for piece in _pieces(tag, sequence, chunk_size, batch_bases):
            batch.append(piece)
            size += len(piece.text)
            if size >= batch_bases:
                yield from _translate_batch(batch, with_sequences)
                batch, size = [], 0
    if batch:
        yield from _translate_batch(batch, with_sequences)
