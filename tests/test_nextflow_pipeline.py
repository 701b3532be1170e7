"""The pipeline run by the real Nextflow (tests/nextflow/nextflow, installed from Maven Central)
through its plugin-free entry tests/pipeline/main.nf, on the test profile, under both of
Nextflow's parsers: every run succeeds or fails as it should, and its outputs equal, byte for
byte, those of the bin scripts run by hand with the modules' command lines."""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import NEXTFLOW_TIMEOUT
from nextflow_cli import PARSERS, nextflow, nextflow_started, record_options
from nf_modules import MODULES, REPO, command_template, render
from tolerance import SCORE_TOLERANCE, assert_chunk_calls_match, assert_predictions_match

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
        traces = sorted((self.outdir / "pipeline_info").glob("execution_trace_*.txt"))
        assert len(traces) == 1, traces
        return read_tsv(traces[0])


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
    result = nextflow(
        nxf_home, parser, "run", ENTRY, "-profile", "test", "--outdir", str(outdir), "-work-dir", str(work),
        *record_options(parser, outdir), *args,
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
    models_json = str(work / key / "models.json")
    all_metrics: list[str] = []
    calls: list[str] = []
    for sample, fasta in SAMPLES.items():
        run_module("prepare_frames", {"fasta": str(fasta), "chunk_size": CHUNK_SIZE, "meta.id": sample, "args": "--shard-tokens 6000"})
        sample_metrics = [f"{sample}.prepare_frames.json"]
        shards = read_tsv(work / f"{sample}.shards.tsv")
        embeddings: dict[str, list[str]] = {"dnabert": [], "esm": []}
        for shard in [row["shard"] for row in shards if row["kind"] == "dnabert"]:
            run_module("embed_dnabert", {"fna": f"{shard}.fna", "model": str(models["dnabert"]), "models_json": models_json, "meta.shard": shard, "device": "cpu", "args": EMBED_ARGS})
            embeddings["dnabert"].append(f"{shard}.h5")
            sample_metrics.append(f"{shard}.embed.json")
        for shard in [row["shard"] for row in shards if row["kind"] == "esm"]:
            run_module("embed_esm", {"faa": f"{shard}.faa", "checkpoint": str(models["esm"]), "models_json": models_json, "meta.shard": shard, "device": "cpu", "args": EMBED_ARGS})
            embeddings["esm"].append(f"{shard}.h5")
            sample_metrics.append(f"{shard}.embed.json")
        predictions = []
        for shard in [row["shard"] for row in shards if row["kind"] == "frames"]:
            run_module("classify_frames", {
                "frames": f"{shard}.frames.tsv", "shards": f"{sample}.shards.tsv", "dnabert.join(' ')": " ".join(embeddings["dnabert"]),
                "esm.join(' ')": " ".join(embeddings["esm"]), "classifier": str(models["classifier"]), "models_json": models_json,
                "meta.shard": shard, "args": "",
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


def test_pipeline_info(first_run, parser):
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
    # the run's records, named by the launch's trace_report_suffix (given on the command line to
    # Nextflow 25.04's strict parser, see record_options)
    records = sorted(path.name for path in info.iterdir() if path.name not in ("models.json", "virnucpro_software_mqc_versions.yml"))
    params = json.loads(next(info.glob("params_*.json")).read_text())
    suffix = "test" if parser == "v2" else params["trace_report_suffix"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", params["trace_report_suffix"])
    assert records == sorted([
        f"execution_report_{suffix}.html", f"execution_timeline_{suffix}.html", f"execution_trace_{suffix}.txt",
        f"pipeline_dag_{suffix}.html", f"params_{params['trace_report_suffix']}.json",
    ])
    # the parameters as the run used them: typed, whatever the parser passed
    assert (params["chunk_size"], params["tiny_models"], params["use_gpu"], params["outdir"]) == (500, True, False, str(run.outdir))


def test_models_json_states_the_files_used(first_run, model_cache):
    # every file an embedder or the classifier read, with its sha256, as the cache holds it
    run, _ = first_run
    models = json.loads((run.outdir / "pipeline_info" / "models.json").read_text())
    (entry,) = model_cache.glob("virnucpro-models-*")
    assert models == json.loads((entry / "models.json").read_text())
    assert set(models["dnabert"]["files"]) == {"config.json", "tokenizer.json", "pytorch_model.bin"}
    for role, model in models.items():
        for name, digest in model["files"].items():
            path = entry / model["path"] / name if role == "dnabert" else entry / model["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
        assert all(digest in (run.outdir / "report.html").read_text() for digest in model["files"].values())


STORED = "[skipping] Stored process > PIPELINE:VIRNUCPRO:STAGE_MODELS"


def test_resume_caches_every_task(first_run, resumed_run):
    """Every task is cached, MAKE_REPORT too (into another --outdir): its report states the run's
    first launch."""
    first, _ = first_run
    trace = resumed_run.trace()
    assert {process_of(row) for row in trace} == PROCESSES - {"STAGE_MODELS"}
    assert {row["status"] for row in trace} == {"CACHED"}, trace
    # STAGE_MODELS is found in the model cache (storeDir), which the trace file does not list
    assert STORED in resumed_run.output
    assert sorted(row["hash"] for row in trace) == sorted(row["hash"] for row in first.trace() if process_of(row) != "STAGE_MODELS")
    assert_same_results(resumed_run.outdir, first.outdir)
    assert (resumed_run.outdir / "report.html").read_bytes() == (first.outdir / "report.html").read_bytes()


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
    """The same calls; the scores within the suite's tolerance, as the retried EMBED_ESM task
    embedded its shard in batches of half the budget."""
    first, _ = first_run
    for sample in SAMPLES:
        ours, theirs = second_run.outdir / sample, first.outdir / sample
        assert_predictions_match(ours / "prediction_results.txt", theirs / "prediction_results.txt")
        assert_chunk_calls_match(ours / "prediction_results_highestscore.csv", theirs / "prediction_results_highestscore.csv",
                                 ours / "prediction_results.txt", theirs / "prediction_results.txt")  # fmt: skip
        rows, expected_rows = read_tsv(ours / "sequence_calls.tsv"), read_tsv(theirs / "sequence_calls.tsv")
        scores = ("max_chunk_score", "mean_chunk_score")
        assert [{k: v for k, v in row.items() if k not in scores} for row in rows] == [
            {k: v for k, v in row.items() if k not in scores} for row in expected_rows
        ]
        for row, expected in zip(rows, expected_rows):
            for key in scores:
                assert (row[key] == expected[key]) or abs(float(row[key]) - float(expected[key])) <= SCORE_TOLERANCE, (row, expected)
        assert (ours / "viral_sequences.fasta").read_bytes() == (theirs / "viral_sequences.fasta").read_bytes()


def test_an_invalid_record_fails_the_run_with_its_reason(tmp_path, nxf_home, parser):
    fasta = tmp_path / "broken.fa"
    fasta.write_text(">good\nACGTACGTAC\n>bad_one\nACGT-ZZ-ACGT\n")
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(fasta))
    assert run.result.returncode != 0
    message = next((line for line in run.output.splitlines() if "broken.fa" in line and "bad_one" in line), None)
    assert message, run.output[-4000:]
    assert "PREPARE_FRAMES" in run.output


def refused_at_start(run: Run, message: str) -> None:
    """The run failed with ``message`` as its one error, before any task started."""
    assert run.result.returncode != 0
    errors = [line for line in run.output.splitlines() if "ERROR" in line or message in line]
    assert len(errors) == 1 and message in errors[0], run.output[-3000:]
    assert "no FASTA file found" not in run.output
    assert not list(run.work.glob("*/*/.command.sh")), "a task started"


@pytest.mark.parametrize("args, message", [
    (["--chunk_size", "abc"], "--chunk_size must be an integer, not 'abc'"),
    (["--chunk_size", "400"], "--chunk_size 400: must be 300 or 500: the published classifiers were trained on these chunk lengths"),
    (["--use_gpu", "maybe"], "--use_gpu must be true or false, not 'maybe'"),
])
def test_bad_parameters_are_refused(tmp_path, nxf_home, parser, args, message):
    refused_at_start(run_pipeline(nxf_home, parser, tmp_path, *args), message)


@pytest.mark.parametrize("source", ["command line", "params file"])
def test_a_parameter_that_would_run_code_is_refused_before_any_task(tmp_path, nxf_home, parser, source):
    # as a params file or a launch form (Seqera Platform) passes them: none may reach a shell as code
    marker = tmp_path / "ran"
    if source == "command line":
        args = ["--dnabert_model", f"zhihan1996/$(touch {marker})"]
        message = f"--dnabert_model 'zhihan1996/$(touch {marker})': must be a name, URL or path without quotes"
    else:
        params = tmp_path / "params.json"
        params.write_text(json.dumps({"model_cache": f"{tmp_path}/cache`touch {marker}`"}))
        args = ["-params-file", str(params)]
        message = f"--model_cache '{tmp_path}/cache`touch {marker}`': must be a folder path or URL without quotes"
    refused_at_start(run_pipeline(nxf_home, parser, tmp_path, *args), message)
    assert not marker.exists()


@pytest.mark.parametrize("sample", ["pipeline_info", "report.html", "Models.json"])
def test_sample_names_that_clash_with_run_outputs_are_refused(tmp_path, nxf_home, parser, sample):
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"sample,fasta\n{sample},{SAMPLES['test']}\n")
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(sheet))
    refused_at_start(run, f"{sheet}: row 2: sample name '{sample}' would clash with the run's own outputs")


def test_a_samplesheet_row_naming_a_missing_fasta_is_refused(tmp_path, nxf_home, parser):
    # one error, naming the file and row (no second, wrong "no FASTA file found")
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"sample,fasta\ngood,{SAMPLES['test']}\nlost,{tmp_path / 'missing.fa'}\n")
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(sheet))
    refused_at_start(run, f"{sheet}: row 3: FASTA file {tmp_path / 'missing.fa'} does not exist")


def test_a_sample_folder_holding_user_files_is_refused_at_start(tmp_path, nxf_home, parser):
    # the common layout proj/s1/s1.fa with --outdir proj: publishDir would have replaced proj/s1/
    # whole, the user's FASTA and notes with it
    project = tmp_path / "results"
    fasta = project / "s1" / "s1.fa"
    fasta.parent.mkdir(parents=True)
    shutil.copy(SAMPLES["test"], fasta)
    (project / "s1" / "notes.txt").write_text("sequenced 2024-05-01\n")
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    run = run_pipeline(nxf_home, parser, tmp_path, "--input", str(fasta))
    refused_at_start(run, f"--outdir {project}: {project / 's1'} holds 'notes.txt', which this pipeline did not write")
    assert all(path.read_bytes() == content for path, content in before.items())


def test_a_model_changed_in_the_cache_is_refused_naming_it(tmp_path, nxf_home, parser, model_cache, first_run):
    # STAGE_MODELS is skipped for a stored entry: the tasks that use a model check its files
    cache = shutil.copytree(model_cache, tmp_path / "cache")
    (entry,) = cache.glob("virnucpro-models-*")
    models = json.loads((entry / "models.json").read_text())
    tokenizer = entry / models["dnabert"]["path"] / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"ACGT"', '"ACGA"', 1))
    run = run_pipeline(nxf_home, parser, tmp_path, *CLI_PARAMS, "--model_cache", str(cache))
    assert run.result.returncode != 0
    found = hashlib.sha256(tokenizer.read_bytes()).hexdigest()
    message = f"{tokenizer}: sha256 {found}, but STAGE_MODELS recorded {models['dnabert']['files']['tokenizer.json']}"
    assert message in run.output and "EMBED_DNABERT" in run.output, run.output[-4000:]
    assert not (run.outdir / "test").exists()


# ---------------------------------------------------------------- stub runs (the default parser)
# -stub-run: the tasks' stub: blocks, so that what Nextflow does around them (storeDir, publishing,
# the run's records) is shown in seconds rather than minutes


def stub_run(nxf_home: Path, root: Path, *args: str) -> subprocess.Popen:
    """A stub run of the test profile (default parser), started in the background."""
    return nextflow_started(
        nxf_home, "v1", "run", ENTRY, "-profile", "test", "-stub-run", "--outdir", str(root / "results"),
        "-work-dir", str(root / "work"), *args,
    )


def finished(process: subprocess.Popen, root: Path) -> Run:
    output, _ = process.communicate(timeout=NEXTFLOW_TIMEOUT)
    return Run(subprocess.CompletedProcess(process.args, process.returncode, output, ""), root / "results", root / "work")


@dataclass
class StubRuns:
    cache: Path
    pair: list[Run]       # two runs staging into one fresh cache at once
    barrier: Path
    resumed: Run          # a later run, its cache entry half written; its input a fully quoted samplesheet
    resumed_rows: list[dict[str, str]]  # its trace
    resumed_records: dict[str, bytes]   # its pipeline_info/ files
    failed_launch: Run    # then a launch into the same --outdir that fails at start


@pytest.fixture(scope="module")
def stub_runs(tmp_path_factory, nxf_home) -> StubRuns:
    root = tmp_path_factory.mktemp("stub_runs")
    cache, barrier = root / "cache", root / "barrier"
    barrier.mkdir()
    # both STAGE_MODELS tasks wait for each other, so both stage (neither finds the entry) and
    # both move their files into the cache at the same time
    config = root / "barrier.config"
    config.write_text(
        "process {\n    withName: 'STAGE_MODELS' {\n"
        f"        beforeScript = 'touch {barrier}/$$; n=0; while [ $(ls {barrier} | wc -l) -lt 2 ] && [ $n -lt 1500 ]; do sleep 1; n=$((n + 1)); done'\n"
        "    }\n}\n"
    )
    started = [stub_run(nxf_home, root / f"pair{index}", "--model_cache", str(cache), "-c", str(config)) for index in (1, 2)]
    pair = [finished(process, root / f"pair{index}") for index, process in zip((1, 2), started)]

    # half written: the models moved in, models.json and versions.txt not
    (entry,) = cache.glob("virnucpro-models-*")
    for name in ("models.json", "versions.txt"):
        (entry / name).unlink(missing_ok=True)
    sheet = root / "quoted.csv"  # as R's write.csv(row.names = FALSE) writes it, CRLF line ends
    sheet.write_text('"sample","fasta"\r\n' + "".join(f'"{name}","{path}"\r\n' for name, path in SAMPLES.items()), newline="")
    resumed = finished(stub_run(nxf_home, root / "later", "--model_cache", str(cache), "--input", str(sheet)), root / "later")
    records = {path.name: path.read_bytes() for path in (resumed.outdir / "pipeline_info").iterdir()}
    rows = resumed.trace() if resumed.result.returncode == 0 else []
    failed = finished(stub_run(nxf_home, root / "later", "--chunk_size", "400"), root / "later")
    return StubRuns(cache, pair, barrier, resumed, rows, records, failed)


def test_two_runs_staging_into_one_fresh_cache_both_succeed(stub_runs):
    assert len(list(stub_runs.barrier.iterdir())) == 2, "the two STAGE_MODELS tasks did not meet"
    for run in stub_runs.pair:
        assert run.result.returncode == 0, run.output[-4000:]
        assert [row["status"] for row in run.trace() if process_of(row) == "STAGE_MODELS"] == ["COMPLETED"]
        assert {path.name for path in run.outdir.iterdir()} == {"pipeline_info", "report.html", "virnucpro_mqc.tsv", *SAMPLES}


def test_a_half_written_cache_entry_is_staged_again(stub_runs):
    run = stub_runs.resumed
    assert run.result.returncode == 0, run.output[-4000:]
    assert STORED not in run.output
    assert [row["status"] for row in stub_runs.resumed_rows if process_of(row) == "STAGE_MODELS"] == ["COMPLETED"]
    (entry,) = stub_runs.cache.glob("virnucpro-models-*")
    assert (entry / "models.json").is_file() and (entry / "versions.txt").is_file()


def test_a_fully_quoted_samplesheet_runs(stub_runs):
    run = stub_runs.resumed
    assert {path.name for path in run.outdir.iterdir()} == {"pipeline_info", "report.html", "virnucpro_mqc.tsv", *SAMPLES}
    assert json.loads((run.outdir / "test" / "summary.json").read_text())["sample"] == "test"


def test_a_failed_launch_keeps_the_records_of_the_run_before(stub_runs):
    failed = stub_runs.failed_launch
    assert failed.result.returncode != 0 and "--chunk_size 400: must be 300 or 500" in failed.output
    info = failed.outdir / "pipeline_info"
    assert all((info / name).read_bytes() == content for name, content in stub_runs.resumed_records.items())
    (trace,) = [name for name in stub_runs.resumed_records if name.startswith("execution_trace_")]
    assert len(read_tsv(info / trace)) >= len(PROCESSES)
    assert any(name.startswith("pipeline_dag_") for name in stub_runs.resumed_records)
    assert len(list(info.glob("execution_trace_*.txt"))) == 2, "the failed launch has a trace of its own"
