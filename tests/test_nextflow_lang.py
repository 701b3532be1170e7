"""The official Nextflow language server finds no error in any .nf or .config file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKER_PYTHON = REPO / ".venv-nfcheck" / "bin" / "python"
DRIVER = REPO / "tests" / "nf_lang_check.py"

pytestmark = [
    pytest.mark.skipif(not CHECKER_PYTHON.exists(), reason=".venv-nfcheck is missing (tests/run_tests.sh builds it from requirements-nfcheck.txt)"),
    pytest.mark.skipif(shutil.which("java") is None, reason="java (17 or later) is not installed: the Nextflow language server needs it"),
]


def check(root: Path, *files: str) -> tuple[int, list[dict]]:
    result = subprocess.run([str(CHECKER_PYTHON), str(DRIVER), str(root), *files], capture_output=True, text=True, timeout=300)
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode in (0, 1), f"checker failed to run:\n{result.stderr[-3000:]}"
    return result.returncode, findings


def describe(findings: list[dict]) -> str:
    return "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']}" for f in findings)


def test_repository_has_no_nextflow_errors():
    returncode, findings = check(REPO)
    errors = [f for f in findings if f["level"] == "error"]
    assert not errors, "Nextflow language server errors:\n" + describe(errors)
    assert returncode == 0
    checked = {f["file"] for f in findings}  # warnings name files; the main files must exist at least
    assert (REPO / "main.nf").exists() and (REPO / "nextflow.config").exists(), checked


def test_checker_reports_errors(tmp_path):
    """The check can fail: a script and a config with mistakes are reported, line by line."""
    (tmp_path / "main.nf").write_text("workflow {\n    x = = 1\n}\n")
    (tmp_path / "nextflow.config").write_text("params {\n    a = 1\n}\nincludeConfig 'conf/missing.config'\n")
    returncode, findings = check(tmp_path)
    errors = {(f["file"], f["line"]) for f in findings if f["level"] == "error"}
    assert returncode == 1
    assert ("main.nf", 2) in errors
    assert ("nextflow.config", 4) in errors
