"""Shared fixtures: paths to the bin scripts and to the original tool's outputs, and hard timeouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin"
sys.path.insert(0, str(BIN))
# the original VirNucPro's outputs on a seeded corpus with tiny models, and those inputs
# (tests/fixtures/README.md: made by tests/fixtures/make_reference.py)
REFERENCE = REPO / "tests" / "fixtures" / "reference"

# Hard timeouts only stop a run that hangs; they never judge speed. Generous, because CI may be a
# loaded 2-core machine: a bin script takes seconds alone, a Nextflow run of the test profile
# about two minutes.
SCRIPT_TIMEOUT = 5 * 60
NEXTFLOW_TIMEOUT = 20 * 60


@pytest.fixture(scope="session")
def reference() -> Path:
    return REFERENCE


def run_script(name: str, *args: object, check: bool = True) -> subprocess.CompletedProcess:
    """Run bin/<name> as the pipeline does: a separate process with this interpreter."""
    command = [sys.executable, str(BIN / name), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def nxf_home(tmp_path_factory) -> Path:
    """A Nextflow home of the tests' own: no user config, no plugin, nothing downloaded."""
    return tmp_path_factory.mktemp("nxf_home")
