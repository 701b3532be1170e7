"""The vectorised chunking and six-frame translation against a plain re-statement of the original
algorithm (split_fasta_chunk + identify_seq), on the reference corpus and on random sequences."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from virnucpro.fasta import read_fasta
from virnucpro.frames import STANDARD_CODE, batch_chunk_bounds, chunk_bounds, translate_batches


# --- the original algorithm, kept deliberately naive ------------------------------------------

def original_chunks(sequence: str, chunk_size: int) -> list[str]:
    """split_fasta_chunk: the list construction and zip truncation exactly as written there."""
    length = len(sequence)
    num_chunks = -(-length // chunk_size)
    repeat_length = num_chunks * chunk_size - length
    repeat_per_chunk = int(repeat_length / num_chunks)
    need_more = repeat_length - repeat_per_chunk * (num_chunks - 1)
    move_step = [repeat_per_chunk + 1] * need_more + [repeat_per_chunk] * (num_chunks - 1 - need_more) + [0]
    chunks, start = [], 0
    for _, move in zip(range(num_chunks), move_step):
        chunks.append(sequence[start : start + chunk_size])
        start += chunk_size - move
    return chunks


def original_reverse_complement(sequence: str) -> str:
    return sequence.translate(str.maketrans("ACGTacgt", "TGCAtgca"))[::-1]


def original_translate(sequence: str, offset: int) -> str:
    return "".join(STANDARD_CODE.get(sequence[i : i + 3], "") for i in range(offset, len(sequence) - 2, 3))


def original_identify(chunk_id: str, sequence: str) -> list[tuple[str, str, str]]:
    """identify_seq: kept frames as (frame ID, nucleotide, protein), F1..F3 then R1..R3."""
    frames = []
    for strand, source in (("F", sequence), ("R", original_reverse_complement(sequence))):
        for i in range(1, 4):
            protein = original_translate(source, i - 1)
            if protein and "*" not in protein:
                frames.append((f"{chunk_id}{strand}{i}", source[i - 1 : i + 3 * len(protein)], protein))
    return frames


def original_frames(records: list[tuple[str, str]], chunk_size: int) -> list[tuple[str, str, str]]:
    frames = []
    for identifier, sequence in records:
        if not sequence:  # the original crashes on it; prepare never passes one
            continue
        for number, chunk in enumerate(original_chunks(sequence, chunk_size), start=1):
            frames.extend(original_identify(f"{identifier}_chunk_{number}", chunk.upper()))
    return frames


# --- helpers ------------------------------------------------------------------------------------

def fast_frames(records: list[tuple[str, str]], chunk_size: int, batch_bases: int = 1 << 20) -> list[tuple[str, str, str]]:
    frames = []
    for batch in translate_batches(records, chunk_size, batch_bases=batch_bases):
        sequences = list(batch.sequences())
        assert batch.protein_lengths.tolist() == [len(protein) for _, protein in sequences]
        assert batch.frame_counts().sum() == len(sequences)
        for piece, suffix, (nucleotide, protein) in zip(batch.frame_pieces.tolist(), batch.suffixes(), sequences):
            frames.append((batch.tags[piece] + suffix, nucleotide, protein))
    return frames


def random_sequence(rng: random.Random, length: int) -> str:
    """Mostly ACGT with some lowercase, N and other IUPAC codes, and long stop-free stretches."""
    if rng.random() < 0.5:  # an open reading frame, so that frames are kept
        codons = [codon for codon, amino in STANDARD_CODE.items() if amino != "*"]
        bases = list("".join(rng.choice(codons) for _ in range(length // 3 + 1))[:length])
    else:
        bases = rng.choices("ACGT", k=length)
    for index in range(length):
        roll = rng.random()
        if roll < 0.02:
            bases[index] = "N"
        elif roll < 0.03:
            bases[index] = rng.choice("RYSWKMBDHVU")
        elif roll < 0.2:
            bases[index] = bases[index].lower()
    return "".join(bases)


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 300, 301, 500])
def test_chunk_bounds_match_the_original_list_construction(chunk_size: int) -> None:
    for length in [*range(1, 1100), 5000, 10007]:
        sequence = "".join(chr(65 + i % 26) for i in range(length))
        starts, ends = chunk_bounds(length, chunk_size)
        assert [sequence[s:e] for s, e in zip(starts.tolist(), ends.tolist())] == original_chunks(sequence, chunk_size)


def test_chunk_bounds_documented_examples() -> None:
    assert (chunk_bounds(750, 500)[1] - chunk_bounds(750, 500)[0]).tolist() == [500, 376]
    assert (chunk_bounds(1001, 500)[1] - chunk_bounds(1001, 500)[0]).tolist() == [500, 500, 335]
    assert [len(s) for s in chunk_bounds(0, 300)] == [0, 0]


def test_batch_chunk_bounds_equal_each_sequences_bounds() -> None:
    lengths = np.array([0, 1, 299, 300, 301, 750, 1001, 0, 5000], dtype=np.int64)
    for chunk_size in (1, 7, 300, 500):
        owner, starts, ends = batch_chunk_bounds(lengths, chunk_size)
        expected = [(index, s, e) for index, length in enumerate(lengths.tolist()) for s, e in zip(*(b.tolist() for b in chunk_bounds(length, chunk_size)))]
        assert list(zip(owner.tolist(), starts.tolist(), ends.tolist())) == expected


@pytest.mark.parametrize("chunk_size", [300, 500, 7, 31, 299])
def test_frames_match_the_original_on_random_sequences(chunk_size: int) -> None:
    rng = random.Random(chunk_size)
    lengths = list(range(0, 1101)) if chunk_size in (300, 500) else rng.sample(range(0, 1101), 150)
    records = [(f"s{length}", random_sequence(rng, length)) for length in lengths]
    # a small batch size splits long sequences into pieces and batches pieces of several
    assert fast_frames(records, chunk_size, batch_bases=997) == original_frames(records, chunk_size)


def test_one_long_sequence_across_batches() -> None:
    rng = random.Random(5)
    records = [("long", random_sequence(rng, 20000)), ("short", "ATGAAA"), ("empty", "")]
    expected = original_frames(records, 300)
    assert fast_frames(records, 300, batch_bases=1000) == expected
    assert fast_frames(records, 300) == expected


def test_reverse_frames_keep_iupac_letters_uncomplemented() -> None:
    # R frames are read from a reverse complement in which only ACGT are complemented
    (frame,) = [f for f in fast_frames([("x", "ATGRAAACC")], 300) if f[0].endswith("R1")]
    # reverse complement GGTTTRCAT: GGT=G, TTR dropped (ambiguous), CAT=H; nucleotide one base longer than 2 codons
    assert frame == ("x_chunk_1R1", "GGTTTRC", "GH")


def test_pieces_cover_every_chunk_once() -> None:
    rng = random.Random(9)
    records = [(str(i), random_sequence(rng, rng.randrange(0, 3000))) for i in range(40)]
    chunks: Counter[str] = Counter()
    lasts: Counter[str] = Counter()
    order = []
    for batch in translate_batches(records, 300, batch_bases=700):
        for tag, piece_chunks, last in zip(batch.tags, batch.chunks.tolist(), batch.last):
            chunks[tag] += piece_chunks
            lasts[tag] += last
            order.append(tag)
    assert list(dict.fromkeys(order)) == [identifier for identifier, _ in records]
    assert all(lasts[identifier] == 1 for identifier, _ in records)
    assert all(chunks[identifier] == len(original_chunks(sequence, 300)) if sequence else chunks[identifier] == 0
               for identifier, sequence in records)


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_reference_frames(reference, chunk_size: int) -> None:
    records = [(record.id, record.sequence) for record in read_fasta(reference / "input.fa")]
    frames = fast_frames(records, chunk_size)
    nucleotides = [(r.id, r.sequence) for r in read_fasta(reference / f"identified_nucleotide{chunk_size}.fa")]
    proteins = [(r.id, r.sequence) for r in read_fasta(reference / f"identified_protein{chunk_size}.faa")]
    assert [(i, n) for i, n, _ in frames] == nucleotides
    assert [(i, p) for i, _, p in frames] == proteins


def test_protein_lengths_without_strings_equal_the_originals() -> None:
    rng = random.Random(3)
    records = [(str(i), random_sequence(rng, rng.randrange(0, 2000))) for i in range(30)]
    lengths = [batch.protein_lengths for batch in translate_batches(records, 300)]
    expected = [len(p) for _, _, p in original_frames(records, 300)]
    assert np.concatenate(lengths).tolist() == expected
