"""Model files, read by one safe loader for the classifier and both embedders: a file cut short
is named as truncated, a setting out of range is refused in one line naming the file, the
setting and the value, and no loading path runs code from a file."""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from conftest import BIN, SCRIPT_TIMEOUT
from virnucpro import classifier, dnabert, esm
from virnucpro.errors import VirNucProError

CPU = torch.device("cpu")
# (offset of the cut: from the start, from the end when negative, a fraction of the size when a float)
CUTS = [0, 1, 3, 64, 0.25, 0.5, 0.9, -22, -1]
# cuts at which torch's zip reader itself fails with "[Errno 22] Invalid argument", naming no file
INVALID_ARGUMENT_CUTS = {"esm2_t36_tiny_UR50D.pt": 6798, "classifier_tiny.pth": 4695, "pytorch_model.bin": 9145}


def cut(data: bytes, at: int | float) -> bytes:
    if isinstance(at, float):
        return data[: int(len(data) * at)]
    return data[:at] if at >= 0 else data[: len(data) + at]


@pytest.fixture(scope="module")
def models(reference):
    return reference / "models"


def load_esm(path) -> None:
    esm.open_checkpoint(str(path), None, "off").load(CPU, torch.float32)


def dnabert_copy(tmp_path, models, replaced: str | None = None, data: bytes = b""):
    """The tiny DNABERT-S directory, with ``replaced`` holding ``data`` when given."""
    directory = tmp_path / "dnabert"
    shutil.copytree(models / "dnabert_s_tiny", directory)
    if replaced == "model.safetensors":
        (directory / "pytorch_model.bin").unlink()
    if replaced is not None:
        (directory / replaced).write_bytes(data)
    return directory


def load_dnabert(directory) -> None:
    dnabert.open_checkpoint(str(directory)).load(CPU, torch.float32)


def safetensors_bytes(tmp_path, state) -> bytes:
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(tmp_path / "whole.safetensors"))
    return (tmp_path / "whole.safetensors").read_bytes()


def legacy_bytes(tmp_path, path) -> bytes:
    torch.save(torch.load(path, weights_only=False), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    return (tmp_path / "legacy.pt").read_bytes()


def assert_one_line(error: pytest.ExceptionInfo, path, *needles: str) -> None:
    """One line: ``path``, then what is wrong, holding every needle (the path itself is not searched)."""
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for needle in needles:
        assert needle in message.removeprefix(f"{path}: "), message


# ---------------------------------------------------------------- truncated files


@pytest.mark.parametrize("at", CUTS + [INVALID_ARGUMENT_CUTS["esm2_t36_tiny_UR50D.pt"]])
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_truncated_esm_checkpoint_is_named(tmp_path, models, layout, at):
    whole = models / "esm2_t36_tiny_UR50D.pt"
    data = whole.read_bytes() if layout == "zip" else legacy_bytes(tmp_path, whole)
    path = tmp_path / "esm2_t36_tiny_UR50D.pt"
    path.write_bytes(cut(data, at))
    with pytest.raises(VirNucProError) as error:
        load_esm(path)
    assert_one_line(error, path, "truncated")


@pytest.mark.parametrize(
    "name, at",
    [(name, at) for name in ("pytorch_model.bin", "model.safetensors", "tokenizer.json", "config.json") for at in CUTS]
    + [("pytorch_model.bin", INVALID_ARGUMENT_CUTS["pytorch_model.bin"])],
)
def test_a_truncated_dnabert_file_is_named(tmp_path, models, name, at):
    if name == "model.safetensors":
        data = safetensors_bytes(tmp_path, torch.load(models / "dnabert_s_tiny" / "pytorch_model.bin", weights_only=True))
    else:
        data = (models / "dnabert_s_tiny" / name).read_bytes()
    directory = dnabert_copy(tmp_path, models, name, cut(data, at))
    with pytest.raises(VirNucProError) as error:
        load_dnabert(directory)
    assert_one_line(error, directory / name, "truncated")


@pytest.mark.parametrize(
    "suffix, at", [(suffix, at) for suffix in (".pth", ".safetensors") for at in CUTS] + [(".pth", INVALID_ARGUMENT_CUTS["classifier_tiny.pth"])]
)
def test_a_truncated_classifier_is_named(tmp_path, models, suffix, at):
    if suffix == ".pth":
        data = (models / "classifier_tiny.pth").read_bytes()
    else:
        data = safetensors_bytes(tmp_path, classifier.load_classifier(models / "classifier_tiny.pth").state_dict())
    path = tmp_path / f"classifier{suffix}"
    path.write_bytes(cut(data, at))
    with pytest.raises(VirNucProError) as error:
        classifier.load_classifier(path)
    assert_one_line(error, path, "truncated")


def test_the_script_names_a_truncated_checkpoint_instead_of_invalid_argument(reference, models, tmp_path):
    """The cut at which torch's reader fails with a bare EINVAL, which was reported as 'output: invalid argument'."""
    path = tmp_path / "esm2_t36_tiny_UR50D.pt"
    path.write_bytes(cut((models / path.name).read_bytes(), INVALID_ARGUMENT_CUTS[path.name]))
    command = [sys.executable, BIN / "embed_esm.py", "--fasta", reference / "identified_protein500.faa", "--model", path,
               "--out", tmp_path / "out.h5", "--device", "cpu", "--no-progress", "--quiet"]  # fmt: skip
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"ERROR [embed_esm.py] {path}: truncated or damaged PyTorch checkpoint"), result.stderr
    assert not (tmp_path / "out.h5").exists()


# ---------------------------------------------------------------- settings out of range


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("num_hidden_layers", "3", "num_hidden_layers '3' is not an integer"),
        ("num_hidden_layers", True, "num_hidden_layers True is not an integer"),
        ("num_hidden_layers", 3.5, "num_hidden_layers 3.5 is not an integer"),
        ("num_hidden_layers", 0, "num_hidden_layers 0 is below 1"),
        ("hidden_size", 2**40, "hidden_size 1099511627776 is above 1048576"),
        ("vocab_size", float("inf"), "vocab_size inf is not an integer"),
        ("num_attention_heads", None, "num_attention_heads None is not an integer"),
        ("layer_norm_eps", float("nan"), "layer_norm_eps nan is not a finite number"),
        ("layer_norm_eps", -1e-12, "layer_norm_eps -1e-12 is below 0"),
        ("layer_norm_eps", 5.0, "layer_norm_eps 5.0 is above 1"),
        ("layer_norm_eps", "1e-12", "layer_norm_eps '1e-12' is not a number"),
    ],
)
def test_dnabert_settings_out_of_range_are_refused(tmp_path, models, key, value, needle):
    values = json.loads((models / "dnabert_s_tiny" / "config.json").read_text())
    directory = dnabert_copy(tmp_path, models, "config.json", json.dumps({**values, key: value}).encode())
    with pytest.raises(VirNucProError) as error:
        dnabert.open_checkpoint(str(directory))
    assert_one_line(error, directory / "config.json", needle)


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("encoder_layers", "36", "cfg encoder_layers '36' is not an integer"),
        ("encoder_layers", True, "cfg encoder_layers True is not an integer"),
        ("encoder_layers", 36.0, "cfg encoder_layers 36.0 is not an integer"),
        ("encoder_embed_dim", 0, "cfg encoder_embed_dim 0 is below 1"),
        ("encoder_attention_heads", 2**40, "cfg encoder_attention_heads 1099511627776 is above 1048576"),
        ("token_dropout", "yes", "cfg token_dropout 'yes' is not true or false"),
    ],
)
def test_esm_settings_out_of_range_are_refused(tmp_path, models, key, value, needle):
    checkpoint = torch.load(models / "esm2_t36_tiny_UR50D.pt", weights_only=False)
    setattr(checkpoint["cfg"]["model"], key, value)
    path = tmp_path / "esm2_t36_changed.pt"
    torch.save(checkpoint, path)
    with pytest.raises(VirNucProError) as error:
        esm.open_checkpoint(str(path), None, "off")
    assert_one_line(error, path, needle)


@pytest.mark.parametrize(
    "eps, needle",
    [
        (float("nan"), "bn1 eps nan is not a finite number"),
        (float("inf"), "bn1 eps inf is above 1"),
        (-1e-5, "bn1 eps -1e-05 is below 0"),
        (2.0, "bn1 eps 2.0 is above 1"),
        (True, "bn1 eps True is not a number"),
        ("1e-5", "bn1 eps '1e-5' is not a number"),
    ],
)
def test_classifier_settings_out_of_range_are_refused(tmp_path, models, eps, needle):
    model = classifier.load_classifier(models / "classifier_tiny.pth")
    model.bn1.eps = eps
    path = tmp_path / "classifier.pth"
    torch.save(model, path)
    with pytest.raises(VirNucProError) as error:
        classifier.load_classifier(path)
    assert_one_line(error, path, needle)


# ---------------------------------------------------------------- one loading path


class RunsCode:
    def __reduce__(self):
        return (print, ("ran",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_the_classifier_and_the_embedders_refuse_alike(tmp_path, models, protocol):
    """The same refusal, naming every class the pickle references, whichever stage reads it and
    whatever the pickle protocol."""
    state = {"weights": torch.zeros(2), "a": RunsCode(), "b": argparse.ArgumentParser}
    path = tmp_path / "stranger.pth"
    torch.save(state, path, pickle_protocol=protocol)
    for load in (classifier.load_classifier, lambda path: esm.open_checkpoint(str(path), None, "off")):
        with pytest.raises(VirNucProError) as error:
            load(path)
        assert_one_line(error, path, "refused to load: its pickle references", "builtins.print", "argparse.ArgumentParser", "nothing from it was run")


def test_a_legacy_format_classifier_loads(tmp_path, models):
    weights = classifier.load_classifier(models / "classifier_tiny.pth").state_dict()
    path = tmp_path / "classifier.pth"
    torch.save(weights, path, _use_new_zipfile_serialization=False)
    loaded = classifier.load_classifier(path).state_dict()
    assert all(torch.equal(loaded[name], weights[name]) for name in weights)


def test_the_classifier_imports_no_other_stage():
    code = "import sys; import virnucpro.classifier; print(sorted(m for m in sys.modules if m.startswith('virnucpro.')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=BIN, check=True, timeout=SCRIPT_TIMEOUT)
    loaded = set(eval(result.stdout))
    assert "virnucpro.model_files" in loaded
    assert not loaded & {f"virnucpro.{stage}" for stage in ("embedding", "dnabert", "esm", "prepare", "summary", "report", "staging")}
