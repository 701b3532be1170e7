"""A sample whose reads repeat themselves (PCR duplicates, the same gene in several reads): each
distinct nucleotide and protein sequence is embedded once, and the results equal those of
embedding every frame, run through the bin scripts as the pipeline runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_after_prepare, run_script, with_repeats
from virnucpro import contracts
from virnucpro.fasta import format_record, read_fasta



def embedded(folder: Path, kind: str) -> int:
    """The sequences the embedder of ``kind`` ran its forward passes on, by its metrics."""
    return sum(json.loads(path.read_text())["items"] for path in folder.glob(f"*.{kind}.*.json"))


def every_frame_its_own_sequence(prepared: Path, target: Path, prefix: str) -> int:
    """The layout of a run that embeds every frame: PREPARE's frames (their sequences looked up by
    number), each frame its own sequence, one shard of each kind; returns the frame count."""
    manifest = contracts.read_shards(prepared / f"{prefix}.shards.tsv")
    distinct = {
        kind: [record.sequence for shard in contracts.shards_of(manifest, kind) for record in read_fasta(prepared / f"{shard.name}{contracts.SHARD_SUFFIXES[kind]}")]
        for kind in contracts.EMBEDDING_KINDS
    }  # fmt: skip
    frames = [
        (block_id, int(dnabert), int(esm))
        for shard in contracts.shards_of(manifest, contracts.FRAMES)
        for block_id, dnabert, esm in (line.split("\t") for line in (prepared / f"{shard.name}.frames.tsv").read_text().splitlines()[1:])
    ]
    ids = [frame_id for frame_id, _, _ in frames]
    digest = contracts.FrameIdDigest()
    digest.update(ids)
    rows = [contracts.Shard(f"{prefix}.0001", contracts.FRAMES, len(ids), 1, ids[0], ids[-1], digest.hexdigest(), 0, 0)]
    for kind, column in ((contracts.DNABERT, 1), (contracts.ESM, 2)):
        name = contracts.shard_name(prefix, kind, 1)
        (target / f"{name}{contracts.SHARD_SUFFIXES[kind]}").write_text("".join(format_record(frame[0], distinct[kind][frame[column]]) for frame in frames))
        rows.append(contracts.Shard(name, kind, len(ids), 1, ids[0], ids[-1], digest.hexdigest(), *((0, None) if kind == contracts.DNABERT else (None, 0))))
    (target / f"{prefix}.0001.frames.tsv").write_text(contracts.tsv_line(contracts.FRAME_COLUMNS) + "".join(contracts.tsv_line((i, n, n)) for n, i in enumerate(ids)))
    (target / f"{prefix}.shards.tsv").write_text(contracts.tsv_line(contracts.SHARD_COLUMNS) + "".join(map(contracts.shard_row, rows)))
    shutil.copy(prepared / f"{prefix}.sequences.tsv", target / f"{prefix}.sequences.tsv")
    return len(ids)


def predictions(results: Path) -> list[list[str]]:
    return [line.split("\t") for line in (results / "prediction_results.txt").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def runs(reference, tmp_path_factory):
    """The repeated sample run as the pipeline runs it, and embedding every frame instead."""
    folder = tmp_path_factory.mktemp("repeats")
    copies = with_repeats(reference / "input.fa", folder / "in.fa")
    once, every = folder / "once", folder / "every"
    every.mkdir()
    run_script("prepare_frames.py", "--fasta", folder / "in.fa", "--chunk-size", 300, "--prefix", once / "s", "--shard-tokens", 15000)
    frames = every_frame_its_own_sequence(once, every, "s")
    results = {run: run_after_prepare(reference, run, "s", folder / "in.fa", 300) for run in (once, every)}
    return copies, frames, once, results[once], every, results[every]


def test_each_distinct_sequence_is_embedded_once(runs):
    _, frames, once, _, every, _ = runs
    manifest = contracts.read_shards(once / "s.shards.tsv")
    for kind in contracts.EMBEDDING_KINDS:
        distinct = sum(shard.items for shard in contracts.shards_of(manifest, kind))
        assert embedded(once, kind) == distinct < frames / 2  # every record is repeated at least once
        assert embedded(every, kind) == frames


def test_results_equal_those_of_embedding_every_frame(runs):
    _, _, _, once, _, every = runs
    deduplicated, reference = predictions(once), predictions(every)
    assert [row[:2] for row in deduplicated] == [row[:2] for row in reference]  # the same frames, the same labels
    worst = max(abs(float(a) - float(b)) for x, y in zip(deduplicated, reference) for a, b in zip(x[2:], y[2:]))
    assert worst <= 1e-6
    calls = [(line.split("\t")[1], line.split("\t")[11]) for line in (once / "sequence_calls.tsv").read_text().splitlines()]
    assert calls == [(line.split("\t")[1], line.split("\t")[11]) for line in (every / "sequence_calls.tsv").read_text().splitlines()]
    for name in ("prediction_results_highestscore.csv", "viral_sequences.fasta"):
        assert (once / name).read_bytes() == (every / name).read_bytes()


def test_copies_are_scored_as_their_originals(runs):
    """A copy's frames have its original's vectors: the same label, scores within 1e-6 (the rows
    may sit in batches of other sizes, whose matrix products may round differently)."""
    copies, _, _, once, _, _ = runs
    scores = {row[0]: row[1:] for row in predictions(once)}
    for frame_id, (label, *values) in scores.items():
        sequence_id, _, suffix = frame_id.rpartition("_chunk_")
        original_label, *original_values = scores[f"{copies.get(sequence_id, sequence_id)}_chunk_{suffix}"]
        assert label == original_label and all(abs(float(a) - float(b)) <= 1e-6 for a, b in zip(values, original_values)), frame_id
