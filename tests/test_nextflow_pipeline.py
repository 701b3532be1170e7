"""The pipeline run by the real Nextflow (tests/nextflow/nextflow, installed from Maven Central)
through its plugin-free entry tests/pipeline/main.nf, on the test profile, under both of
Nextflow's parsers: every run succeeds or fails as it should, and its outputs equal, byte for
byte, those of the bin scripts run by hand with the modules' command lines."""

from __future__ import annotations

import csv
import json
import platform
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from nextflow_cli import PARSERS, nextflow
from nf_modules import MODULES, REPO, command_template, render

ENTRY = "tests/pipeline/main.nf"
ASSETS = REPO / "assets"
SAMPLES = {"test": ASSETS / "test.fa", "test_noframes": ASSETS / "test_noframes.fa"}
PROCESSES = {"STAGE_MODELS", "PREPARE_FRAMES", "EMBED_DNABERT", "EMBED_ESM", "CLASSIFY_FRAMES", "SUMMARIZE", "MAKE_REPORT"}
# given on the command line (the test profile's values): typed by Nextflow (v1) or strings (v2),
# which the pipeline must read as numbers and booleans ('false' is a true value in Groovy)
CLI_PARAMS = [
    "--chunk_size", "500", "--shard_tokens", "6000", "--esm_batch_tokens", "4096", "--threshold", "0.5",
    "--use_gpu", "false", "--tiny_models", "true",
]
# what those parameters and the test profile give the modules (conf/test.config, conf/modules.config)
CHUNK_SIZE = "500"
EMBED_ARGS = "--precision fp32 --batch-tokens 4096 --no-progress"
# the outputs that hold no timings, equal byte for byte from run to run
SAMPLE_OUTPUTS = ["prediction_results.txt", "prediction_results_highestscore.csv", "sequence_calls.tsv", "viral_sequences.fasta"]


@dataclass
class Run:
    result: subprocess.CompletedProcess
    outdir: Path
    work: Path

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def trace(self) -> list[dict[str, str]]:
        return read_tsv(self.outdir / "pipeline_info" / "execution_trace.txt")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def fasta_ids(path: Path) -> list[str]:
    return [line[1:].split()[0] for line in path.read_text().splitlines() if line.startswith(">")]


def process_of(row: dict[str, str]) -> str:
    return row["process"].split(":")[-1]


def run_pipeline(nxf_home: Path, parser: str, root: Path, *args: str, work: Path | None = None) -> Run:
    outdir = root / "results"
    work = work or root / "work"
    reports = []
    if parser == "v2":
        # Nextflow 25.04's strict parser reads ${params.outdir} in the trace, report, timeline and
        # DAG file settings before the command line's --outdir applies (26.04 does not): the files
        # are put where the config would put them
        info = outdir / "pipeline_info"
        reports = [
            "-with-trace", str(info / "execution_trace.txt"), "-with-report", str(info / "execution_report.html"),
            "-with-timeline", str(info / "execution_timeline.html"), "-with-dag", str(info / "pipeline_dag.html"),
        ]
    result = nextflow(
        nxf_home, parser, "run", ENTRY, "-profile", "test", "--outdir", str(outdir), "-work-dir", str(work), *reports, *args,
    )
    return Run(result, outdir, work)


def succeeded(run: Run) -> Run:
    assert run.result.returncode == 0, f"nextflow run exited {run.result.returncode}:\n{run.output[-6000:]}"
    return run


@pytest.fixture(scope="module", params=sorted(PARSERS))
def parser(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory, parser) -> Path:
    return tmp_path_factory.mktemp(f"model_cache_{parser}")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, nxf_home, parser, model_cache) -> tuple[Run, str]:
    """The test profile with its samplesheet, parameters from the command line, a model cache."""
    name = f"first_{parser}_{uuid.uuid4().hex[:8]}"
    run = run_pipeline(nxf_home, parser, tmp_path_factory.mktemp(name), "-name", name, *CLI_PARAMS, "--model_cache", str(model_cache))
    return succeeded(run), name


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, nxf_home, parser, model_cache, first_run) -> Run:
    first, name = first_run
    root = tmp_path_factory.mktemp(f"resumed_{parser}")
    return succeeded(run_pipeline(nxf_home, parser, root, "-resume", name, *CLI_PARAMS, "--model_cache", str(model_cache), work=first.work))


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, nxf_home, parser, model_cache, first_run) -> Run:
    """A new run on the same model cache: a glob --input, and one EMBED_ESM attempt that exits 75."""
    root = tmp_path_factory.mktemp(f"second_{parser}")
    return succeeded(run_pipeline(
        nxf_home, parser, root, *CLI_PARAMS, "--model_cache", str(model_cache), "--input", f"{ASSETS}/*.fa",
        "-c", str(REPO / "tests" / "pipeline" / "retry.config"),
    ))


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory) -> Path:
    """The pipeline's steps without Nextflow: each module's command line, rendered as Nextflow
    renders it for the test profile, run in the pipeline's order."""
    work = tmp_path_factory.mktemp("by_hand")
    key = "models"

    def run_module(name: str, values: dict[str, str]) -> None:
        values = {"task.cpus": "1", **values}  # the test profile's cpus
        script, *arguments = render(command_template(MODULES / name / "main.nf"), values)
        command = [sys.executable, str(REPO / "bin" / script), *arguments]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {' '.join(command)} exited {result.returncode}\n{result.stderr}"

    run_module("stage_models", {
        "key": key, "chunk_size": CHUNK_SIZE, "dnabert": "zhihan1996/DNABERT-S", "esm": "esm2_t36_3B_UR50D",
        "classifier_option": "", "args": "--tiny",
    })
    models = {kind: work / key / entry["path"] for kind, entry in json.loads((work / key / "models.json").read_text()).items()}
    all_metrics: list[str] = []
    calls: list[str] = []
    for sample, fasta in SAMPLES.items():
        run_module("prepare_frames", {"fasta": str(fasta), "chunk_size": CHUNK_SIZE, "meta.id": sample, "args": "--shard-tokens 6000"})
        sample_metrics = [f"{sample}.prepare_frames.json"]
        shards = read_tsv(work / f"{sample}.shards.tsv")
        embeddings: dict[str, list[str]] = {"dnabert": [], "esm": []}
        for shard in [row["shard"] for row in shards if row["kind"] == "dnabert"]:
            run_module("embed_dnabert", {"fna": f"{shard}.fna", "model": str(models["dnabert"]), "meta.shard": shard, "device": "cpu", "args": EMBED_ARGS})
            embeddings["dnabert"].append(f"{shard}.h5")
            sample_metrics.append(f"{shard}.embed.json")
        for shard in [row["shard"] for row in shards if row["kind"] == "esm"]:
            run_module("embed_esm", {"faa": f"{shard}.faa", "checkpoint": str(models["esm"]), "meta.shard": shard, "device": "cpu", "args": EMBED_ARGS})
            embeddings["esm"].append(f"{shard}.h5")
            sample_metrics.append(f"{shard}.embed.json")
        predictions = []
        for shard in [row["shard"] for row in shards if row["kind"] == "frames"]:
            run_module("classify_frames", {
                "frames": f"{shard}.frames.tsv", "shards": f"{sample}.shards.tsv", "dnabert.join(' ')": " ".join(embeddings["dnabert"]),
                "esm.join(' ')": " ".join(embeddings["esm"]), "classifier": str(models["classifier"]), "meta.shard": shard, "args": "",
            })
            predictions.append(f"{shard}.predictions.tsv")
            sample_metrics.append(f"{shard}.classify.json")
        run_module("summarize", {
            "meta.id": sample, "prediction_option": f"--predictions {' '.join(predictions)}" if predictions else "",
            "shards": f"{sample}.shards.tsv", "sequences": f"{sample}.sequences.tsv", "fasta": str(fasta),
            "metrics.join(' ')": " ".join(sample_metrics), "chunk_size": CHUNK_SIZE, "args": "--threshold 0.5",
        })
        all_metrics += sample_metrics
        calls.append(f"{sample}/sequence_calls.tsv")
    run_info = work / "run_info.json"
    run_info.write_text(json.dumps({"pipeline": "by hand", "started": "2026-01-01T00:00:00Z", "params": {}}))
    run_module("make_report", {
        "calls": " ".join(calls), "models": str(work / key / "models.json"), "metrics.join(' ')": " ".join(all_metrics),
        "run_info": str(run_info), "args": "",
    })
    return work


def without_timings(summary: Path) -> dict:
    return {key: value for key, value in json.loads(summary.read_text()).items() if key != "stages"}


def assert_same_results(outdir: Path, expected: Path) -> None:
    for sample in SAMPLES:
        for name in SAMPLE_OUTPUTS:
            assert (outdir / sample / name).read_bytes() == (expected / sample / name).read_bytes(), f"{sample}/{name} differs"
        assert without_timings(outdir / sample / "summary.json") == without_timings(expected / sample / "summary.json")
    assert (outdir / "virnucpro_mqc.tsv").read_bytes() == (expected / "virnucpro_mqc.tsv").read_bytes()


def test_every_task_succeeds(first_run):
    run, _ = first_run
    trace = run.trace()
    assert {process_of(row) for row in trace} == PROCESSES
    assert {(row["status"], row["exit"]) for row in trace} == {("COMPLETED", "0")}, trace
    shards = read_tsv(next(run.work.rglob("test.shards.tsv")))
    count = {kind: sum(row["kind"] == kind for row in shards) for kind in ("frames", "dnabert", "esm")}
    assert min(count.values()) >= 2, "the test sample should fan out over several shards of each kind"
    for process, kind in (("EMBED_DNABERT", "dnabert"), ("EMBED_ESM", "esm"), ("CLASSIFY_FRAMES", "frames")):
        assert sum(process_of(row) == process for row in trace) == count[kind]


def test_each_distinct_sequence_is_embedded_once(first_run):
    """test.fa repeats four of its records: their frames are embedded once, and scored as the originals."""
    run, _ = first_run
    shards = read_tsv(next(run.work.rglob("test.shards.tsv")))
    frames = sum(int(row["items"]) for row in shards if row["kind"] == "frames")
    metrics = json.loads((run.outdir / "test" / "summary.json").read_text())["stages"]
    embedded = {stage["stage"]: stage["items"] for stage in metrics}
    for kind in ("dnabert", "esm"):
        assert embedded[f"embed_{kind}"] == sum(int(row["items"]) for row in shards if row["kind"] == kind) < frames
    scores = {row["Sequence_ID"]: row for row in read_tsv(run.outdir / "test" / "prediction_results.txt")}
    copies = [frame_id for frame_id in scores if frame_id.startswith("copy")]
    assert copies
    for frame_id in copies:  # the original's vectors: its label, its scores (to within the rounding of other batch sizes)
        copy, original = scores[frame_id], scores[frame_id.split("_of_", 1)[1]]
        assert copy["Prediction"] == original["Prediction"], frame_id
        assert all(abs(float(copy[score]) - float(original[score])) <= 1e-6 for score in ("score1", "score2")), frame_id


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_input_sequence_is_called(first_run, sample):
    run, _ = first_run
    calls = read_tsv(run.outdir / sample / "sequence_calls.tsv")
    assert [row["sequence_id"] for row in calls] == fasta_ids(SAMPLES[sample])
    assert {row["sample"] for row in calls} == {sample}
    assert [row["shorter_than_chunk"] == "true" for row in calls] == [int(row["length"]) < int(CHUNK_SIZE) for row in calls]


def test_a_sample_without_frames_gets_its_results(first_run):
    run, _ = first_run
    assert {row["status"] for row in read_tsv(run.outdir / "test_noframes" / "sequence_calls.tsv")} == {"no_open_frame"}
    assert read_tsv(run.outdir / "test_noframes" / "prediction_results.txt") == []


def test_outputs_equal_the_scripts_run_by_hand(first_run, by_hand):
    run, _ = first_run
    assert_same_results(run.outdir, by_hand)
    assert "<html" in (run.outdir / "report.html").read_text().lower()


def test_the_report_states_the_run(first_run):
    run, name = first_run
    html = (run.outdir / "report.html").read_text()
    section = html[html.index("<h2>Run</h2>"):html.index("<h2>Samples</h2>")]
    for fact in (name, "virnucpro-nf/virnucpro-nf 0.1.0", "25.04.4", "wall time up to this report", "--model_cache"):
        assert fact in section, fact
    assert re.search(r"<td[^>]*>chunk_size</td><td[^>]*>500</td>", section) and re.search(r"<td[^>]*>tiny_models</td><td[^>]*>true</td>", section)
    assert "Test models: these calls mean nothing" in html


def test_pipeline_info(first_run):
    run, _ = first_run
    info = run.outdir / "pipeline_info"
    models = json.loads((info / "models.json").read_text())
    assert set(models) == {"dnabert", "esm", "classifier"} and all(len(entry["sha256"]) == 64 for entry in models.values())
    assert all(entry["test_only"] for entry in models.values())
    # MultiQC's software versions: process -> {tool: version}, and the workflow's own
    versions = yaml.safe_load((info / "virnucpro_software_mqc_versions.yml").read_text())
    assert set(versions) == PROCESSES | {"Workflow"}
    assert versions["Workflow"] == {"virnucpro-nf/virnucpro-nf": "0.1.0", "Nextflow": "25.04.4"}
    for process in PROCESSES:
        assert versions[process]["virnucpro"] == "0.1.0" and versions[process]["python"] == platform.python_version(), versions[process]
        assert all(isinstance(version, str) for version in versions[process].values())


STORED = "[skipping] Stored process > PIPELINE:VIRNUCPRO:STAGE_MODELS"


def test_resume_caches_every_task(first_run, resumed_run):
    """Every task is cached but MAKE_REPORT, whose report states the run it belongs to (its start and
    command line)."""
    first, _ = first_run
    trace = resumed_run.trace()
    assert {(process_of(row), row["status"]) for row in trace if process_of(row) != "MAKE_REPORT"} <= {(p, "CACHED") for p in PROCESSES}, trace
    assert [row["status"] for row in trace if process_of(row) == "MAKE_REPORT"] == ["COMPLETED"]
    # STAGE_MODELS is found in the model cache (storeDir), which the trace file does not list
    assert STORED in resumed_run.output
    stored_or_remade = {"STAGE_MODELS", "MAKE_REPORT"}
    assert sorted(row["hash"] for row in trace if process_of(row) not in stored_or_remade) == sorted(
        row["hash"] for row in first.trace() if process_of(row) not in stored_or_remade
    )
    assert_same_results(resumed_run.outdir, first.outdir)


def test_model_cache_is_reused(second_run, model_cache):
    assert STORED in second_run.output
    assert "STAGE_MODELS" not in {process_of(row) for row in second_run.trace()}
    scripts = [path.read_text() for path in second_run.work.rglob(".command.sh")]
    assert scripts and not any("stage_models.py" in script for script in scripts), "STAGE_MODELS ran its script again"
    assert len([path for path in model_cache.iterdir() if path.name.startswith("virnucpro-models-")]) == 1
    assert "STAGE_MODELS" in yaml.safe_load((second_run.outdir / "pipeline_info" / "virnucpro_software_mqc_versions.yml").read_text())


def test_a_task_that_exits_75_is_retried(second_run):
    esm = [row for row in second_run.trace() if process_of(row) == "EMBED_ESM"]
    failed = [row for row in esm if row["exit"] == "75"]
    assert len(failed) == 1 and failed[0]["attempt"] == "1", esm
    retried = [row for row in esm if row["tag"] == failed[0]["tag"] and row["attempt"] == "2"]
    assert [row["status"] for row in retried] == ["COMPLETED"], esm


def test_a_glob_input_gives_the_same_results(first_run, second_run):
    first, _ = first_run
    assert_same_results(second_run.outdir, first.outdir)


def test_an_invalid_record_fails_the_run_with_its_reason(tmp_path, nxf_home, parser):
    fasta = tmp_path / "broken.fa"
    fasta.write_text(">good\nACGTACGTAC\n>bad_one\nACGT-ZZ-ACGT\n")
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(fasta))
    assert run.result.returncode != 0
    message = next((line for line in run.output.splitlines() if "broken.fa" in line and "bad_one" in line), None)
    assert message, run.output[-4000:]
    assert "PREPARE_FRAMES" in run.output


@pytest.mark.parametrize("args, message", [
    (["--chunk_size", "abc"], "--chunk_size must be an integer, not 'abc'"),
    (["--chunk_size", "400"], "--chunk_size must be 300 or 500, not 400"),
    (["--use_gpu", "maybe"], "--use_gpu must be true or false, not 'maybe'"),
])
def test_bad_parameters_are_refused(tmp_path, nxf_home, parser, args, message):
    run = run_pipeline(nxf_home, parser, tmp_path, *args)
    assert run.result.returncode != 0
    assert message in run.output, run.output[-3000:]


@pytest.mark.parametrize("sample", ["pipeline_info", "report.html", "Models.json"])
def test_sample_names_that_clash_with_run_outputs_are_refused(tmp_path, nxf_home, parser, sample):
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"sample,fasta\n{sample},{SAMPLES['test']}\n")
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(sheet))
    assert run.result.returncode != 0
    assert f"sample names {sample} would clash with the run's own outputs" in run.output, run.output[-3000:]


def test_a_samplesheet_row_naming_a_missing_fasta_is_refused(tmp_path, nxf_home, parser):
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"sample,fasta\ngood,{SAMPLES['test']}\nlost,{tmp_path / 'missing.fa'}\n")
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(sheet))
    assert run.result.returncode != 0
    assert f"{sheet}: row 3: FASTA file {tmp_path / 'missing.fa'} does not exist" in run.output, run.output[-3000:]
