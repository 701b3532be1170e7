"""embed_dnabert.py and virnucpro.dnabert against the original's DNABERT-S embeddings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import run_script
from virnucpro import dnabert
from virnucpro.embedding import read_embeddings
from virnucpro.errors import VirNucProError

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def tiny_model(reference):
    return reference / "models" / "dnabert_s_tiny"


@pytest.fixture(scope="session")
def frames(reference) -> list[tuple[str, str]]:
    from virnucpro.fasta import read_fasta

    return [(r.id, r.sequence) for r in read_fasta(reference / "identified_nucleotide500.fa")]


def checkpoint_dir(tmp_path, tiny_model, state: dict | None = None, weights_name: str = "pytorch_model.bin"):
    """A copy of the tiny checkpoint, with ``state`` as its weights when given."""
    directory = tmp_path / "model"
    directory.mkdir()
    for name in (dnabert.CONFIG_FILE, dnabert.TOKENIZER_FILE):
        shutil.copy(tiny_model / name, directory / name)
    if state is None:
        shutil.copy(tiny_model / "pytorch_model.bin", directory / "pytorch_model.bin")
    elif weights_name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, directory / weights_name)
    else:
        torch.save(state, directory / weights_name)
    return directory


def tiny_state(tiny_model) -> dict[str, torch.Tensor]:
    return torch.load(tiny_model / "pytorch_model.bin", weights_only=True)


def embed(directory, sequences, dtype=torch.float32, batch_tokens=4096) -> np.ndarray:
    model = dnabert.load_model(directory, CPU, dtype)
    tokenizer = dnabert.load_tokenizer(directory, model.config.vocab_size)
    return dnabert.embed_sequences(model, tokenizer, sequences, CPU, batch_tokens)


def assert_matches_the_original(path, reference, chunk_size) -> None:
    expected = np.load(reference / "expected" / f"dnabert_{chunk_size}.npz")
    result = read_embeddings(path)
    assert result.ids == [str(i) for i in expected["ids"]]
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(result.vectors, expected["embeddings"], atol=1e-4, rtol=0)


# one sequence per batch / all sequences in one padded batch
@pytest.mark.parametrize(("chunk_size", "batch_tokens"), [(300, 1), (500, 1_000_000)])
def test_script_reproduces_the_original(reference, tiny_model, tmp_path, chunk_size, batch_tokens):
    out = tmp_path / "x.h5"
    run_script(
        "embed_dnabert.py", "--fasta", reference / f"identified_nucleotide{chunk_size}.fa", "--model", tiny_model,
        "--out", out, "--device", "cpu", "--precision", "fp32", "--batch-tokens", batch_tokens, "--no-progress",
    )
    assert_matches_the_original(out, reference, chunk_size)
    result = read_embeddings(out)
    assert result.attributes["dim"] == result.vectors.shape[1]
    assert result.attributes["precision"] == "fp32"
    assert result.attributes["layer"] == "last"
    assert result.attributes["model"] == str(tiny_model)


def test_rerun_is_byte_identical_and_metrics_are_written(reference, tiny_model, tmp_path):
    fasta = reference / "identified_nucleotide300.fa"
    outputs = []
    for run in (1, 2):  # batches of a few sequences each, with padding
        out, metrics = tmp_path / f"run{run}.h5", tmp_path / f"run{run}.json"
        run_script("embed_dnabert.py", "--fasta", fasta, "--model", tiny_model, "--out", out, "--device", "cpu",
                   "--batch-tokens", 700, "--metrics", metrics)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert_matches_the_original(out, reference, 300)
    values = json.loads(metrics.read_text())
    frames = read_embeddings(out).ids
    assert values["stage"] == "embed_dnabert"
    assert values["items"] == len(frames)
    assert values["tokens"] > 2 * len(frames)  # at least [CLS] + [SEP] + one token each
    assert values["device"] == "cpu" and values["precision"] == "fp32"
    assert values["peak_gpu_memory_bytes"] is None
    assert values["seconds"] >= 0 and values["load_seconds"] >= 0


def test_empty_fasta_gives_empty_embeddings_without_reading_weights(tiny_model, tmp_path):
    directory = tmp_path / "config_only"
    directory.mkdir()
    shutil.copy(tiny_model / dnabert.CONFIG_FILE, directory)
    fasta = tmp_path / "empty.fna"
    fasta.write_text("")
    run_script("embed_dnabert.py", "--fasta", fasta, "--model", directory, "--out", tmp_path / "x.h5", "--device", "cpu")
    result = read_embeddings(tmp_path / "x.h5")
    assert result.ids == [] and result.vectors.shape == (0, 96)


def test_bert_prefix_and_heads_are_ignored(tiny_model, tmp_path, frames):
    state = {f"bert.{key}": tensor for key, tensor in tiny_state(tiny_model).items()}
    state["cls.predictions.decoder.weight"] = torch.zeros(4096, 96)
    sequences = [sequence for _, sequence in frames[:5]]
    renamed = embed(checkpoint_dir(tmp_path, tiny_model, state), sequences)
    np.testing.assert_array_equal(renamed, embed(tiny_model, sequences))


def test_safetensors_weights_load(tiny_model, tmp_path, frames):
    sequences = [sequence for _, sequence in frames[:5]]
    directory = checkpoint_dir(tmp_path, tiny_model, tiny_state(tiny_model), "model.safetensors")
    np.testing.assert_array_equal(embed(directory, sequences), embed(tiny_model, sequences))


def test_missing_unexpected_and_misshapen_weights_are_named(tiny_model, tmp_path):
    state = tiny_state(tiny_model)
    del state["encoder.layer.1.mlp.wo.bias"]
    state["encoder.layer.0.attention.self.extra"] = torch.zeros(3)
    state["embeddings.LayerNorm.weight"] = torch.ones(95)
    with pytest.raises(VirNucProError) as error:
        dnabert.load_model(checkpoint_dir(tmp_path, tiny_model, state), CPU, torch.float32)
    message = str(error.value)
    assert "missing weights encoder.layer.1.mlp.wo.bias" in message
    assert "unexpected weights encoder.layer.0.attention.self.extra" in message
    assert "embeddings.LayerNorm.weight has shape (95,)" in message


def test_bad_checkpoint_is_one_line_error(tiny_model, tmp_path, reference):
    state = tiny_state(tiny_model)
    del state["embeddings.word_embeddings.weight"]
    result = run_script(
        "embed_dnabert.py", "--fasta", reference / "identified_nucleotide500.fa", "--model",
        checkpoint_dir(tmp_path, tiny_model, state), "--out", tmp_path / "x.h5", "--device", "cpu", check=False,
    )
    assert result.returncode == 1
    assert "missing weights embeddings.word_embeddings.weight" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_unknown_model_offline_is_a_clear_error(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hub"))  # an empty cache
    result = run_script(
        "embed_dnabert.py", "--fasta", reference / "identified_nucleotide500.fa", "--model", "nobody/no-such-model",
        "--out", tmp_path / "x.h5", "--device", "cpu", check=False,
    )
    assert result.returncode == 1
    assert "'nobody/no-such-model' is not a directory and could not be fetched" in result.stderr
    assert "HF_HUB_OFFLINE" in result.stderr
    assert "Traceback" not in result.stderr


def test_hub_id_is_read_from_the_cache_offline(tiny_model, tmp_path, monkeypatch):
    """A snapshot laid out as huggingface_hub stores it is found by its hub ID with HF_HUB_OFFLINE=1."""
    commit = "0" * 40
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--dnabert-s-tiny" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in tiny_model.iterdir():
        shutil.copy(path, snapshot / path.name)
    (cache / "models--someone--dnabert-s-tiny" / "refs").mkdir()
    (cache / "models--someone--dnabert-s-tiny" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert dnabert.locate_model("someone/dnabert-s-tiny") == snapshot


def test_bf16_runs_on_cpu_close_to_fp32(tiny_model, frames):
    sequences = [sequence for _, sequence in frames[:8]]
    full = embed(tiny_model, sequences)
    half = embed(tiny_model, sequences, dtype=torch.bfloat16)
    assert half.dtype == np.float32
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() > 0.99


def test_lowercase_and_n_become_unknown_tokens(tiny_model):
    tokenizer = dnabert.load_tokenizer(tiny_model, 4096)
    unknown = tokenizer.token_to_id("[UNK]")
    ids = dnabert.tokenize(tokenizer, ["acgt", "NNNN", "ACGT"])
    assert ids[0][0] == tokenizer.token_to_id("[CLS]") and ids[0][-1] == tokenizer.token_to_id("[SEP]")
    assert unknown in ids[0][1:-1] and unknown in ids[1][1:-1]
    assert unknown not in ids[2]
