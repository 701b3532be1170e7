"""Classifier loading (safely) and frame scoring against the original's predictions."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_script
from virnucpro.classifier import MLPClassifier, load_classifier, predict
from virnucpro.embedding import write_embeddings
from virnucpro.errors import InputError


def embeddings_to_hdf5(npz_path, h5_path) -> None:
    data = np.load(npz_path)
    write_embeddings(h5_path, [str(i) for i in data["ids"]], data["embeddings"], {"dim": data["embeddings"].shape[1]})


def read_prediction_rows(path) -> list[list[str]]:
    lines = open(path).read().splitlines()
    assert lines[0] == "Sequence_ID\tPrediction\tscore1\tscore2"
    return [line.split("\t") for line in lines[1:]]


@pytest.fixture(scope="module")
def tiny_classifier(reference):
    return reference / "models" / "classifier_tiny.pth"


@pytest.fixture(scope="module")
def tiny_weights(tiny_classifier):
    return {name: value.clone() for name, value in load_classifier(tiny_classifier).state_dict().items()}


def test_loads_the_original_pickled_model(tiny_classifier):
    model = load_classifier(tiny_classifier)
    assert isinstance(model, MLPClassifier)
    assert not model.training
    assert model.input_dim == 128
    assert model.hidden_layer.out_features == 512 and model.output_layer.out_features == 2
    # the running statistics were taken from the file, not left at their defaults
    assert not torch.allclose(model.bn1.running_var, torch.ones(512))


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "marker"
    Exploit.marker = marker
    malicious = tmp_path / "evil.pth"
    torch.save({"hidden_layer.weight": Exploit()}, malicious)
    with pytest.raises(InputError) as error:
        load_classifier(malicious)
    assert not marker.exists()
    assert str(malicious) in str(error.value)
    assert "system" in str(error.value) and "refusing" in str(error.value)

    result = run_script("classify_frames.py", "--dnabert", tmp_path / "x.h5", "--esm", tmp_path / "y.h5",
                        "--classifier", malicious, "--out", tmp_path / "z.tsv", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "refusing" in result.stderr
    assert not marker.exists() and not (tmp_path / "z.tsv").exists()


def test_refuses_files_that_are_not_classifiers(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pth"):
        load_classifier(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match="missing weights hidden_layer.weight"):
        load_classifier(other)
    with pytest.raises(InputError, match="not found"):
        load_classifier(tmp_path / "absent.pth")


def assert_same_model(model, weights) -> None:
    for name, value in model.state_dict().items():
        if name in weights:
            assert torch.equal(value, weights[name]), name


def test_accepts_a_state_dict(tmp_path, tiny_weights):
    path = tmp_path / "classifier_state.pt"
    torch.save(tiny_weights, path)
    assert_same_model(load_classifier(path), tiny_weights)


def test_accepts_safetensors(tmp_path, tiny_weights):
    path = tmp_path / "classifier.safetensors"
    save_file({name: value.contiguous() for name, value in tiny_weights.items()}, str(path))
    assert_same_model(load_classifier(path), tiny_weights)


def test_dimension_mismatch_names_both_numbers(tmp_path, tiny_classifier):
    ids = ["s_chunk_1F1", "s_chunk_1R1"]
    write_embeddings(tmp_path / "d.h5", ids, np.zeros((2, 96), np.float32), {})
    write_embeddings(tmp_path / "e.h5", ids, np.zeros((2, 40), np.float32), {})
    result = run_script("classify_frames.py", "--dnabert", tmp_path / "d.h5", "--esm", tmp_path / "e.h5",
                        "--classifier", tiny_classifier, "--out", tmp_path / "z.tsv", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "128" in result.stderr and "136" in result.stderr
    assert not (tmp_path / "z.tsv").exists()


def test_ids_must_match_between_embedding_files(tmp_path, tiny_classifier):
    write_embeddings(tmp_path / "d.h5", ["a_chunk_1F1", "a_chunk_1F2"], np.zeros((2, 96), np.float32), {})
    write_embeddings(tmp_path / "e.h5", ["a_chunk_1F1", "a_chunk_1R3"], np.zeros((2, 32), np.float32), {})
    result = run_script("classify_frames.py", "--dnabert", tmp_path / "d.h5", "--esm", tmp_path / "e.h5",
                        "--classifier", tiny_classifier, "--out", tmp_path / "z.tsv", check=False)
    assert result.returncode == 1
    assert "a_chunk_1F2" in result.stderr and "e.h5" in result.stderr


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_reproduces_the_original_predictions(tmp_path, reference, tiny_classifier, chunk_size):
    expected_dir = reference / "expected"
    embeddings_to_hdf5(expected_dir / f"dnabert_{chunk_size}.npz", tmp_path / "d.h5")
    embeddings_to_hdf5(expected_dir / f"esm_{chunk_size}.npz", tmp_path / "e.h5")  # other order: joined by ID
    out = tmp_path / "predictions.tsv"
    run_script("classify_frames.py", "--dnabert", tmp_path / "d.h5", "--esm", tmp_path / "e.h5",
               "--classifier", tiny_classifier, "--out", out, "--device", "cpu")
    ours, theirs = read_prediction_rows(out), read_prediction_rows(expected_dir / f"prediction_results_{chunk_size}.txt")
    assert [row[:2] for row in ours] == [row[:2] for row in theirs]
    scores = np.array([row[2:] for row in ours], dtype=np.float64)
    expected_scores = np.array([row[2:] for row in theirs], dtype=np.float64)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4, rtol=0)
    for row in ours:  # the original's formatting: str() of a float32
        assert all(text == str(np.float32(text)) for text in row[2:])

    first = out.read_bytes()
    run_script("classify_frames.py", "--dnabert", tmp_path / "d.h5", "--esm", tmp_path / "e.h5",
               "--classifier", tiny_classifier, "--out", out, "--device", "cpu")
    assert out.read_bytes() == first


@pytest.mark.parametrize("virus_logit, label", [(1e-8, "others"), (2.0, "virus"), (-2.0, "others")])
def test_label_is_the_first_largest_probability_as_the_original(virus_logit, label):
    # logits 0 and 1e-8 differ, but their fp32 probabilities are both 0.5: torch.max over the
    # probabilities (the original) says others, an argmax over the logits would say virus
    model = MLPClassifier(1, 1, 2, 1e-5).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.output_layer.bias.copy_(torch.tensor([0.0, virus_logit]))
    [prediction] = predict(model, ["s_chunk_1F1"], np.zeros((1, 1), np.float32), torch.device("cpu"))
    assert prediction.label == label
