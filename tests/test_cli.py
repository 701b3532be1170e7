"""What every bin script shares: --version without the heavy libraries, and --threads, which
ties torch, the BLAS libraries and the tokenizer to the task's CPUs before they load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import BIN, SCRIPT_TIMEOUT
from virnucpro import cli

SCRIPTS = sorted(path.name for path in BIN.glob("*.py"))
HEAVY = ("torch", "numpy", "h5py", "tokenizers", "safetensors", "esm", "Bio", "huggingface_hub")


def run_python(code: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, cwd=BIN, check=True, timeout=SCRIPT_TIMEOUT)


@pytest.mark.parametrize("script", SCRIPTS)
def test_version_loads_none_of_the_heavy_libraries(script):
    """The versions topic of every task runs this; it reads the packages' metadata instead."""
    code = (
        "import runpy, sys\n"
        "sys.argv = [sys.argv[1], '--version']\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    version, loaded = run_python(code, str(BIN / script)).stdout.splitlines()
    assert loaded == "[]"
    assert version == cli.dependency_versions()


def test_version_names_the_libraries_as_they_report_themselves():
    import Bio
    import esm
    import h5py
    import numpy
    import tokenizers
    import torch

    expected = [f"python {sys.version.split()[0]}", f"numpy {numpy.__version__}", f"torch {torch.__version__}",
                f"fair-esm {esm.__version__}", f"tokenizers {tokenizers.__version__}", f"h5py {h5py.__version__}",
                f"biopython {Bio.__version__}"]  # fmt: skip
    assert cli.dependency_versions().split("; ")[1:] == expected


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_threads_are_set_before_the_libraries_load(threads):
    """--threads (the pipeline gives task.cpus; default: the CPUs the process may use) is in the
    variables the thread pools read, before main runs, and torch then uses that many threads."""
    code = (
        "import os, sys\n"
        "from virnucpro import cli\n"
        "def build_parser():\n"
        "    print('torch' in sys.modules, [os.environ[name] for name in cli.THREAD_VARIABLES])\n"
        "    return cli.make_parser('test')\n"
        "def main(args):\n"
        "    import numpy, torch\n"
        "    print(torch.get_num_threads(), args.threads)\n"
        "sys.exit(cli.run(main, build_parser, sys.argv[2:], uses_torch=sys.argv[1] == 'torch'))\n"
    )
    expected = threads or len(os.sched_getaffinity(0))
    options = ["--threads", str(threads)] if threads else []
    cpu_stage, torch_stage = (run_python(code, kind, *options).stdout.splitlines() for kind in ("cpu", "torch"))
    variables = [str(expected)] * len(cli.THREAD_VARIABLES)
    assert cpu_stage[0] == f"False {variables}" and torch_stage[0] == f"True {variables}"
    assert torch_stage[1] == f"{expected} {expected}"


def test_an_abbreviated_option_is_refused(tmp_path):
    """--threads is read before the script's own options: '--thr' may mean it nowhere."""
    result = subprocess.run([sys.executable, str(BIN / "summarize.py"), "--sequences", "x", "--outdir", str(tmp_path), "--chunk-size", "500", "--thr", "2"],
                            capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)  # fmt: skip
    assert result.returncode == 2 and "unrecognized arguments: --thr 2" in result.stderr


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_refused_with_the_scripts_usage(value):
    result = subprocess.run([sys.executable, str(BIN / "prepare_frames.py"), "--threads", value], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
    assert result.returncode == 2 and "argument --threads:" in result.stderr and "--chunk-size" in result.stderr


@pytest.mark.parametrize("threads", [1, 3])
def test_an_embedder_runs_with_the_threads_it_is_given(reference, tmp_path, threads):
    metrics = tmp_path / "m.json"
    subprocess.run(
        [sys.executable, str(BIN / "embed_dnabert.py"), "--fasta", str(reference / "identified_nucleotide500.fa"),
         "--model", str(reference / "models" / "dnabert_s_tiny"), "--out", str(tmp_path / "x.h5"), "--device", "cpu",
         "--no-progress", "--quiet", "--metrics", str(metrics), "--threads", str(threads)],
        check=True, capture_output=True, timeout=SCRIPT_TIMEOUT,
    )  # fmt: skip
    assert json.loads(metrics.read_text())["threads"] == threads
