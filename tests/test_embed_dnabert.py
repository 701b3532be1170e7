"""embed_dnabert.py and virnucpro.dnabert against the original's DNABERT-S embeddings, and its
refusal of inputs and checkpoints it cannot embed faithfully."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import BIN, SCRIPT_TIMEOUT, run_script
from tolerance import assert_embeddings_match, read_expected_embeddings
from virnucpro import contracts, dnabert
from virnucpro.embedding import embed_token_ids
from virnucpro.errors import VirNucProError

CPU = torch.device("cpu")
LAST_LAYER_NORM = "encoder.layer.2.mlp.layernorm.weight"  # the tiny model has 3 layers


@pytest.fixture(scope="session")
def tiny_model(reference):
    return reference / "models" / "dnabert_s_tiny"


@pytest.fixture(scope="session")
def frames(reference) -> list[tuple[str, str]]:
    from virnucpro.fasta import read_fasta

    return [(r.id, r.sequence) for r in read_fasta(reference / "identified_nucleotide500.fa")]


def checkpoint_dir(tmp_path, tiny_model, state: dict | None = None, weights_name: str = "pytorch_model.bin", config: dict | None = None):
    """A copy of the tiny checkpoint, with ``state`` as its weights and ``config`` changes when given."""
    directory = tmp_path / "model"
    directory.mkdir()
    shutil.copy(tiny_model / contracts.DNABERT_TOKENIZER_FILE, directory)
    values = json.loads((tiny_model / contracts.DNABERT_CONFIG_FILE).read_text())
    (directory / contracts.DNABERT_CONFIG_FILE).write_text(json.dumps({**values, **(config or {})}))
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
    embedder = dnabert.open_checkpoint(str(directory)).load(CPU, dtype)
    return embed_token_ids(embedder, embedder.preprocess(sequences), CPU, batch_tokens)


def embed_script(fasta, model, out, *options, check=False):
    return run_script("embed_dnabert.py", "--fasta", fasta, "--model", model, "--out", out, "--device", "cpu", "--no-progress", "--quiet", *options, check=check)


def read(path) -> tuple[list[str], np.ndarray, dict]:
    with contracts.EmbeddingFile(path, contracts.DNABERT) as embeddings:
        return embeddings.ids(0, embeddings.count), embeddings.vectors(0, embeddings.count), embeddings.attributes


def assert_matches_the_original(path, reference, chunk_size) -> None:
    expected = reference / "expected" / f"dnabert_{chunk_size}.npz"
    ids, vectors, _ = read(path)
    assert ids == read_expected_embeddings(expected)[0]  # in the FASTA's order, as the original
    assert_embeddings_match(ids, vectors, expected)


def assert_refused(result, *phrases) -> None:
    """Exit 1 with one ERROR line holding every phrase, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ERROR [embed_dnabert.py]"), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], result.stderr


# one sequence per batch / all sequences in one padded batch
@pytest.mark.parametrize(("chunk_size", "batch_tokens"), [(500, 1), (300, 1_000_000)])
def test_script_reproduces_the_original(reference, tiny_model, tmp_path, chunk_size, batch_tokens):
    out = tmp_path / "x.h5"
    embed_script(reference / f"identified_nucleotide{chunk_size}.fa", tiny_model, out, "--precision", "fp32", "--batch-tokens", batch_tokens, check=True)
    assert_matches_the_original(out, reference, chunk_size)
    with h5py.File(out) as handle:
        assert handle["embeddings"].dtype == np.float32
        assert dict(handle.attrs) | {"ids_sha256": None} == {
            "model_role": "dnabert", "model": "dnabert_s_tiny", "layer": 3, "pooling": dnabert.DNABertCheckpoint.pooling,
            "precision": "fp32", "dtype": "float32", "dim": 96, "ids_sha256": None,
        }


def test_rerun_is_byte_identical_and_metrics_are_written(reference, tiny_model, tmp_path):
    fasta = reference / "identified_nucleotide300.fa"
    outputs = []
    for run in (1, 2):  # batches of a few sequences each, with padding
        out, metrics = tmp_path / f"run{run}.h5", tmp_path / f"run{run}.json"
        embed_script(fasta, tiny_model, out, "--batch-tokens", 700, "--metrics", metrics, check=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert_matches_the_original(out, reference, 300)
    values = json.loads(metrics.read_text())
    frames = read(out)[0]
    assert values["stage"] == "embed_dnabert" and values["name"] == "identified_nucleotide300"
    assert values["items"] == len(frames)
    assert values["tokens"] > 2 * len(frames)  # at least [CLS] + [SEP] + one token each
    assert values["device"] == "cpu" and values["precision"] == "fp32"
    assert values["peak_gpu_memory_bytes"] is None and values["compile_seconds"] is None
    assert all(values[key] > 0 for key in ("seconds", "load_seconds", "tokenize_seconds"))
    assert values["tokens"] <= values["padded_tokens"] <= 1.1 * values["tokens"] and values["batches"] > 1


def test_bf16_is_stored_as_float16_in_about_half_the_space(reference, tiny_model, tmp_path):
    out = tmp_path / "bf16.h5"
    embed_script(reference / "identified_nucleotide300.fa", tiny_model, out, "--precision", "bf16", check=True)
    with h5py.File(out) as handle:
        assert handle["embeddings"].dtype == np.float16
        assert (handle.attrs["dtype"], handle.attrs["precision"]) == ("float16", "bf16")
        half_storage = handle["embeddings"].id.get_storage_size()
    ids, vectors, _ = read(out)
    expected = np.load(reference / "expected" / "dnabert_300.npz")["embeddings"]
    cosine = (vectors * expected).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.99
    # the same vectors stored at fp32 precision: float32, and the file about twice the size
    full = tmp_path / "fp32.h5"
    contracts.write_embeddings(full, ids, vectors, {"model_role": contracts.DNABERT, "model": "m", "layer": 3, "pooling": "p", "precision": "fp32"})
    with h5py.File(full) as handle:
        assert handle["embeddings"].dtype == np.float32 and handle.attrs["dtype"] == "float32"
        assert half_storage == handle["embeddings"].id.get_storage_size() / 2
    assert out.stat().st_size / full.stat().st_size < 0.65  # the IDs take the rest


def test_empty_fasta_gives_empty_embeddings_without_reading_weights(tiny_model, tmp_path):
    directory = tmp_path / "config_only"
    directory.mkdir()
    shutil.copy(tiny_model / contracts.DNABERT_CONFIG_FILE, directory)
    fasta = tmp_path / "empty.fna"
    fasta.write_text("")
    embed_script(fasta, directory, tmp_path / "x.h5", check=True)
    ids, vectors, _ = read(tmp_path / "x.h5")
    assert ids == [] and vectors.shape == (0, 96)


def test_a_protein_fasta_is_refused_naming_the_record_and_letters(reference, tiny_model, tmp_path):
    result = embed_script(reference / "identified_protein500.faa", tiny_model, tmp_path / "x.h5")
    assert_refused(result, "identified_protein500.faa", "record 'contig_000_chunk_1F3'", "looks like protein", "'EILPQ'")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize(("sequence", "problem"), [
    ("ACGTUNRYSWKMBDHV", None),
    ("acgt", "letters 'acgt' are not upper-case IUPAC nucleotide codes"),
    ("ACGT-NNX*", "letters '*-X' are not upper-case IUPAC nucleotide codes"),
    ("MKLVE", "looks like protein"),
    ("", "empty sequence"),
])
def test_frames_must_be_upper_case_iupac_codes(sequence, problem):
    found = dnabert.sequence_problem(sequence)
    assert found == problem if problem is None else problem in found


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
    state["encoder.layer.0.mlp.wo.weight"] = state["encoder.layer.0.mlp.wo.weight"].long()
    with pytest.raises(VirNucProError) as error:
        dnabert.open_checkpoint(str(checkpoint_dir(tmp_path, tiny_model, state))).load(CPU, torch.float32)
    message = str(error.value)
    assert "missing weights encoder.layer.1.mlp.wo.bias" in message
    assert "unexpected weights encoder.layer.0.attention.self.extra" in message
    assert "embeddings.LayerNorm.weight has shape (95,)" in message
    assert "encoder.layer.0.mlp.wo.weight is torch.int64, not floating point" in message


def test_bad_checkpoint_is_one_line_error(tiny_model, tmp_path, reference):
    state = tiny_state(tiny_model)
    del state["embeddings.word_embeddings.weight"]
    result = embed_script(reference / "identified_nucleotide500.fa", checkpoint_dir(tmp_path, tiny_model, state), tmp_path / "x.h5")
    assert_refused(result, "missing weights embeddings.word_embeddings.weight")
    assert not (tmp_path / "x.h5").exists()


def test_a_config_the_weights_do_not_have_is_refused_before_building(tiny_model, tmp_path, reference):
    """200,000 layers would take minutes and many GB to build: the weights' 3 layers say no first."""
    directory = checkpoint_dir(tmp_path, tiny_model, config={"num_hidden_layers": 200_000, "intermediate_size": 64})
    command = [sys.executable, BIN / "embed_dnabert.py", "--fasta", reference / "identified_nucleotide500.fa",
               "--model", directory, "--out", tmp_path / "x.h5", "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
    assert_refused(result, "config.json does not match the weights", "num_hidden_layers 200000, the weights have 3",
                   "intermediate_size 64, the weights have 192")


@pytest.mark.parametrize(("value", "refusal"), [
    (float("nan"), f"the weight {LAST_LAYER_NORM} holds NaN or Inf (fp32)"),
    # finite weights whose last LayerNorm overflows float32: the embeddings are Inf
    (3e38, "the DNABERT-S embedding of frame 'contig_000_chunk_1F3' holds NaN or Inf"),
])
def test_non_finite_weights_or_embeddings_are_refused(tiny_model, tmp_path, value, refusal):
    state = tiny_state(tiny_model)
    state[LAST_LAYER_NORM].fill_(value)
    fasta = tmp_path / "frames.fna"
    fasta.write_text(">contig_000_chunk_1F3\nCAATTACATAACATACACGTCAGCACG\n>contig_000_chunk_1R2\nACTTTCTCCCGAGG\n")
    result = embed_script(fasta, checkpoint_dir(tmp_path, tiny_model, state), tmp_path / "x.h5")
    assert_refused(result, refusal)
    assert not (tmp_path / "x.h5").exists()


class Stranger:
    """A class no weights file holds."""


def test_a_pickled_class_is_refused_by_name(tiny_model, tmp_path, reference):
    state = tiny_state(tiny_model)
    state["embeddings.LayerNorm.weight"] = Stranger()
    result = embed_script(reference / "identified_nucleotide500.fa", checkpoint_dir(tmp_path, tiny_model, state), tmp_path / "x.h5")
    assert_refused(result, "pytorch_model.bin: refused to load", "Stranger")
    assert "weights_only" not in result.stderr


def self_referencing_state(tiny_model) -> dict:
    state = tiny_state(tiny_model)
    state["encoder"] = state
    return state


@pytest.mark.parametrize(("make_state", "refusal"), [
    (self_referencing_state, "the file holds a value of type OrderedDict under 'encoder', not a tensor"),
    (lambda tiny_model: [torch.zeros(2)], "the file is of type list, not a dict of tensors"),
])
def test_a_pickle_of_other_structures_is_refused_in_one_line(tiny_model, tmp_path, make_state, refusal):
    directory = checkpoint_dir(tmp_path, tiny_model, make_state(tiny_model))
    with pytest.raises(VirNucProError, match=refusal) as error:
        dnabert.open_checkpoint(str(directory)).load(CPU, torch.float32)
    assert "\n" not in str(error.value)


def test_a_malformed_pickle_is_one_line(tiny_model, tmp_path):
    import zipfile

    directory = checkpoint_dir(tmp_path, tiny_model)
    weights = directory / "pytorch_model.bin"
    with zipfile.ZipFile(tiny_model / "pytorch_model.bin") as original, zipfile.ZipFile(weights, "w") as broken:
        for item in original.infolist():  # the pickle's stack underflows on its first opcode
            broken.writestr(item, b"\x80\x02s." if item.filename.endswith("data.pkl") else original.read(item))
    with pytest.raises(VirNucProError, match=r"pytorch_model.bin: not a readable PyTorch checkpoint \(IndexError") as error:
        dnabert.open_checkpoint(str(directory)).load(CPU, torch.float32)
    assert "\n" not in str(error.value)


def test_unknown_model_offline_is_a_clear_error(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hub"))  # an empty cache
    result = embed_script(reference / "identified_nucleotide500.fa", "nobody/no-such-model", tmp_path / "x.h5")
    assert_refused(result, "'nobody/no-such-model' is not a directory and could not be fetched", "HF_HUB_OFFLINE")


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
    checkpoint = dnabert.open_checkpoint("someone/dnabert-s-tiny")
    assert checkpoint.directory == snapshot and checkpoint.name == "someone/dnabert-s-tiny"


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
