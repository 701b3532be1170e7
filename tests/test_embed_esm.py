"""embed_esm.py against the original's ESM-2 embeddings, and its handling of bad input."""

from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from conftest import run_script

from virnucpro.embedding import read_embeddings
from virnucpro.fasta import read_fasta


def tiny_model(reference):
    return reference / "models" / "esm2_t36_tiny_UR50D.pt"


def embed(reference, fasta, out, *options, check=True):
    return run_script(
        "embed_esm.py", "--fasta", fasta, "--model", tiny_model(reference), "--out", out,
        "--device", "cpu", "--no-progress", *options, check=check,
    )


@pytest.mark.parametrize("chunk_size, batch_tokens", [(300, 1), (300, 1_000_000), (500, 1), (500, 1_000_000)])
def test_matches_the_original_in_input_order(reference, tmp_path, chunk_size, batch_tokens):
    fasta = reference / f"identified_protein{chunk_size}.faa"
    out, metrics = tmp_path / "esm.h5", tmp_path / "metrics.json"
    embed(reference, fasta, out, "--batch-tokens", batch_tokens, "--metrics", metrics)

    result = read_embeddings(out)
    records = list(read_fasta(fasta))
    assert result.ids == [record.id for record in records]
    expected = np.load(reference / "expected" / f"esm_{chunk_size}.npz")
    row_of = {identifier: row for row, identifier in enumerate(expected["ids"].tolist())}
    assert sorted(row_of) == sorted(result.ids)
    np.testing.assert_allclose(result.vectors, expected["embeddings"][[row_of[i] for i in result.ids]], rtol=0, atol=1e-4)
    assert result.vectors.dtype == np.float32
    assert result.attributes["model"] == "esm2_t36_tiny_UR50D"
    assert result.attributes["layer"] == 36
    assert result.attributes["precision"] == "fp32"
    assert result.attributes["dim"] == 32
    assert "BOS/EOS excluded" in result.attributes["pooling"]

    figures = json.loads(metrics.read_text())
    assert figures["stage"] == "embed_esm"
    assert figures["items"] == len(records)
    assert figures["tokens"] == sum(len(record.sequence) + 2 for record in records)
    assert figures["device"] == "cpu" and figures["peak_gpu_memory_bytes"] is None
    assert figures["compile_seconds"] is None


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
    run_script("embed_esm.py", "--fasta", fasta, "--model", legacy, "--out", tmp_path / "legacy.h5", "--device", "cpu", "--no-progress")
    assert np.array_equal(read_embeddings(tmp_path / "legacy.h5").vectors, read_embeddings(tmp_path / "zip.h5").vectors)


def test_empty_input_gives_an_empty_matrix(reference, tmp_path):
    fasta = tmp_path / "empty.faa"
    fasta.write_text("")
    embed(reference, fasta, tmp_path / "out.h5", "--metrics", tmp_path / "m.json")
    with h5py.File(tmp_path / "out.h5") as handle:
        assert handle["embeddings"].shape == (0, 32)
        assert handle["ids"].shape == (0,)
    assert json.loads((tmp_path / "m.json").read_text())["items"] == 0


@pytest.mark.parametrize("sequence", ["MKTJQ", "mktaq", "MKT*", ""])
def test_bad_protein_is_an_error_naming_the_record(reference, tmp_path, sequence):
    fasta = tmp_path / "bad.faa"
    fasta.write_text(f">good\nMKTAYIAK\n>broken_frame\n{sequence}\n")
    result = embed(reference, fasta, tmp_path / "out.h5", check=False)
    assert result.returncode == 1
    assert "broken_frame" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.h5").exists()


class RunsShellCommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_refuses_a_checkpoint_that_would_run_code(reference, tmp_path):
    marker = tmp_path / "code_ran"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"cfg": {"model": RunsShellCommand(str(marker))}, "model": {}}, checkpoint, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    result = run_script(
        "embed_esm.py", "--fasta", reference / "identified_protein500.faa", "--model", checkpoint,
        "--out", tmp_path / "out.h5", "--device", "cpu", check=False,
    )
    assert result.returncode == 1
    assert "refused to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_refuses_a_checkpoint_that_is_not_esm2(reference, tmp_path):
    checkpoint = tmp_path / "esm1b_like.pt"
    torch.save({"cfg": {"model": {"encoder_layers": 1, "encoder_embed_dim": 8, "encoder_attention_heads": 2}},
                "model": {"encoder.sentence_encoder.embed_positions.weight": torch.zeros(4, 8)}}, checkpoint)
    result = run_script(
        "embed_esm.py", "--fasta", reference / "identified_protein500.faa", "--model", checkpoint,
        "--out", tmp_path / "out.h5", "--device", "cpu", check=False,
    )
    assert result.returncode == 1
    assert "not an ESM-2 checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_layer_outside_the_model_is_an_error(reference, tmp_path):
    result = embed(reference, reference / "identified_protein500.faa", tmp_path / "out.h5", "--layer", "37", check=False)
    assert result.returncode == 1 and "0..36" in result.stderr


def test_out_of_memory_on_one_protein_names_the_shard_and_the_option():
    from virnucpro import esm
    from virnucpro.errors import GpuOutOfMemoryError
    from virnucpro.modeling_esm2 import ESM2Config

    class OutOfMemoryModel(torch.nn.Module):
        config = ESM2Config(num_layers=1, embed_dim=8, attention_heads=2)

        def forward(self, tokens, attention_mask):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    token_ids = [np.array([5, 6, 7]), np.array([5, 6])]
    with pytest.raises(GpuOutOfMemoryError, match=r"shard\.0001\.faa.*lower --batch-tokens"):
        esm.embed_token_ids(OutOfMemoryModel(), token_ids, torch.device("cpu"), 64, source="shard.0001.faa")


def test_a_cuda_device_the_machine_lacks_is_a_clear_error(monkeypatch):
    from virnucpro.embedding import resolve_device
    from virnucpro.errors import VirNucProError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(VirNucProError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
