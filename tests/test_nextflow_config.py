"""Nextflow itself reads the project: `nextflow lint` finds nothing in any .nf or .config file,
and `nextflow config` resolves every profile, with the directives its executor needs, under
both parsers and whatever the order of the profiles."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import NEXTFLOW_TIMEOUT
from nextflow_cli import NEXTFLOW, PARSERS, REPO, nextflow

# besides lint's own (.git, .nf-test, work): the venv, the Nextflow runtime, and nf-test's
# config, which is no Nextflow config
LINT_EXCLUDES = [".git", ".nf-test", "work", ".venv", "lib", "nf-test.config"]
LINT_MESSAGES = REPO / "tests" / "nextflow" / "lint_messages.groovy"
# the project entry of `nextflow config`: the test entry, whose folder has no nextflow_schema.json,
# so that the strict parser does not fetch nf-schema (the repository root's nextflow.config is
# read all the same, as for any run launched from there)
PROJECT = "tests/pipeline"
# what each profile must set: lines of `nextflow config -flat` output
PROFILE_SETTINGS = {
    # tasks run as the launching user (nothing in work/ or the results belongs to root)
    "docker": [
        "docker.enabled = true", "process.container = 'virnucpro:0.1.0'", "docker.runOptions = '-u $(id -u):$(id -g)'",
        "docker.envWhitelist = 'CUDA_VISIBLE_DEVICES'",
    ],
    "podman": ["podman.enabled = true", "process.container = 'virnucpro:0.1.0'", "podman.envWhitelist = 'CUDA_VISIBLE_DEVICES'"],
    "singularity": [
        "singularity.enabled = true", "singularity.envWhitelist = 'CUDA_VISIBLE_DEVICES'",
        f"process.container = '{REPO}/tests/pipeline/containers/virnucpro_0.1.0.sif'",
    ],
    "apptainer": ["apptainer.enabled = true", "apptainer.envWhitelist = 'CUDA_VISIBLE_DEVICES'"],
    "gpu": ["params.use_gpu = true", "process.'withName:EMBED_DNABERT|EMBED_ESM'.maxForks = 1"],
    # the GPU request process-wide, which a site config's withLabel: 'process_gpu' outranks (a
    # withName selector would outrank it); one submission a second
    "slurm": [
        "process.executor = 'slurm'", "params.use_gpu = true", "executor.submitRateLimit = '60/1min'",
        'process.clusterOptions = { task.accelerator ? "--gres=gpu:${task.accelerator.request}" : null }',
    ],
    "awsbatch": ["process.executor = 'awsbatch'", "params.use_gpu = true"],
    "google_batch": ["process.executor = 'google-batch'", "params.use_gpu = true", "google.batch.installGpuDrivers = true"],
}
# what the GPU tasks ask each executor for, in the closures that `nextflow config` prints
GPU_REQUESTS = {
    "slurm": "--gres=gpu:${task.accelerator.request}",
    "google_batch": "nvidia-l4",
    "gpu": "cuda:${(task.index - 1) % (params.local_gpus as Integer)}",
}
PROFILE_PAIRS = [("test", "gpu"), ("slurm", "singularity"), ("gpu", "docker"), ("test", "slurm"), ("test", "podman")]
# the strict parser starts the cloud executors' plugins (nf-amazon, nf-google) to check their
# config, and plugins cannot be had offline: those profiles are resolved by the default parser
CLOUD_PROFILES = {"awsbatch", "google_batch"}


def lint(*paths: str | Path) -> subprocess.CompletedProcess:
    excludes = [argument for pattern in LINT_EXCLUDES for argument in ("-exclude", pattern)]
    return subprocess.run([str(NEXTFLOW), "lint", *excludes, *map(str, paths)], cwd=REPO, capture_output=True, text=True, timeout=NEXTFLOW_TIMEOUT)


def lint_messages(*paths: str | Path) -> str:
    """The parser's messages, which `nextflow lint` 25.04.4 cannot print (tests/nextflow/lint_messages.groovy)."""
    files = [
        str(path) for root in map(Path, paths) for path in sorted((REPO / root).rglob("*"))
        if path.suffix in (".nf", ".config") and not set(path.relative_to(REPO / root).parts) & set(LINT_EXCLUDES)
    ]
    java = ["java", "-cp", str(NEXTFLOW.parent / "lib" / "*"), "groovy.ui.GroovyMain", str(LINT_MESSAGES), *files]
    result = subprocess.run(java, cwd=REPO, capture_output=True, text=True, timeout=NEXTFLOW_TIMEOUT)
    return result.stdout + result.stderr


def test_lint_finds_nothing():
    result = lint(".")
    assert result.returncode == 0, f"nextflow lint failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}\n{lint_messages('.')}"
    assert "had no errors" in result.stdout


def test_lint_reports_mistakes(tmp_path):
    """The check can fail: a script with an undefined name and a config with an if statement."""
    (tmp_path / "main.nf").write_text("workflow {\n    main:\n    undefined_name.view()\n}\n")
    (tmp_path / "broken.config").write_text("if (true) {\n    params.a = 1\n}\n")
    assert lint(tmp_path).returncode != 0
    messages = lint_messages(tmp_path)
    assert "main.nf:3:" in messages and "`undefined_name` is not defined" in messages, messages
    assert "broken.config:1:" in messages, messages


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_the_launch_reads_the_manifest_without_warning(nxf_home, parser):
    """`nextflow run .` reads the manifest of nextflow.config before it binds projectDir: nothing there
    may call a method on it (a warning at every launch). Offline the run stops at the nf-schema plugin."""
    result = nextflow(nxf_home, parser, "run", ".", "--help")
    output = result.stdout + result.stderr
    assert "Launching `./main.nf`" in output and "WARN" not in output, output


def resolved(nxf_home: Path, parser: str, profiles: str) -> str:
    result = nextflow(nxf_home, parser, "config", PROJECT, "-flat", "-profile", profiles)
    assert result.returncode == 0, f"nextflow config -profile {profiles} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    # without the strict parser's warnings of nf-lang 25.04.0 ("Unrecognized config option"), which come in no fixed order,
    # and with the launch's time stamp (the default trace_report_suffix) as one placeholder
    lines = (line for line in result.stdout.splitlines() if not line.startswith("WARN: "))
    return re.sub(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", "<launch time>", "\n".join(lines))


@pytest.mark.parametrize("parser, profile", [
    (parser, profile) for parser in sorted(PARSERS) for profile in sorted(PROFILE_SETTINGS)
    if not (parser == "v2" and profile in CLOUD_PROFILES)
])
def test_profile_resolves(nxf_home, parser, profile):
    config = resolved(nxf_home, parser, profile)
    lines = set(config.splitlines())
    assert set(PROFILE_SETTINGS[profile]) <= lines, f"-profile {profile}: missing {set(PROFILE_SETTINGS[profile]) - lines}"
    if profile in GPU_REQUESTS:
        assert GPU_REQUESTS[profile] in config, config
    # a site config's withLabel: 'process_gpu' { clusterOptions = ... } must reach the GPU tasks:
    # no profile sets clusterOptions under a withName selector, which would outrank it
    assert not [line for line in lines if line.startswith("process.'withName:") and ".clusterOptions = " in line], config
    # conf/base.config's GPU task settings survive the profile, and follow --use_gpu (a CPU-only
    # cluster can be used)
    assert "process.'withLabel:process_gpu'.accelerator = { params.use_gpu.toString().toBoolean() ? 1 : null }" in lines
    assert "process.'withLabel:process_gpu'.memory = { 48.GB * task.attempt }" in lines


@pytest.mark.parametrize("first, second", PROFILE_PAIRS)
def test_profile_order_does_not_matter(nxf_home, first, second):
    # the strict parser applies profiles in command-line order: the same settings either way
    # (the two profiles' selectors may be listed in either order)
    assert sorted(resolved(nxf_home, "v2", f"{first},{second}").splitlines()) == sorted(resolved(nxf_home, "v2", f"{second},{first}").splitlines())
