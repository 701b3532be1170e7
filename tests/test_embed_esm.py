"""embed_esm.py against the original's ESM-2 embeddings, and its handling of bad input: proteins
it cannot embed, checkpoints it must not trust, and a disk that fills up."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from conftest import BIN, SCRIPT_TIMEOUT
from small_disk import small_disk
from tolerance import assert_embeddings_match

from virnucpro import contracts, esm
from virnucpro.embedding import embed_token_ids
from virnucpro.errors import VirNucProError
from virnucpro.fasta import read_fasta

DISK_FULL_EXIT = 74


def tiny_model(reference):
    return reference / "models" / "esm2_t36_tiny_UR50D.pt"


def embed(reference, fasta, out, *options, model=None, check=True, timeout=None):
    """embed_esm.py as the pipeline runs it, with the tiny model unless ``model`` is given."""
    command = [sys.executable, BIN / "embed_esm.py", "--fasta", fasta, "--model", model or tiny_model(reference), "--out", out,
               "--device", "cpu", "--no-progress", "--quiet", *options]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def read(path) -> tuple[list[str], np.ndarray, dict]:
    with contracts.EmbeddingFile(path, contracts.ESM) as embeddings:
        return embeddings.ids(0, embeddings.count), embeddings.vectors(0, embeddings.count), embeddings.attributes


def modified_checkpoint(reference, tmp_path, change) -> str:
    """The tiny checkpoint with ``change`` applied to its dict, saved beside the test."""
    checkpoint = torch.load(tiny_model(reference), weights_only=False)
    change(checkpoint)
    path = tmp_path / "esm2_t36_changed.pt"
    torch.save(checkpoint, path)
    return str(path)


def assert_refused(result, *phrases, exit_code=1) -> None:
    """The exit status and one ERROR line holding every phrase, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == exit_code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ERROR [embed_esm.py]"), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], result.stderr


# one protein per batch / all proteins in one padded batch
@pytest.mark.parametrize("chunk_size, batch_tokens", [(500, 1), (300, 1_000_000)])
def test_matches_the_original_in_input_order(reference, tmp_path, chunk_size, batch_tokens):
    fasta = reference / f"identified_protein{chunk_size}.faa"
    out, metrics = tmp_path / "esm.h5", tmp_path / "metrics.json"
    embed(reference, fasta, out, "--batch-tokens", batch_tokens, "--metrics", metrics)

    ids, vectors, attributes = read(out)
    records = list(read_fasta(fasta))
    assert ids == [record.id for record in records]
    assert_embeddings_match(ids, vectors, reference / "expected" / f"esm_{chunk_size}.npz")
    with h5py.File(out) as handle:
        assert handle["embeddings"].dtype == np.float32
    assert attributes | {"ids_sha256": None} == {
        "model_role": "esm", "model": "esm2_t36_tiny_UR50D", "layer": 36, "pooling": esm.ESMCheckpoint.pooling,
        "precision": "fp32", "dtype": "float32", "dim": 32, "ids_sha256": None,
    }

    figures = json.loads(metrics.read_text())
    assert figures["stage"] == "embed_esm"
    assert figures["items"] == len(records)
    assert figures["tokens"] == sum(len(record.sequence) + 2 for record in records)
    assert figures["device"] == "cpu" and figures["peak_gpu_memory_bytes"] is None
    assert figures["compile_seconds"] is None
    assert all(figures[key] > 0 for key in ("seconds", "load_seconds", "tokenize_seconds"))
    assert figures["host_wait_seconds"] >= 0
    if batch_tokens == 1:  # each protein alone: no padding
        assert (figures["batches"], figures["padded_tokens"]) == (len(records), figures["tokens"])
    else:  # one budget holds them all: length groups keep the padding within a tenth
        assert figures["batches"] < len(records) and figures["tokens"] <= figures["padded_tokens"] <= 1.1 * figures["tokens"]


def test_rerun_is_byte_identical(reference, tmp_path):
    fasta = reference / "identified_protein500.faa"
    embed(reference, fasta, tmp_path / "a.h5")
    embed(reference, fasta, tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_a_legacy_format_checkpoint_gives_the_same_embeddings(reference, tmp_path):
    # torch's pre-zip format cannot be memory-mapped; it is read whole instead
    legacy = tmp_path / "esm2_t36_tiny_UR50D.pt"
    torch.save(torch.load(tiny_model(reference), weights_only=False), legacy, _use_new_zipfile_serialization=False)
    fasta = reference / "identified_protein500.faa"
    embed(reference, fasta, tmp_path / "zip.h5")
    embed(reference, fasta, tmp_path / "legacy.h5", model=legacy)
    assert np.array_equal(read(tmp_path / "legacy.h5")[1], read(tmp_path / "zip.h5")[1])


def test_empty_input_gives_an_empty_matrix(reference, tmp_path):
    fasta = tmp_path / "empty.faa"
    fasta.write_text("")
    embed(reference, fasta, tmp_path / "out.h5", "--metrics", tmp_path / "m.json")
    with h5py.File(tmp_path / "out.h5") as handle:
        assert handle["embeddings"].shape == (0, 32)
        assert handle["ids"].shape == (0,)
    assert json.loads((tmp_path / "m.json").read_text())["items"] == 0


@pytest.mark.parametrize("sequence, problem", [
    ("MKTJQ", "letters outside the ESM-2 protein alphabet (upper-case amino-acid codes, X, B, U, Z, O, '.', '-'): 'J'"),
    ("mktaq", "'akmqt'"),
    ("MKT*", "'*'"),
    ("", "empty protein sequence"),
    ("ACGTTGCAACGTGGCCAATTGA", "looks like nucleotides, not protein (22 letters, all ACGT)"),
])
def test_bad_protein_is_an_error_naming_the_record(reference, tmp_path, sequence, problem):
    fasta = tmp_path / "bad.faa"
    fasta.write_text(f">good\nMKTAYIAK\n>broken_frame\n{sequence}\n")
    result = embed(reference, fasta, tmp_path / "out.h5", check=False)
    assert_refused(result, "bad.faa, record 'broken_frame'", problem)
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("sequence", [
    "A" * 40,  # poly-alanine (GCN repeats)
    "GAGAGAGAGAGAGAGAGAGAGAGA",  # (GGNGCN)n
    "ACGTACGTACGTACGTACG",  # shorter than a nucleotide look-alike
    "MKTAYIAKQRQISFVKSHFSRQ.-XBUZO",
])
def test_proteins_that_only_resemble_nucleotides_are_embedded(sequence):
    assert esm.sequence_problem(sequence) is None


class RunsShellCommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_refuses_a_checkpoint_that_would_run_code_naming_what_it_refused(reference, tmp_path):
    marker = tmp_path / "code_ran"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"cfg": {"model": RunsShellCommand(str(marker))}, "model": {}}, checkpoint, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    result = embed(reference, reference / "identified_protein500.faa", tmp_path / "out.h5", model=checkpoint, check=False)
    assert_refused(result, "evil.pt: refused to load: its pickle references posix.system", "nothing from it was run")
    assert "weights_only" not in result.stderr
    assert not marker.exists()


def test_pickle_protocols_torch_cannot_read_are_named(tmp_path):
    """torch's weights-only loader stops at protocol 4's first opcode: refused classes are then
    found by scanning the opcodes, and a clean file is told which protocol to save with."""
    evil, clean = tmp_path / "evil.pt", tmp_path / "clean.pt"
    torch.save({"cfg": {"model": RunsShellCommand("x")}, "model": {}}, evil, pickle_protocol=2)
    torch.save({"cfg": {"model": argparse.Namespace(encoder_layers=1)}, "model": {}}, clean, pickle_protocol=5)
    with pytest.raises(VirNucProError, match="evil.pt: refused to load: its pickle references posix.system"):
        esm.read_checkpoint(evil)
    with pytest.raises(VirNucProError, match="clean.pt: pickle protocol 5, which torch's weights-only loader cannot read"):
        esm.read_checkpoint(clean)


def test_a_self_referencing_or_malformed_pickle_is_one_line(reference, tmp_path):
    state: dict = {}
    state["embed_tokens.weight"] = state
    cyclic = tmp_path / "cyclic.pt"
    torch.save({"cfg": {"model": argparse.Namespace(encoder_layers=1)}, "model": state}, cyclic)
    with pytest.raises(VirNucProError, match="'model' holds a value of type dict under 'embed_tokens.weight', not a tensor") as error:
        esm.open_checkpoint(str(cyclic), None, "off")
    assert "\n" not in str(error.value)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_model(reference).read_bytes()[:100_000])
    with pytest.raises(VirNucProError, match=r"truncated.pt: truncated or damaged PyTorch checkpoint") as error:
        esm.open_checkpoint(str(truncated), None, "off")
    assert "\n" not in str(error.value)


def test_refuses_a_checkpoint_that_is_not_esm2(reference, tmp_path):
    checkpoint = tmp_path / "esm1b_like.pt"
    torch.save({"cfg": {"model": {"encoder_layers": 1, "encoder_embed_dim": 8, "encoder_attention_heads": 2}},
                "model": {"encoder.sentence_encoder.embed_positions.weight": torch.zeros(4, 8)}}, checkpoint)
    result = embed(reference, reference / "identified_protein500.faa", tmp_path / "out.h5", model=checkpoint, check=False)
    assert_refused(result, "not an ESM-2 checkpoint")


def test_a_cfg_the_weights_do_not_have_is_refused_before_building(reference, tmp_path):
    """The 2 MB tiny checkpoint claiming 200,000 layers would build for minutes and many GB."""

    def claim(checkpoint):
        checkpoint["cfg"]["model"].encoder_layers = 200_000

    model = modified_checkpoint(reference, tmp_path, claim)
    result = embed(reference, reference / "identified_protein500.faa", tmp_path / "out.h5", model=model, check=False, timeout=SCRIPT_TIMEOUT)
    assert_refused(result, "esm2_t36_changed.pt: cfg does not match the weights: cfg says encoder_layers 200000, the weights have 36")


@pytest.mark.parametrize("sizes, mismatch", [
    ({"encoder_embed_dim": 64}, "encoder_embed_dim 64, the weights have 32"),
    ({"encoder_attention_heads": 8}, "encoder_attention_heads 8, the weights have 4"),
])
def test_cfg_sizes_are_checked_against_the_tensor_shapes(reference, tmp_path, sizes, mismatch):
    model = modified_checkpoint(reference, tmp_path, lambda checkpoint: vars(checkpoint["cfg"]["model"]).update(sizes))
    with pytest.raises(VirNucProError, match=mismatch):
        esm.open_checkpoint(model, None, "off")


@pytest.mark.parametrize("value, refusal", [
    (float("nan"), "the weight emb_layer_norm_after.weight holds NaN or Inf (fp32)"),
    # finite weights whose final LayerNorm overflows float32: the embeddings are Inf
    (3e38, "the ESM-2 embedding of frame 'first' holds NaN or Inf"),
])
def test_non_finite_weights_or_embeddings_are_refused(reference, tmp_path, value, refusal):
    model = modified_checkpoint(reference, tmp_path, lambda checkpoint: checkpoint["model"]["encoder.emb_layer_norm_after.weight"].fill_(value))
    fasta = tmp_path / "frames.faa"
    fasta.write_text(">first\nMKTAYIAKQR\n>second\nGVLSEED\n")
    result = embed(reference, fasta, tmp_path / "out.h5", model=model, check=False)
    assert_refused(result, refusal)
    assert not (tmp_path / "out.h5").exists()


def test_a_full_disk_is_exit_74_in_one_line_and_leaves_no_file(reference, tmp_path):
    fasta = tmp_path / "many.faa"
    # 4000 frames with long IDs: about 1.5 MB of embeddings file for a 1 MB disk (layer 1: quick)
    fasta.write_text("".join(f">frame_{index:05d}_{'x' * 190}\nMKV\n" for index in range(4000)))
    with small_disk(1 << 20) as disk:
        result = embed(reference, fasta, disk / "x.h5", "--layer", "1", check=False)
        left = sorted(path.name for path in disk.iterdir())
    assert_refused(result, "x.h5: no space left on the device", exit_code=DISK_FULL_EXIT)
    assert left == []


def test_layer_outside_the_model_is_an_error(reference, tmp_path):
    result = embed(reference, reference / "identified_protein500.faa", tmp_path / "out.h5", "--layer", "37", check=False)
    assert_refused(result, "0..36")


def test_out_of_memory_on_one_protein_names_the_shard_and_the_option():
    from virnucpro.errors import GpuOutOfMemoryError
    from virnucpro.modeling_esm2 import ESM2Config

    class OutOfMemoryModel(torch.nn.Module):
        config = ESM2Config(num_layers=1, embed_dim=8, attention_heads=2)

        def forward(self, tokens, attention_mask):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    token_ids = [np.array([5, 6, 7]), np.array([5, 6])]
    with pytest.raises(GpuOutOfMemoryError, match=r"shard\.0001\.faa.*lower --batch-tokens"):
        embed_token_ids(esm.ESMEmbedder(OutOfMemoryModel(), "off"), token_ids, torch.device("cpu"), 64, source="shard.0001.faa")


def test_a_cuda_device_the_machine_lacks_is_a_clear_error(monkeypatch):
    from virnucpro.embedding import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(VirNucProError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
