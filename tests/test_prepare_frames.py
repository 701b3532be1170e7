"""prepare_frames.py end to end: shards equal the original's frame files, the TSV contracts hold,
input formats do not change the outputs, and bad input fails cleanly."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import BIN, run_script, with_repeats
from virnucpro.contracts import SEQUENCE_COLUMNS, SHARD_COLUMNS, FrameIdDigest, record_digest
from virnucpro.errors import InputError
from virnucpro.fasta import read_fasta
from virnucpro import prepare as prepare_module
from virnucpro.prepare import NO_OPEN_FRAME_REASON, RNA_REASON, SHORTER_THAN_A_CODON, SequenceIds, shard_sizes


def prepare(fasta: Path, prefix: Path, *options: object, chunk_size: int = 300, check: bool = True):
    return run_script("prepare_frames.py", "--fasta", fasta, "--chunk-size", chunk_size, "--prefix", prefix, *options, check=check)


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
    return header, rows


def records(path: Path) -> list[tuple[str, str]]:
    return [(record.id, record.sequence) for record in read_fasta(path)]


def frame_ids(prefix: Path) -> list[str]:
    """The frame IDs of every frame shard of ``prefix``, in order."""
    return [line.split("\t")[0] for path in sorted(prefix.parent.glob(f"{prefix.name}.[0-9]*.frames.tsv")) for line in path.read_text().splitlines()[1:]]


def outputs(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last line of a failed run's stderr, the run checked to exit 1 without a traceback."""
    assert result.returncode == 1 and "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def fewest_shards(tokens: list[int], max_tokens: int, max_frames: int) -> int:
    """The fewest contiguous shards within both caps, a frame above max_tokens alone: filled greedily."""
    count, shard_tokens, shard_frames = 0, 0, 0
    for frame_tokens in tokens:
        if shard_frames == 0 or shard_tokens + frame_tokens > max_tokens or shard_frames == max_frames:
            count, shard_tokens, shard_frames = count + 1, 0, 0
        shard_tokens, shard_frames = shard_tokens + frame_tokens, shard_frames + 1
    return count


@dataclass
class Layout:
    """What prepare_frames.py wrote, read back and checked against its own manifest."""

    frames: list[tuple[str, str, str]]  # (frame ID, nucleotide, protein) of every frame, in order
    distinct: dict[str, list[tuple[str, str]]]  # per model: (name, sequence) in sequence-number order
    shards: dict[str, list[list[str]]]  # P.shards.tsv rows by kind


def digest_of(ids: list[str]) -> str:
    digest = FrameIdDigest()
    digest.update(ids)
    return digest.hexdigest()


def read_layout(prefix: Path) -> Layout:
    """Every shard of ``prefix``, each checked against its row of P.shards.tsv: file names, item
    and token counts, first and last ID, ID digest, and where its sequence numbers start."""
    header, rows = read_tsv(prefix.with_name(f"{prefix.name}.shards.tsv"))
    assert header == list(SHARD_COLUMNS)
    shards = {kind: [row for row in rows if row[1] == kind] for kind in ("frames", "dnabert", "esm")}
    assert sum(map(len, shards.values())) == len(rows)
    distinct = {}
    for kind, suffix in (("dnabert", ".fna"), ("esm", ".faa")):
        assert [path.name for path in sorted(prefix.parent.glob(f"{prefix.name}.{kind}.*"))] == [f"{row[0]}{suffix}" for row in shards[kind]]
        distinct[kind] = []
        for row in shards[kind]:
            name, _, items, tokens, first_id, last_id, ids_sha256, dnabert_start, esm_start = row
            shard = records(prefix.parent / f"{name}{suffix}")
            lines = (prefix.parent / f"{name}{suffix}").read_text().splitlines()
            assert len(lines) == 2 * len(shard) and all(line.startswith(">") for line in lines[::2])  # two lines per record
            assert int(items) == len(shard) >= 1 and (first_id, last_id) == (shard[0][0], shard[-1][0])
            assert ids_sha256 == digest_of([identifier for identifier, _ in shard])
            own, other = (dnabert_start, esm_start) if kind == "dnabert" else (esm_start, dnabert_start)
            assert int(own) == len(distinct[kind]) and other == ""
            per_sequence = [len(sequence) // 3 + 2 if kind == "dnabert" else len(sequence) + 2 for _, sequence in shard]
            assert int(tokens) == sum(per_sequence)
            distinct[kind] += shard
    frames: list[tuple[str, str, str]] = []
    seen = {"dnabert": 0, "esm": 0}
    for row in shards["frames"]:
        name, _, items, tokens, first_id, last_id, ids_sha256, dnabert_start, esm_start = row
        header, *lines = (prefix.parent / f"{name}.frames.tsv").read_text().splitlines()
        assert header == "frame_id\tdnabert\tesm"
        fields = [line.split("\t") for line in lines]
        assert int(items) == len(fields) >= 1 and (first_id, last_id) == (fields[0][0], fields[-1][0])
        assert ids_sha256 == digest_of([field[0] for field in fields])
        assert (int(dnabert_start), int(esm_start)) == (seen["dnabert"], seen["esm"])
        for frame_id, dnabert, esm in fields:
            for kind, number in (("dnabert", int(dnabert)), ("esm", int(esm))):
                assert number <= seen[kind], f"{frame_id}: {kind} sequence {number} skips ahead of {seen[kind]}"
                if number == seen[kind]:  # the first frame with the sequence names it
                    assert distinct[kind][number][0] == frame_id
                    seen[kind] += 1
            frames.append((frame_id, distinct["dnabert"][int(dnabert)][1], distinct["esm"][int(esm)][1]))
        assert int(tokens) == sum(len(protein) + 2 for _, _, protein in frames[-len(fields):])
    assert seen == {kind: len(distinct[kind]) for kind in seen}
    assert sorted(prefix.parent.glob(f"{prefix.name}.[0-9]*")) == [prefix.parent / f"{row[0]}.frames.tsv" for row in shards["frames"]]
    return Layout(frames, distinct, shards)


def original_frames(reference: Path, chunk_size: int) -> list[tuple[str, str, str]]:
    nucleotides = records(reference / f"identified_nucleotide{chunk_size}.fa")
    proteins = records(reference / f"identified_protein{chunk_size}.faa")
    assert [i for i, _ in nucleotides] == [i for i, _ in proteins]
    return [(i, nucleotide, protein) for (i, nucleotide), (_, protein) in zip(nucleotides, proteins)]


@pytest.mark.parametrize("chunk_size, max_tokens, max_frames", [(300, None, 7), (300, None, None), (500, 1500, None), (500, 3000, 12)])
def test_shards_give_the_original_frames(reference, tmp_path, chunk_size, max_tokens, max_frames) -> None:
    prefix = tmp_path / "sample"
    options = [*(["--shard-tokens", max_tokens] if max_tokens else []), *(["--shard-size", max_frames] if max_frames else [])]
    prepare(reference / "input.fa", prefix, *options, chunk_size=chunk_size)
    layout = read_layout(prefix)
    frames = original_frames(reference, chunk_size)
    assert layout.frames == frames
    # the corpus repeats no frame: every frame is embedded, in order, under its own name
    assert layout.distinct == {"dnabert": [(i, n) for i, n, _ in frames], "esm": [(i, p) for i, _, p in frames]}
    tokens = [len(protein) + 2 for _, _, protein in frames]
    expected = fewest_shards(tokens, max_tokens or 50_000_000, max_frames or len(tokens))
    for kind, shards in layout.shards.items():
        assert len(shards) == expected
        assert all(1 <= int(row[2]) <= (max_frames or len(tokens)) and int(row[3]) <= (max_tokens or 50_000_000) for row in shards)


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_each_distinct_sequence_is_written_once_per_sample(reference, tmp_path, chunk_size) -> None:
    copies = with_repeats(reference / "input.fa", tmp_path / "in.fa")
    prepare(tmp_path / "in.fa", tmp_path / "s", "--shard-tokens", 3000, chunk_size=chunk_size)
    layout = read_layout(tmp_path / "s")
    by_id = {frame_id: (nucleotide, protein) for frame_id, nucleotide, protein in original_frames(reference, chunk_size)}
    sequence_of = {}
    for frame_id, nucleotide, protein in layout.frames:  # a copy's frames are its original's
        sequence_id, _, suffix = frame_id.rpartition("_chunk_")
        sequence_of[frame_id] = by_id[f"{copies.get(sequence_id, sequence_id)}_chunk_{suffix}"]
        assert (nucleotide, protein) == sequence_of[frame_id]
    assert len(layout.frames) == 2 * len(by_id) + sum(1 for frame_id, _, _ in layout.frames if frame_id.startswith("again_"))
    for kind, column in (("dnabert", 0), ("esm", 1)):
        first_named = list(dict.fromkeys(sequence[column] for sequence in sequence_of.values()))
        assert [sequence for _, sequence in layout.distinct[kind]] == first_named  # once each, in order of first occurrence
        assert len(first_named) <= len(by_id) < len(layout.frames)


def test_partitioned_numbering_gives_the_same_outputs(reference, tmp_path, monkeypatch) -> None:
    """Keys sorted in many small partitions, as for a sample of hundreds of millions of frames."""
    with_repeats(reference / "input.fa", tmp_path / "in.fa")
    prepare_module.prepare(tmp_path / "in.fa", 300, str(tmp_path / "whole" / "s"), shard_tokens=3000)
    monkeypatch.setattr(prepare_module, "PARTITION_FRAMES", 16)
    summary = prepare_module.prepare(tmp_path / "in.fa", 300, str(tmp_path / "parts" / "s"), shard_tokens=3000)
    assert summary.frames > 16 * 16  # more than 16 partitions
    assert outputs(tmp_path / "parts") == outputs(tmp_path / "whole")


def test_sequence_numbers_follow_first_occurrence(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 40, size=3000)  # many repeats
    spool = tempfile.TemporaryFile()
    spool.write(b"".join(hashlib.blake2b(str(key).encode(), digest_size=16).digest() for key in keys.tolist()))
    expected_numbers = {key: number for number, key in enumerate(dict.fromkeys(keys.tolist()))}
    for partition in (1 << 22, 100, 7):
        monkeypatch.setattr(prepare_module, "PARTITION_FRAMES", partition)
        numbers, is_first = prepare_module.sequence_indices(spool, len(keys), tmp_path)
        assert numbers.tolist() == [expected_numbers[key] for key in keys.tolist()]
        assert np.flatnonzero(is_first).tolist() == sorted({key: index for index, key in reversed(list(enumerate(keys.tolist())))}.values())


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_sequences_tsv_accounts_for_every_record_chunk_and_frame(reference, tmp_path, chunk_size) -> None:
    prefix = tmp_path / "s"
    prepare(reference / "input.fa", prefix, chunk_size=chunk_size)
    header, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert header == list(SEQUENCE_COLUMNS)

    inputs = list(read_fasta(reference / "input.fa"))
    chunks = Counter(i.rpartition("_chunk_")[0] for i, _ in records(reference / f"chunked{chunk_size}.fa"))
    frames = Counter(i[:-2].rpartition("_chunk_")[0] for i, _ in records(reference / f"identified_protein{chunk_size}.faa"))
    assert [row[0] for row in rows] == [str(n) for n in range(1, len(inputs) + 1)]
    for row, record in zip(rows, inputs):
        number, sequence_id, input_id, length, chunk_count, frame_count, status, reason, digest = row
        assert sequence_id == input_id == record.id
        assert digest == record_digest(record.header, record.sequence)
        assert int(length) == len(record.sequence)
        assert int(chunk_count) == chunks[record.id]
        assert int(frame_count) == frames[record.id]
        assert (status, reason) == (("pending", "") if frames[record.id] else ("no_open_frame", NO_OPEN_FRAME_REASON))
    assert sum(int(row[5]) for row in rows) == sum(frames.values())


def test_balanced_shards_on_the_reference(reference, tmp_path) -> None:
    prefix = tmp_path / "s"
    prepare(reference / "input.fa", prefix, "--shard-tokens", 2000)
    proteins = records(reference / "identified_protein300.faa")
    largest = max(len(p) + 2 for _, p in proteins)
    for kind, rows in read_layout(tmp_path / "s").shards.items():
        mean = sum(int(row[3]) for row in rows) / len(rows)
        assert len(rows) == fewest_shards([len(p) + 2 for _, p in proteins], 2000, len(proteins)) > 1
        assert all(abs(int(row[3]) - mean) <= largest and int(row[3]) <= 2000 for row in rows)


def test_input_format_does_not_change_outputs(reference, tmp_path) -> None:
    # the variant: other wrapping, lowercase, CRLF line ends, gzip and a byte-order mark
    plain = reference / "input.fa"
    rewrapped = []
    for index, record in enumerate(read_fasta(plain)):
        width = 7 + index * 13
        sequence = record.sequence.lower() if index % 2 else record.sequence
        lines = [sequence[i : i + width] for i in range(0, len(sequence), width)]
        rewrapped.append(f">{record.header}\r\n" + "".join(line + "\r\n" for line in lines))
    variant = tmp_path / "variant.fa.gz"
    variant.write_bytes(gzip.compress(b"\xef\xbb\xbf" + "".join(rewrapped).encode()))
    with_bom = tmp_path / "bom.fa"
    with_bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())

    for name, fasta in (("plain", plain), ("variant", variant), ("bom", with_bom), ("rerun", plain)):
        prepare(fasta, tmp_path / name / "s", "--shard-tokens", 3000)
    assert outputs(tmp_path / "plain") == outputs(tmp_path / "bom") == outputs(tmp_path / "rerun")
    assert len(outputs(tmp_path / "plain")) > 4
    plain_outputs, variant_outputs = outputs(tmp_path / "plain"), outputs(tmp_path / "variant")
    assert plain_outputs.pop("s.sequences.tsv") != variant_outputs.pop("s.sequences.tsv")
    assert plain_outputs == variant_outputs
    # the sequences differ only in the digest, which is of the records as written
    (_, plain_rows), (_, variant_rows) = read_tsv(tmp_path / "plain" / "s.sequences.tsv"), read_tsv(tmp_path / "variant" / "s.sequences.tsv")
    assert [row[:-1] for row in plain_rows] == [row[:-1] for row in variant_rows]
    assert [row[-1] for row in variant_rows] == [record_digest(r.header, r.sequence) for r in read_fasta(variant)]


def test_sequences_without_an_open_frame(tmp_path) -> None:
    # CTAGCTAGCTAG has a stop in all six frames; NNN... has no complete codon
    fasta = write(tmp_path / "in.fa", ">short\nAT\n>stops\nCTAGCTAGCTAG\n>n\nNNNNNNNNN\n>ok\nATGAAACCC\n")
    prepare(fasta, tmp_path / "s")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [(row[1], row[4], row[5], row[6], row[7]) for row in rows] == [
        ("short", "1", "0", "no_open_frame", SHORTER_THAN_A_CODON),
        ("stops", "1", "0", "no_open_frame", NO_OPEN_FRAME_REASON),
        ("n", "1", "0", "no_open_frame", NO_OPEN_FRAME_REASON),
        ("ok", "1", str(len(frame_ids(tmp_path / "s"))), "pending", ""),
    ]
    assert {i.rpartition("_chunk_")[0] for i in frame_ids(tmp_path / "s")} == {"ok"}


def test_no_kept_frame_writes_no_shards(tmp_path) -> None:
    prepare(write(tmp_path / "in.fa", ">stops\nCTAGCTAGCTAG\n"), tmp_path / "out" / "s")
    assert sorted(outputs(tmp_path / "out")) == ["s.sequences.tsv", "s.shards.tsv"]
    assert read_tsv(tmp_path / "out" / "s.shards.tsv") == (list(SHARD_COLUMNS), [])


def test_empty_file_writes_empty_outputs_with_a_warning(tmp_path) -> None:
    result = prepare(write(tmp_path / "in.fa", ""), tmp_path / "out" / "s")
    assert "WARNING" in result.stderr and "no sequences" in result.stderr
    assert outputs(tmp_path / "out") == {
        "s.sequences.tsv": ("\t".join(SEQUENCE_COLUMNS) + "\n").encode(),
        "s.shards.tsv": ("\t".join(SHARD_COLUMNS) + "\n").encode(),
    }


def test_sequence_ids_are_biopythons_record_id(tmp_path) -> None:
    # the original takes Bio.SeqIO's record.id: the header up to the first whitespace of any kind
    headers = [">a desc", ">b\tdesc", "> c", ">\td x", ">e\x0bdesc", ">f\x0cdesc", ">g\xa0desc", ">h\u2003desc", ">i\x1cdesc"]
    fasta = write(tmp_path / "in.fa", "".join(f"{header}\nATGAAACCC\n" for header in headers))
    prepare(fasta, tmp_path / "s")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [row[1] for row in rows] == [row[2] for row in rows] == list("abcdefghi")
    assert {i.rpartition("_chunk_")[0] for i in frame_ids(tmp_path / "s")} == set("abcdefghi")


BAD_INPUTS = {
    "protein": (">p1\nATGC\n>p2\nMKVLILFEPQ\n", "p2", "record 2 (line 3): looks like a protein"),
    "empty_sequence": (">a\nACGT\n>b\n>c\nACGT\n", "b", "record 2 (line 3): empty sequence"),
    "not_iupac": (">a\nACGT\n>b\nACG-T.X\n", "b", "not IUPAC"),
    # 'ß'.upper() is 'SS' and 'ſ'.upper() is 'S': only ASCII letters are codes
    "not_ascii": (">a\nACGT\n>b\nACGßTſ\n", "b", "record 2 (line 3): characters that are not IUPAC nucleotide codes: 'ßſ'"),
    "duplicate": (">a\nACGT\n>b\nAC\n>a x\nACGT\n", "a", "duplicate sequence ID in records 1 (line 1) and 3 (line 5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_records_fail_naming_file_and_record_before_any_output(tmp_path, case) -> None:
    text, record, reason = BAD_INPUTS[case]
    fasta = write(tmp_path / "in.fa", text)
    result = prepare(fasta, tmp_path / "out" / "s", check=False)
    message = error_line(result)
    assert str(fasta) in message and f"'{record}'" in message and reason in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("binary.fa", b"\x00\x01\x02>\xff", "line 1 (byte 1 of the file): a NUL byte"),
        ("corrupt.fa.gz", gzip.compress(b">a\nACGT\n")[:-12], "corrupt or truncated gzip file"),
        ("text.fa", b"hello\n>a\nACGT\n", "line 1 comes before any '>' header"),
        ("utf8.fa", b">a\nACGT\n>b\nAC\xffGT\n", "line 4 (byte 14 of the file): byte 0xff is not UTF-8"),
        ("utf8.fa.gz", gzip.compress(b">a\r\nACGT\r\n>b\r\nAC\xffGT\n"), "line 4 (byte 17 of the file): byte 0xff is not UTF-8"),
    ],
)
def test_unreadable_files_fail_cleanly(tmp_path, name, content, reason) -> None:
    fasta = tmp_path / name
    fasta.write_bytes(content)
    message = error_line(prepare(fasta, tmp_path / "out" / "s", check=False))
    assert f"{fasta}: {reason}" in message


@pytest.mark.parametrize("case", ["missing", "input_is_a_folder", "unreadable", "prefix_folder_is_a_file", "prefix_is_a_folder"])
def test_unusable_paths_fail_in_one_line(tmp_path, case) -> None:
    fasta = write(tmp_path / "in.fa", ">a\nATGAAACCC\n")
    prefix = tmp_path / "out" / "s"
    if case == "missing":
        fasta, named = tmp_path / "missing.fa", tmp_path / "missing.fa"
    elif case == "input_is_a_folder":
        fasta = named = tmp_path
    elif case == "unreadable":
        fasta.chmod(0)
        named = fasta
    elif case == "prefix_folder_is_a_file":
        prefix, named = fasta / "s", fasta
    else:
        (tmp_path / "out").mkdir()
        prefix = named = tmp_path / "out"
    command = [sys.executable, str(BIN / "prepare_frames.py"), "--fasta", str(fasta), "--chunk-size", "300", "--prefix", str(prefix)]
    if case == "unreadable" and os.geteuid() == 0:  # root reads a file whatever its mode, unless it drops that right
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *command]
    message = error_line(subprocess.run(command, capture_output=True, text=True))
    assert str(named) in message
    assert sorted(path.name for path in tmp_path.rglob("*")) in (["in.fa"], ["in.fa", "out"])


def test_skip_invalid_records_the_reason(tmp_path) -> None:
    fasta = write(tmp_path / "in.fa", ">a\nATGAAACCC\n>b\n>c\nACGU-X\n>d\nATGAAACCC\n")
    prepare(fasta, tmp_path / "s", "--skip-invalid")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [(row[1], row[4], row[5], row[6]) for row in rows][1:3] == [("b", "0", "0", "invalid"), ("c", "0", "0", "invalid")]
    assert rows[1][7] == "empty sequence" and "not IUPAC" in rows[2][7]
    assert [row[6] for row in (rows[0], rows[3])] == ["pending", "pending"]
    assert {i.rpartition("_chunk_")[0] for i in frame_ids(tmp_path / "s")} == {"a", "d"}
    assert {i.rpartition("_chunk_")[0] for i, _ in records(tmp_path / "s.dnabert.0001.fna")} == {"a"}  # d repeats a


def test_min_length_lists_shorter_sequences_as_too_short(tmp_path) -> None:
    """--min-length 12: the 9 and 11 bp records are too_short (an invalid one stays invalid) and are
    never chunked; the 12 bp record and the one after them are prepared exactly as without it."""
    fasta = write(tmp_path / "in.fa", ">a\nATGAAACCC\n>b\nATGAAACCCGG\n>c\nATG-J\n>d\nATGAAACCCGGG\n>e\nATGAAACCCGGGTTTAAA\n")
    result = prepare(fasta, tmp_path / "s", "--min-length", 12, "--skip-invalid")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    reason = "shorter than the minimum length, 12 bp"
    assert [(row[1], row[4], row[5], row[6], row[7]) for row in rows][:3] == [
        ("a", "0", "0", "too_short", reason), ("b", "0", "0", "too_short", reason), ("c", "0", "0", "invalid", rows[2][7]),
    ]
    assert [row[6] for row in rows[3:]] == ["pending", "pending"]
    assert {i.rpartition("_chunk_")[0] for i in frame_ids(tmp_path / "s")} == {"d", "e"}
    assert "2 of 5 records are shorter than the minimum length, 12 bp" in result.stderr
    prepare(write(tmp_path / "rest.fa", ">d\nATGAAACCCGGG\n>e\nATGAAACCCGGGTTTAAA\n"), tmp_path / "r")
    assert read_layout(tmp_path / "s").frames == read_layout(tmp_path / "r").frames
    refused = prepare(fasta, tmp_path / "x", "--min-length", -1, check=False)
    assert refused.returncode == 2 and "must be 0 or more" in refused.stderr


def test_rename_duplicates(tmp_path) -> None:
    fasta = write(tmp_path / "in.fa", "".join(f">{name}\nATGAAACCC\n" for name in ["x", "x", "x_dup2", "x", "x_dup1"]))
    prepare(fasta, tmp_path / "s", "--rename-duplicates")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [(row[1], row[2]) for row in rows] == [
        ("x", "x"), ("x_dup1", "x"), ("x_dup2", "x_dup2"), ("x_dup3", "x"), ("x_dup1_dup1", "x_dup1"),
    ]
    frame_sequences = [i.rpartition("_chunk_")[0] for i in frame_ids(tmp_path / "s")]
    assert list(dict.fromkeys(frame_sequences)) == [row[1] for row in rows]


def naive_ids(identifiers: list[str], rename: bool) -> list[str]:
    """The rule, plainly: a later repeat is an error or becomes ID_dupN, N the smallest unused."""
    used: dict[str, int] = {}
    assigned = []
    for number, identifier in enumerate(identifiers, start=1):
        if identifier in used:
            if not rename:
                raise ValueError(f"records {used[identifier]} and {number}")
            identifier = next(f"{identifier}_dup{n}" for n in range(1, len(used) + 2) if f"{identifier}_dup{n}" not in used)
        used[identifier] = number
        assigned.append(identifier)
    return assigned


def test_sequence_ids_across_levels_equal_a_dict(tmp_path, monkeypatch) -> None:
    # few keys per level, so that lookups cross many levels and merges
    monkeypatch.setattr(SequenceIds, "RECENT", 3)
    rng = random.Random(4)
    identifiers = [rng.choice(["x", "y", "x_dup1", "x_dup2", "y_dup1_dup1"]) if rng.random() < 0.2 else f"r{i}" for i in range(600)]
    sequence_ids = SequenceIds(tmp_path / "in.fa", rename_duplicates=True)
    assigned, number = [], 1
    while number <= len(identifiers):
        batch = [SimpleNamespace(id=i) for i in identifiers[number - 1 : number - 1 + rng.randrange(1, 9)]]
        assigned.extend(sequence_ids.assign(number, batch))
        number += len(batch)
    assert assigned == naive_ids(identifiers, rename=True)
    assert len(sequence_ids._levels) > 2

    # without renaming: the error names the first duplicate and, read again from the file, its first holder
    fasta = write(tmp_path / "in.fa", "".join(f">{i}\nACGT\n" for i in identifiers))
    sequence_ids, fasta_records = SequenceIds(fasta, rename_duplicates=False), list(read_fasta(fasta))
    with pytest.raises(InputError) as raised:
        for start in range(0, len(identifiers), 5):
            list(sequence_ids.assign(start + 1, fasta_records[start : start + 5]))
    with pytest.raises(ValueError) as expected:
        naive_ids(identifiers, rename=False)
    first, second = map(int, re.findall(r"\d+", str(expected.value)))
    assert f"records {first} (line {2 * first - 1}) and {second} (line {2 * second - 1})" in str(raised.value)


def test_rna_gives_the_frames_of_its_dna_twin(reference, tmp_path) -> None:
    dna = reference / "input.fa"
    rna = tmp_path / "rna.fa"
    rna.write_text("".join(line if line.startswith(">") else line.translate(str.maketrans("Tt", "Uu")) for line in dna.open()))
    prepare(dna, tmp_path / "dna" / "s")
    result = prepare(rna, tmp_path / "rna" / "s")
    dna_outputs, rna_outputs = outputs(tmp_path / "dna"), outputs(tmp_path / "rna")
    dna_outputs.pop("s.sequences.tsv"), rna_outputs.pop("s.sequences.tsv")
    assert dna_outputs == rna_outputs and len(dna_outputs) == 4
    (_, dna_rows), (_, rna_rows) = read_tsv(tmp_path / "dna" / "s.sequences.tsv"), read_tsv(tmp_path / "rna" / "s.sequences.tsv")
    assert [row[:7] for row in dna_rows] == [row[:7] for row in rna_rows]
    assert [row[7] for row in rna_rows] == [f"{row[7]}; {RNA_REASON}" if row[7] else RNA_REASON for row in dna_rows]
    assert [row[8] for row in rna_rows] == [record_digest(r.header, r.sequence) for r in read_fasta(rna)]
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"{rna}: {len(rna_rows)} records are RNA" in warnings[0]


ATOMIC_TEMPORARY = re.compile(r"\.s\..+\.tmp\d+")


def test_a_killed_run_leaves_no_incomplete_output_and_no_spool(reference, tmp_path) -> None:
    text = (reference / "input.fa").read_text()
    fasta = write(tmp_path / "in.fa", "".join(text.replace(">contig_", f">c{copy}_") for copy in range(200)))
    command = [sys.executable, str(BIN / "prepare_frames.py"), "--fasta", str(fasta), "--chunk-size", "300", "--shard-tokens", "200000"]
    started = time.perf_counter()
    subprocess.run([*command, "--prefix", str(tmp_path / "complete" / "s")], check=True, capture_output=True)
    complete = outputs(tmp_path / "complete")
    assert len(complete) > 10

    fraction = random.random()
    killed = subprocess.Popen([*command, "--prefix", str(tmp_path / "killed" / "s")], stderr=subprocess.DEVNULL)
    time.sleep(fraction * (time.perf_counter() - started))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = outputs(tmp_path / "killed") if (tmp_path / "killed").exists() else {}
    final = {name: data for name, data in left.items() if name in complete}
    assert all(data == complete[name] for name, data in final.items()), f"killed at {fraction:.2f} of a run"
    assert all(ATOMIC_TEMPORARY.fullmatch(name) for name in left.keys() - final.keys()), sorted(left)
    assert "s.shards.tsv" not in final or final == complete


def test_metrics_and_help(reference, tmp_path) -> None:
    prepare(reference / "input.fa", tmp_path / "s", "--metrics", tmp_path / "m.json", "--shard-size", 40)
    metrics = json.loads((tmp_path / "m.json").read_text())
    _, rows = read_tsv(tmp_path / "s.shards.tsv")
    assert metrics["stage"] == "prepare_frames" and metrics["name"] == "s"
    for kind, key in (("frames", "items"), ("dnabert", "dnabert_sequences"), ("esm", "esm_sequences")):
        assert metrics[key] == sum(int(row[2]) for row in rows if row[1] == kind)
    assert metrics["tokens"] == sum(int(row[3]) for row in rows if row[1] == "frames")
    help_text = run_script("prepare_frames.py", "--help").stdout
    for option in ("--fasta", "--chunk-size", "--prefix", "--shard-tokens", "--shard-size", "--rename-duplicates", "--skip-invalid", "--metrics"):
        assert option in help_text


def test_shard_sizes_are_the_fewest_within_both_caps_and_balance_tokens() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        tokens = rng.integers(3, 170, size=int(rng.integers(1, 300)))
        max_tokens = int(rng.integers(100, 3000)) if rng.random() < 0.7 else 10**9
        max_frames = int(rng.integers(1, 120)) if rng.random() < 0.7 else None
        sizes = shard_sizes(tokens, max_tokens, max_frames)
        assert sum(sizes) == len(tokens) and len(sizes) == fewest_shards(tokens.tolist(), max_tokens, max_frames or len(tokens))
        cuts = np.cumsum([0, *sizes])
        assert all(1 <= size <= (max_frames or len(tokens)) for size in sizes)
        assert all(tokens[a:b].sum() <= max_tokens or b - a == 1 for a, b in zip(cuts, cuts[1:]))
    # with room to spare, every cut is the one closest to its share of the tokens
    tokens = rng.integers(3, 170, size=1000)
    for sizes in (shard_sizes(tokens, 10**9, 400), shard_sizes(tokens, int(tokens.sum()) // 4, None)):
        cumulative = np.concatenate([[0], np.cumsum(tokens)])
        for index, cut in enumerate(np.cumsum(sizes)[:-1], start=1):
            target = index * cumulative[-1] / len(sizes)
            assert abs(cumulative[cut] - target) == np.min(np.abs(cumulative - target))
    assert shard_sizes(np.full(10, 5), 10**9, 5) == [5, 5]
    assert shard_sizes(np.array([5, 100, 5, 5, 300]), 20) == [1, 1, 2, 1]  # a frame above the cap: a shard of its own
    assert shard_sizes(np.full(3, 60000, dtype=np.uint16), 120000) == [1, 2]  # sums beyond uint16; a tie takes the earlier cut
    assert shard_sizes(np.zeros(0, dtype=np.uint16), 5) == []


@pytest.mark.parametrize("script", ["prepare_frames.py", "summarize.py", "make_report.py"])
def test_cpu_stages_do_not_import_torch(script):
    # torch takes about a second to import: more than prepare_frames.py needs for 20 Mbp
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / script), "--help"], capture_output=True, text=True, check=True
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "torch" not in imported
