"""The pipeline's steps without Nextflow: each module's command line, rendered as Nextflow would
render it, run in the pipeline's order on assets/ with the tiny models of the test profile."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nf_modules import MODULES, REPO, command_template, render

ASSETS = REPO / "assets"
SAMPLES = {"test": ASSETS / "test.fa", "test_noframes": ASSETS / "test_noframes.fa"}
CHUNK_SIZE = "500"
SHARD_SIZE = "40"  # small shards, so that the test sample fans out over several (conf/test.config)
EMBED_ARGS = "--precision fp32 --batch-tokens 4096 --no-progress"  # conf/test.config through conf/modules.config
MODELS_KEY = "virnucpro-models-500-test"


def run_module(name: str, workdir: Path, values: dict[str, str]) -> None:
    """Run the module's one command, as its task would, in ``workdir``."""
    script, *arguments = render(command_template(MODULES / name / "main.nf"), values)
    command = [sys.executable, str(REPO / "bin" / script), *arguments]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0, f"{name}: {' '.join(command)} exited {result.returncode}\n{result.stderr}"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def fasta_ids(path: Path) -> list[str]:
    return [line[1:].split()[0] for line in path.read_text().splitlines() if line.startswith(">")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pipeline")
    run_module("stage_models", work, {
        "key": MODELS_KEY, "chunk_size": CHUNK_SIZE, "dnabert": "zhihan1996/DNABERT-S", "esm": "esm2_t36_3B_UR50D",
        "classifier_option": "", "args": "--tiny",
    })
    models_dir = work / MODELS_KEY
    models = {kind: models_dir / entry["path"] for kind, entry in json.loads((models_dir / "models.json").read_text()).items()}

    all_metrics: list[str] = []
    for sample, fasta in SAMPLES.items():
        run_module("prepare_frames", work, {
            "fasta": str(fasta), "chunk_size": CHUNK_SIZE, "meta.id": sample, "args": f"--shard-size {SHARD_SIZE}",
        })
        sample_metrics = [f"{sample}.prepare_frames.json"]
        predictions = []
        for shard in [row["shard"] for row in read_tsv(work / f"{sample}.shards.tsv")]:
            run_module("embed_dnabert", work, {
                "fna": f"{shard}.fna", "model": str(models["dnabert"]), "meta.shard": shard, "device": "cpu", "args": EMBED_ARGS,
            })
            run_module("embed_esm", work, {
                "faa": f"{shard}.faa", "checkpoint": str(models["esm"]), "meta.shard": shard, "device": "cpu", "args": EMBED_ARGS,
            })
            run_module("classify_frames", work, {
                "dnabert": f"{shard}.dnabert.h5", "esm": f"{shard}.esm.h5", "classifier": str(models["classifier"]),
                "meta.shard": shard, "args": "",
            })
            predictions.append(f"{shard}.predictions.tsv")
            sample_metrics += [f"{shard}.dnabert.json", f"{shard}.esm.json"]
        run_module("summarize", work, {
            "meta.id": sample,
            "prediction_option": f"--predictions {' '.join(predictions)}" if predictions else "",
            "shards": f"{sample}.shards.tsv", "sequences": f"{sample}.sequences.tsv", "fasta": str(fasta),
            "metrics.join(' ')": " ".join(sample_metrics), "args": "--threshold 0.5",
        })
        all_metrics += sample_metrics
    run_module("make_report", work, {
        "calls": " ".join(f"{sample}/sequence_calls.tsv" for sample in SAMPLES),
        "models": str(models_dir / "models.json"), "metrics.join(' ')": " ".join(all_metrics), "args": "--threshold 0.5",
    })
    return work


def test_models_json_describes_the_staged_models(run):
    models = json.loads((run / MODELS_KEY / "models.json").read_text())
    assert set(models) == {"dnabert", "esm", "classifier"}
    for entry in models.values():
        assert (run / MODELS_KEY / entry["path"]).exists()
        assert len(entry["sha256"]) == 64


def test_test_sample_fans_out_over_several_shards(run):
    assert len(read_tsv(run / "test.shards.tsv")) >= 2


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_input_sequence_is_called(run, sample):
    calls = read_tsv(run / sample / "sequence_calls.tsv")
    assert [row["sequence_id"] for row in calls] == fasta_ids(SAMPLES[sample])
    assert {row["sample"] for row in calls} == {sample}


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_frame_has_one_prediction(run, sample):
    frames = sum(int(row["frames"]) for row in read_tsv(run / f"{sample}.shards.tsv"))
    predictions = read_tsv(run / sample / "prediction_results.txt")
    assert len(predictions) == frames
    assert len({row["Sequence_ID"] for row in predictions}) == frames


def test_a_sample_without_frames_still_gets_results(run):
    calls = read_tsv(run / "test_noframes" / "sequence_calls.tsv")
    assert {row["status"] for row in calls} == {"no_open_frame"}
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv", "viral_sequences.fasta", "summary.json"):
        assert (run / "test_noframes" / name).exists()


def test_viral_sequences_are_those_called_virus(run):
    calls = read_tsv(run / "test" / "sequence_calls.tsv")
    assert fasta_ids(run / "test" / "viral_sequences.fasta") == [row["sequence_id"] for row in calls if row["call"] == "virus"]


def test_run_report(run):
    assert "<html" in (run / "report.html").read_text().lower()
    assert (run / "virnucpro_mqc.tsv").stat().st_size > 0
