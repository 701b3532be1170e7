"""Shared fixtures: paths to the bin scripts and to the reference outputs of the original tool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin"
sys.path.insert(0, str(BIN))


def reference_path() -> Path:
    """The original tool's outputs: $VIRNUCPRO_REFERENCE, else ../shared/reference beside the checkout."""
    return Path(os.environ.get("VIRNUCPRO_REFERENCE", REPO.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference() -> Path:
    path = reference_path()
    if not (path / "input.fa").exists():
        pytest.skip(f"reference outputs not found at {path} (set VIRNUCPRO_REFERENCE)")
    return path


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
