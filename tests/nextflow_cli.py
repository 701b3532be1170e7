"""Nextflow as the tests run it: tests/nextflow/nextflow (the runtime that tests/nextflow/install.sh
installs from Maven Central), launched from the repository root, offline, with a Nextflow home
of the tests' own and the project's venv on the PATH, under either of Nextflow's parsers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import NEXTFLOW_TIMEOUT

REPO = Path(__file__).resolve().parents[1]
NEXTFLOW = REPO / "tests" / "nextflow" / "nextflow"
PARSERS = {
    "v1": {},
    # the strict parser, the default from Nextflow 26.04, which also passes every command-line
    # value as a string
    "v2": {"NXF_SYNTAX_PARSER": "v2", "NXF_DISABLE_PARAMS_TYPE_DETECTION": "true"},
}


def nextflow(nxf_home: Path, parser: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **PARSERS[parser],
        "NXF_HOME": str(nxf_home),
        "NXF_OFFLINE": "true",
        "NXF_ANSI_LOG": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    log = nxf_home / f"nextflow-{uuid.uuid4().hex[:8]}.log"
    command = [str(NEXTFLOW), "-log", str(log), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=NEXTFLOW_TIMEOUT)
