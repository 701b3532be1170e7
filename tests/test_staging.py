"""Model staging: verification of fetched and given models, models.json, and the tiny models."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import run_script
from virnucpro import contracts, staging, tiny_models
from virnucpro.errors import InputError


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("tiny")
    staging.write_models_json(outdir, staging.stage_tiny(outdir))
    return outdir


@pytest.fixture
def published(tmp_path, monkeypatch) -> dict[int, Path]:
    """Stand-ins for the published classifiers, served from file:// URLs."""
    files = {size: write(tmp_path / "remote" / f"{size}_model.pth", f"classifier {size}".encode()) for size in staging.CHUNK_SIZES}
    monkeypatch.setattr(staging, "PUBLISHED_CLASSIFIERS", {
        size: staging.PublishedClassifier(path.as_uri(), staging.git_blob_id(path)) for size, path in files.items()
    })
    return files


def test_git_blob_id_is_gits(tmp_path):
    assert staging.git_blob_id(write(tmp_path / "hello", b"hello\n")) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_published_classifier_is_fetched_verified_and_reused(tmp_path, published):
    outdir = tmp_path / "models"
    entry = staging.stage_classifier(None, 500, outdir)
    assert entry.path == "classifier/500_model.pth" and entry.name == "500_model.pth"
    assert (outdir / entry.path).read_bytes() == published[500].read_bytes()
    assert entry.sha256 == hashlib.sha256(b"classifier 500").hexdigest()
    manifest = (outdir / contracts.MODEL_MANIFEST).read_text()
    assert manifest == f"{entry.sha256}  classifier/500_model.pth\n"
    published[500].unlink()  # reuse does not download again
    assert staging.stage_classifier(None, 500, outdir) == entry


def test_a_changed_file_is_refused_on_reuse(tmp_path, published):
    outdir = tmp_path / "models"
    entry = staging.stage_classifier(None, 300, outdir)
    (outdir / entry.path).write_bytes(b"tampered")
    with pytest.raises(InputError, match="differs from .* recorded"):
        staging.stage_classifier(None, 300, outdir)


def test_the_published_classifier_of_the_other_chunk_size_is_refused(tmp_path, published):
    with pytest.raises(InputError, match="published 300 bp classifier, but the chunk size is 500"):
        staging.stage_classifier(str(published[300]), 500, tmp_path / "models")
    renamed = shutil.copy(published[300], tmp_path / "mine.pth")  # recognised by content, not name
    with pytest.raises(InputError, match="published 300 bp classifier"):
        staging.stage_classifier(str(renamed), 500, tmp_path / "models")


@pytest.mark.parametrize("name, chunk_size, refused", [
    ("300_model.pth", 500, True), ("500_model.pth", 300, True), ("500_model.pth", 500, False),
    ("classifier_v2.pth", 300, False), ("model_3000.pth", 500, False),
])
def test_classifier_names_that_state_a_chunk_size(tmp_path, published, name, chunk_size, refused):
    path = write(tmp_path / "mine" / name, b"my own classifier")
    problem = staging.classifier_problem(path, chunk_size)
    assert bool(problem) == refused, problem


def test_local_models_are_used_in_place(tiny, tmp_path):
    outdir = tmp_path / "models"
    entries = staging.stage_models(
        outdir, 500,
        dnabert=str(tiny / "dnabert" / tiny_models.DNABERT_NAME),
        esm=str(tiny / "esm" / f"{tiny_models.ESM_NAME}.pt"),
        classifier=str(tiny / "classifier" / f"{tiny_models.CLASSIFIER_NAME}.pth"),
    )
    assert entries["dnabert"].path == str((tiny / "dnabert" / tiny_models.DNABERT_NAME).resolve())
    assert entries["dnabert"].sha256 == contracts.file_sha256(tiny / "dnabert" / tiny_models.DNABERT_NAME / "pytorch_model.bin")
    assert set(entries["dnabert"].files) == {"config.json", "tokenizer.json", "pytorch_model.bin"}
    assert entries["esm"].name == tiny_models.ESM_NAME
    assert not any(entry.test_only for entry in entries.values())  # given by the user: real models as far as we know
    assert not outdir.exists() or not any(outdir.rglob("*.pt*")), "local models must not be copied"


def test_a_local_esm_checkpoint_is_used_without_its_contact_regression(tiny, tmp_path):
    # embeddings do not use the contact head, so the checkpoint alone is enough
    lonely = shutil.copy(tiny / "esm" / f"{tiny_models.ESM_NAME}.pt", tmp_path / "esm2_t36_x.pt")
    entry = staging.stage_esm(str(lonely), tmp_path / "models")
    assert entry.path == str(lonely.resolve())
    with pytest.raises(InputError, match="not a fair-esm checkpoint"):
        staging.stage_esm(str(tmp_path), tmp_path / "models")


def test_esm_download(tiny, tmp_path, monkeypatch):
    remote = tiny / "esm"
    monkeypatch.setattr(contracts, "ESM_MODEL_URL", remote.as_uri() + "/{name}.pt")
    monkeypatch.setattr(staging, "ESM_REGRESSION_URL", remote.as_uri() + "/{name}-contact-regression.pt")
    entry = staging.stage_esm(tiny_models.ESM_NAME, tmp_path)
    assert entry.path == f"esm/{tiny_models.ESM_NAME}.pt"
    assert (tmp_path / "esm" / f"{tiny_models.ESM_NAME}-contact-regression.pt").is_file()
    assert len(staging.read_manifest(tmp_path / contracts.MODEL_MANIFEST)) == 2


def test_dnabert_download_is_limited_to_the_files_needed(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    requests = []

    def fake_snapshot_download(repo_id, local_dir, allow_patterns):
        requests.append((repo_id, allow_patterns))
        shutil.copytree(tiny / "dnabert" / tiny_models.DNABERT_NAME, local_dir)
        write(Path(local_dir) / ".cache" / "huggingface" / "x.lock", b"")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    entry = staging.stage_dnabert("zhihan1996/DNABERT-S", tmp_path)
    assert requests == [("zhihan1996/DNABERT-S", list(contracts.DNABERT_HUB_FILES))]
    assert entry.path == "dnabert/zhihan1996--DNABERT-S"
    assert not (tmp_path / entry.path / ".cache").exists()
    assert "dnabert/zhihan1996--DNABERT-S/pytorch_model.bin" in staging.read_manifest(tmp_path / contracts.MODEL_MANIFEST)


@pytest.mark.parametrize("kind, spec", [("dnabert", "not a hub id"), ("esm", "esm1b_t33_650M_UR50S"), ("esm", "./missing.pt")])
def test_bad_model_names(tmp_path, kind, spec):
    stage = {"dnabert": staging.stage_dnabert, "esm": staging.stage_esm}[kind]
    with pytest.raises(InputError):
        stage(spec, tmp_path)


def test_tiny_models_json(tiny):
    models = json.loads((tiny / contracts.MODELS_JSON).read_text())
    assert {kind: entry["path"] for kind, entry in models.items()} == {
        "dnabert": f"dnabert/{tiny_models.DNABERT_NAME}",
        "esm": f"esm/{tiny_models.ESM_NAME}.pt",
        "classifier": f"classifier/{tiny_models.CLASSIFIER_NAME}.pth",
    }
    dnabert = tiny / models["dnabert"]["path"]
    assert models["dnabert"]["files"] == {
        name: contracts.file_sha256(dnabert / name) for name in ("config.json", "tokenizer.json", "pytorch_model.bin")
    }
    for role, entry in models.items():
        weights = contracts.model_files(role, tiny / entry["path"])
        assert set(entry["files"]) == set(weights) and entry["sha256"] == contracts.file_sha256(list(weights.values())[-1])
        assert entry[contracts.TEST_ONLY] is True  # the report warns that the calls mean nothing


@pytest.mark.parametrize("role", contracts.MODEL_ROLES)
def test_the_staged_files_pass_their_check(tiny, role):
    models = json.loads((tiny / contracts.MODELS_JSON).read_text())
    contracts.verify_model_files(tiny / contracts.MODELS_JSON, role, tiny / models[role]["path"])


def staged_copy(tiny: Path, tmp_path: Path) -> tuple[Path, dict]:
    copy = shutil.copytree(tiny, tmp_path / "entry")
    return copy, json.loads((copy / contracts.MODELS_JSON).read_text())


@pytest.mark.parametrize("role, name", [("dnabert", "tokenizer.json"), ("dnabert", "config.json"), ("dnabert", "pytorch_model.bin"), ("esm", ""), ("classifier", "")])
def test_a_file_changed_after_staging_is_refused_naming_it(tiny, tmp_path, role, name):
    entry, models = staged_copy(tiny, tmp_path)
    model = entry / models[role]["path"]
    changed = model / name if name else model
    with open(changed, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match="changed after staging") as error:
        contracts.verify_model_files(entry / contracts.MODELS_JSON, role, model)
    assert error.value.path == str(changed.resolve())
    assert contracts.file_sha256(changed) in str(error.value) and models[role]["files"][changed.name] in str(error.value)
    assert f"delete {entry.resolve()}" in str(error.value)


def test_a_missing_file_is_refused_naming_it(tiny, tmp_path):
    entry, models = staged_copy(tiny, tmp_path)
    tokenizer = entry / models["dnabert"]["path"] / "tokenizer.json"
    tokenizer.unlink()
    with pytest.raises(InputError, match="missing") as error:
        contracts.verify_model_files(entry / contracts.MODELS_JSON, "dnabert", tokenizer.parent)
    assert error.value.path == str(tokenizer.resolve())


def test_weights_added_after_staging_are_refused(tiny, tmp_path):
    # model.safetensors is read in preference to pytorch_model.bin: one put there later is not the staged weights
    entry, models = staged_copy(tiny, tmp_path)
    dnabert = entry / models["dnabert"]["path"]
    write(dnabert / "model.safetensors", b"other weights")
    with pytest.raises(InputError, match="records no sha256 for model.safetensors"):
        contracts.verify_model_files(entry / contracts.MODELS_JSON, "dnabert", dnabert)


def test_a_models_json_without_file_checksums_is_refused(tiny, tmp_path):
    entry, models = staged_copy(tiny, tmp_path)
    del models["esm"]["files"]
    (entry / contracts.MODELS_JSON).write_text(json.dumps(models))
    with pytest.raises(InputError, match="no file checksums of the esm model"):
        contracts.verify_model_files(entry / contracts.MODELS_JSON, "esm", entry / models["esm"]["path"])


def test_tiny_models_are_reproducible(tiny, tmp_path):
    staging.stage_tiny(tmp_path)
    assert (tmp_path / contracts.MODEL_MANIFEST).read_text() == (tiny / contracts.MODEL_MANIFEST).read_text()


def test_tiny_dnabert_has_the_real_layout(tiny):
    from tokenizers import Tokenizer

    directory = tiny / "dnabert" / tiny_models.DNABERT_NAME
    config = json.loads((directory / "config.json").read_text())
    tokenizer_json = json.loads((directory / "tokenizer.json").read_text())
    assert tokenizer_json["model"]["type"] == "BPE" and tokenizer_json["normalizer"] is None
    assert tokenizer_json["pre_tokenizer"] == {"type": "Whitespace"}
    assert tokenizer_json["post_processor"]["type"] == "TemplateProcessing"
    assert [token["content"] for token in tokenizer_json["added_tokens"]] == list(tiny_models.SPECIAL_TOKENS)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    assert config["vocab_size"] == tokenizer.get_vocab_size()
    encoding = tokenizer.encode("ACGTACGTTn")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]" and "[UNK]" in encoding.tokens
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    hidden = config["hidden_size"]
    assert state["embeddings.word_embeddings.weight"].shape == (config["vocab_size"], hidden)
    assert state["encoder.layer.0.mlp.gated_layers.weight"].shape == (2 * config["intermediate_size"], hidden)
    assert f"encoder.layer.{config['num_hidden_layers'] - 1}.mlp.wo.bias" in state


def test_tiny_esm_loads_with_fair_esm(tiny):
    import esm

    with torch.serialization.safe_globals([argparse.Namespace]):  # the checkpoint's cfg, as published ones
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(tiny / "esm" / f"{tiny_models.ESM_NAME}.pt"))
    assert (model.num_layers, model.embed_dim) == (36, tiny_models.embedding_dims()[1])
    assert alphabet.get_idx("<cls>") == 0


def test_tiny_classifier_takes_both_embeddings(tiny):
    state = torch.load(tiny / "classifier" / f"{tiny_models.CLASSIFIER_NAME}.pth", weights_only=True)
    assert state["hidden_layer.weight"].shape == (tiny_models.CLASSIFIER_HIDDEN, sum(tiny_models.embedding_dims()))
    assert state["output_layer.weight"].shape == (2, tiny_models.CLASSIFIER_HIDDEN)


def test_cli_refuses_a_mismatched_classifier_before_anything_else(tmp_path):
    classifier = write(tmp_path / "300_model.pth", b"x")
    result = run_script("stage_models.py", "--outdir", tmp_path / "models", "--chunk-size", 500, "--classifier", classifier, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR [stage_models.py]")
    assert "300 bp chunks" in result.stderr
    assert not (tmp_path / "models" / "dnabert").exists()


def test_the_script_writes_its_version_beside_models_json(tmp_path):
    # the pipeline reports STAGE_MODELS' version from this file: a task reused from
    # --model_cache (storeDir) runs no command
    run_script("stage_models.py", "--outdir", tmp_path / "models", "--chunk-size", 500, "--tiny")
    version = run_script("stage_models.py", "--version").stdout
    assert (tmp_path / "models" / contracts.VERSIONS_FILE).read_text() == version
    assert version.startswith("virnucpro ")


@pytest.mark.parametrize("script, role, option", [
    ("embed_dnabert.py", "dnabert", "--model"), ("embed_esm.py", "esm", "--model"), ("classify_frames.py", "classifier", "--classifier"),
])
def test_each_stage_refuses_a_changed_model_before_reading_anything(tiny, tmp_path, script, role, option):
    entry, models = staged_copy(tiny, tmp_path)
    model = entry / models[role]["path"]
    changed = next(iter(contracts.model_files(role, model).values()))
    changed.write_bytes(changed.read_bytes()[:-1])  # a truncated copy
    inputs = {"classify_frames.py": ["--frames", "f.tsv", "--shards", "s.tsv", "--dnabert", "x.h5", "--esm", "y.h5"]}.get(script, ["--fasta", "missing.fa"])
    result = run_script(script, *inputs, option, model, "--out", tmp_path / "out", "--models-json", entry / contracts.MODELS_JSON, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"ERROR [{script}] {changed.resolve()}: sha256 ") and "changed after staging" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
