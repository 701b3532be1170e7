"""prepare_frames.py end to end: shards equal the original's frame files, the TSV contracts hold,
input formats do not change the outputs, and bad input fails cleanly."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, run_script
from virnucpro.fasta import read_fasta
from virnucpro.prepare import NO_OPEN_FRAME, SEQUENCES_HEADER, SHARDS_HEADER, SHORTER_THAN_A_CODON, shard_sizes


def prepare(fasta: Path, prefix: Path, *options: object, chunk_size: int = 300, check: bool = True):
    return run_script("prepare_frames.py", "--fasta", fasta, "--chunk-size", chunk_size, "--prefix", prefix, *options, check=check)


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
    return header, rows


def records(path: Path) -> list[tuple[str, str]]:
    return [(record.id, record.sequence) for record in read_fasta(path)]


def shard_files(prefix: Path, suffix: str) -> list[Path]:
    return sorted(prefix.parent.glob(f"{prefix.name}.[0-9]*{suffix}"))


def outputs(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("chunk_size", [300, 500])
@pytest.mark.parametrize("shard_size", [7, 500000])
def test_shards_concatenate_to_the_original_frames(reference, tmp_path, chunk_size, shard_size) -> None:
    prefix = tmp_path / "sample"
    prepare(reference / "input.fa", prefix, "--shard-size", shard_size, chunk_size=chunk_size)

    nucleotide_shards, protein_shards = shard_files(prefix, ".fna"), shard_files(prefix, ".faa")
    frames = [record for shard in nucleotide_shards for record in records(shard)]
    proteins = [record for shard in protein_shards for record in records(shard)]
    assert frames == records(reference / f"identified_nucleotide{chunk_size}.fa")
    assert proteins == records(reference / f"identified_protein{chunk_size}.faa")
    for shard in nucleotide_shards + protein_shards:  # two lines per record
        lines = shard.read_text().splitlines()
        assert len(lines) == 2 * len(records(shard)) and all(line.startswith(">") for line in lines[::2])

    header, rows = read_tsv(prefix.with_name("sample.shards.tsv"))
    assert header == list(SHARDS_HEADER)
    assert len(rows) == len(nucleotide_shards) == len(protein_shards) == -(-len(frames) // shard_size)
    for row, nucleotide_shard, protein_shard in zip(rows, nucleotide_shards, protein_shards):
        name, count, tokens, first_id, last_id = row
        assert nucleotide_shard.name == f"{name}.fna" and protein_shard.name == f"{name}.faa"
        shard_proteins = records(protein_shard)
        assert [i for i, _ in records(nucleotide_shard)] == [i for i, _ in shard_proteins]
        assert 1 <= int(count) == len(shard_proteins) <= shard_size
        assert int(tokens) == sum(len(protein) + 2 for _, protein in shard_proteins)
        assert (first_id, last_id) == (shard_proteins[0][0], shard_proteins[-1][0])


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_sequences_tsv_accounts_for_every_record_chunk_and_frame(reference, tmp_path, chunk_size) -> None:
    prefix = tmp_path / "s"
    prepare(reference / "input.fa", prefix, chunk_size=chunk_size)
    header, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert header == list(SEQUENCES_HEADER)

    inputs = list(read_fasta(reference / "input.fa"))
    chunks = Counter(i.rpartition("_chunk_")[0] for i, _ in records(reference / f"chunked{chunk_size}.fa"))
    frames = Counter(i[:-2].rpartition("_chunk_")[0] for i, _ in records(reference / f"identified_protein{chunk_size}.faa"))
    assert [row[0] for row in rows] == [str(n) for n in range(1, len(inputs) + 1)]
    for row, record in zip(rows, inputs):
        number, sequence_id, input_id, length, chunk_count, frame_count, status, reason = row
        assert sequence_id == input_id == record.id
        assert int(length) == len(record.sequence)
        assert int(chunk_count) == chunks[record.id]
        assert int(frame_count) == frames[record.id]
        assert (status, reason) == (("pending", "") if frames[record.id] else ("no_open_frame", NO_OPEN_FRAME))
    assert sum(int(row[5]) for row in rows) == sum(frames.values())


def test_balanced_shards_on_the_reference(reference, tmp_path) -> None:
    prefix = tmp_path / "s"
    prepare(reference / "input.fa", prefix, "--shard-size", 50)
    proteins = records(reference / "identified_protein300.faa")
    largest = max(len(p) + 2 for _, p in proteins)
    _, rows = read_tsv(tmp_path / "s.shards.tsv")
    mean = sum(int(row[2]) for row in rows) / len(rows)
    assert len(rows) > 1
    assert all(abs(int(row[2]) - mean) <= largest for row in rows)


def test_input_format_does_not_change_outputs(reference, tmp_path) -> None:
    plain = reference / "input.fa"
    rewrapped = []
    for index, record in enumerate(read_fasta(plain)):
        width = 7 + index * 13
        sequence = record.sequence.lower() if index % 2 else record.sequence
        lines = [sequence[i : i + width] for i in range(0, len(sequence), width)]
        rewrapped.append(f">{record.id} {record.description}\r\n" + "".join(line + "\r\n" for line in lines))
    variant = tmp_path / "variant.fa.gz"
    variant.write_bytes(gzip.compress("".join(rewrapped).encode()))

    for name, fasta in (("plain", plain), ("variant", variant), ("rerun", plain)):
        prepare(fasta, tmp_path / name / "s", "--shard-size", 20)
    assert outputs(tmp_path / "plain") == outputs(tmp_path / "variant") == outputs(tmp_path / "rerun")
    assert len(outputs(tmp_path / "plain")) > 4


def test_sequences_without_an_open_frame(tmp_path) -> None:
    # CTAGCTAGCTAG has a stop in all six frames; NNN... has no complete codon
    fasta = write(tmp_path / "in.fa", ">short\nAT\n>stops\nCTAGCTAGCTAG\n>n\nNNNNNNNNN\n>ok\nATGAAACCC\n")
    prepare(fasta, tmp_path / "s")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [(row[1], row[4], row[5], row[6], row[7]) for row in rows] == [
        ("short", "1", "0", "no_open_frame", SHORTER_THAN_A_CODON),
        ("stops", "1", "0", "no_open_frame", NO_OPEN_FRAME),
        ("n", "1", "0", "no_open_frame", NO_OPEN_FRAME),
        ("ok", "1", str(len(records(tmp_path / "s.0001.faa"))), "pending", ""),
    ]
    assert {i.rpartition("_chunk_")[0] for i, _ in records(tmp_path / "s.0001.faa")} == {"ok"}


def test_no_kept_frame_writes_no_shards(tmp_path) -> None:
    prepare(write(tmp_path / "in.fa", ">stops\nCTAGCTAGCTAG\n"), tmp_path / "out" / "s")
    assert sorted(outputs(tmp_path / "out")) == ["s.sequences.tsv", "s.shards.tsv"]
    assert read_tsv(tmp_path / "out" / "s.shards.tsv") == (list(SHARDS_HEADER), [])


def test_empty_file_writes_empty_outputs_with_a_warning(tmp_path) -> None:
    result = prepare(write(tmp_path / "in.fa", ""), tmp_path / "out" / "s")
    assert "WARNING" in result.stderr and "no sequences" in result.stderr
    assert outputs(tmp_path / "out") == {
        "s.sequences.tsv": ("\t".join(SEQUENCES_HEADER) + "\n").encode(),
        "s.shards.tsv": ("\t".join(SHARDS_HEADER) + "\n").encode(),
    }


def test_sequence_ids_are_biopythons_record_id(tmp_path) -> None:
    # the original takes Bio.SeqIO's record.id: the header up to the first whitespace of any kind
    headers = [">a desc", ">b\tdesc", "> c", ">\td x", ">e\x0bdesc", ">f\x0cdesc", ">g\xa0desc", ">h\u2003desc", ">i\x1cdesc"]
    fasta = write(tmp_path / "in.fa", "".join(f"{header}\nATGAAACCC\n" for header in headers))
    prepare(fasta, tmp_path / "s")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [row[1] for row in rows] == [row[2] for row in rows] == list("abcdefghi")
    assert {i.rpartition("_chunk_")[0] for i, _ in records(tmp_path / "s.0001.faa")} == set("abcdefghi")


BAD_INPUTS = {
    "protein": (">p1\nATGC\n>p2\nMKVLILFEPQ\n", "p2", "protein"),
    "empty_sequence": (">a\nACGT\n>b\n>c\nACGT\n", "b", "empty sequence"),
    "not_iupac": (">a\nACGT\n>b\nACG-T.X\n", "b", "not IUPAC"),
    "duplicate": (">a\nACGT\n>b\nAC\n>a x\nACGT\n", "a", "records 1 (line 1) and 3 (line 5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_records_fail_naming_file_and_record_before_any_output(tmp_path, case) -> None:
    text, record, reason = BAD_INPUTS[case]
    fasta = write(tmp_path / "in.fa", text)
    result = prepare(fasta, tmp_path / "out" / "s", check=False)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert str(fasta) in message and f"'{record}'" in message and reason in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "name, content",
    [("missing.fa", None), ("binary.fa", b"\x00\x01\x02>\xff"), ("corrupt.fa.gz", gzip.compress(b">a\nACGT\n")[:-12]), ("text.fa", b"hello\n>a\nACGT\n")],
)
def test_unreadable_files_fail_cleanly(tmp_path, name, content) -> None:
    fasta = tmp_path / name
    if content is not None:
        fasta.write_bytes(content)
    result = prepare(fasta, tmp_path / "out" / "s", check=False)
    assert result.returncode == 1
    assert str(fasta) in result.stderr and "Traceback" not in result.stderr


def test_skip_invalid_records_the_reason(tmp_path) -> None:
    fasta = write(tmp_path / "in.fa", ">a\nATGAAACCC\n>b\n>c\nACGU-X\n>d\nATGAAACCC\n")
    prepare(fasta, tmp_path / "s", "--skip-invalid")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [(row[1], row[4], row[5], row[6]) for row in rows][1:3] == [("b", "0", "0", "invalid"), ("c", "0", "0", "invalid")]
    assert rows[1][7] == "empty sequence" and "not IUPAC" in rows[2][7]
    assert [row[6] for row in (rows[0], rows[3])] == ["pending", "pending"]
    assert {i.rpartition("_chunk_")[0] for i, _ in records(tmp_path / "s.0001.fna")} == {"a", "d"}


def test_rename_duplicates(tmp_path) -> None:
    fasta = write(tmp_path / "in.fa", "".join(f">{name}\nATGAAACCC\n" for name in ["x", "x", "x_dup2", "x", "x_dup1"]))
    prepare(fasta, tmp_path / "s", "--rename-duplicates")
    _, rows = read_tsv(tmp_path / "s.sequences.tsv")
    assert [(row[1], row[2]) for row in rows] == [
        ("x", "x"), ("x_dup1", "x"), ("x_dup2", "x_dup2"), ("x_dup3", "x"), ("x_dup1_dup1", "x_dup1"),
    ]
    frame_sequences = [i.rpartition("_chunk_")[0] for i, _ in records(tmp_path / "s.0001.faa")]
    assert list(dict.fromkeys(frame_sequences)) == [row[1] for row in rows]


def test_metrics_and_help(reference, tmp_path) -> None:
    prepare(reference / "input.fa", tmp_path / "s", "--metrics", tmp_path / "m.json", "--shard-size", 40)
    metrics = json.loads((tmp_path / "m.json").read_text())
    _, rows = read_tsv(tmp_path / "s.shards.tsv")
    assert metrics["stage"] == "prepare_frames" and metrics["name"] == "s"
    assert metrics["items"] == sum(int(row[1]) for row in rows)
    assert metrics["tokens"] == sum(int(row[2]) for row in rows)
    help_text = run_script("prepare_frames.py", "--help").stdout
    for option in ("--fasta", "--chunk-size", "--prefix", "--shard-size", "--rename-duplicates", "--skip-invalid", "--metrics"):
        assert option in help_text


def test_shard_sizes_respect_the_frame_limit_and_balance_tokens() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        tokens = rng.integers(3, 170, size=int(rng.integers(1, 300)))
        limit = int(rng.integers(1, 120))
        sizes = shard_sizes(tokens, limit)
        assert sum(sizes) == len(tokens) and len(sizes) == -(-len(tokens) // limit)
        assert all(1 <= size <= limit for size in sizes)
    # with room to spare, every cut is the one closest to its share of the tokens
    tokens = rng.integers(3, 170, size=1000)
    sizes = shard_sizes(tokens, 400)
    cumulative = np.concatenate([[0], np.cumsum(tokens)])
    cuts = np.cumsum(sizes)[:-1]
    for index, cut in enumerate(cuts, start=1):
        target = index * cumulative[-1] / len(sizes)
        assert abs(cumulative[cut] - target) == np.min(np.abs(cumulative - target))
    assert shard_sizes(np.full(10, 5), 5) == [5, 5]
    assert shard_sizes(np.zeros(0, dtype=np.int64), 5) == []


@pytest.mark.parametrize("script", ["prepare_frames.py", "summarize.py", "make_report.py"])
def test_cpu_stages_do_not_import_torch(script):
    # torch takes about a second to import: more than prepare_frames.py needs for 20 Mbp
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / script), "--help"], capture_output=True, text=True, check=True
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "torch" not in imported
