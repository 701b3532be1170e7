"""Nextflow as the tests run it: tests/nextflow/nextflow (the runtime that tests/nextflow/install.sh
installs from Maven Central), launched from the repository root, offline, with a Nextflow home
of the tests' own and the project's venv on the PATH, under either of Nextflow's parsers."""

from __future__ import annotations

import json
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
    return subprocess.run(**launch(nxf_home, parser, *args), capture_output=True, text=True, timeout=NEXTFLOW_TIMEOUT)


def nextflow_started(nxf_home: Path, parser: str, *args: str) -> subprocess.Popen:
    """Nextflow started in the background, its output (stdout and stderr) in one pipe."""
    return subprocess.Popen(**launch(nxf_home, parser, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def launch(nxf_home: Path, parser: str, *args: str) -> dict:
    env = {
        **os.environ,
        **PARSERS[parser],
        "NXF_HOME": str(nxf_home),
        "NXF_OFFLINE": "true",
        "NXF_ANSI_LOG": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    log = nxf_home / f"nextflow-{uuid.uuid4().hex[:8]}.log"
    return {"args": [str(NEXTFLOW), "-log", str(log), *args], "cwd": REPO, "env": env}


def record_options(parser: str, outdir: Path) -> list[str]:
    """Where a run puts its trace, report, timeline and DAG, for the strict parser: Nextflow
    25.04's reads ${params.outdir} in those settings before the command line's --outdir applies
    (26.04 does not), so the files are named on the command line (`execution_trace_test.txt`, ...)."""
    if parser != "v2":
        return []
    info = outdir / "pipeline_info"
    return [
        "-with-trace", str(info / "execution_trace_test.txt"), "-with-report", str(info / "execution_report_test.html"),
        "-with-timeline", str(info / "execution_timeline_test.html"), "-with-dag", str(info / "pipeline_dag_test.html"),
    ]


def call_functions(nxf_home: Path, parser: str, root: Path, calls: list[list]) -> list[dict]:
    """The pipeline's own Groovy functions called in the real Nextflow (tests/pipeline/functions.nf),
    one launch for all ``calls`` ([function, arguments...]): {"result": ...} or {"error": message} each."""
    spec = root / "calls.json"
    spec.write_text(json.dumps(calls))
    outdir = root / "functions_results"
    result = nextflow(
        nxf_home, parser, "run", "tests/pipeline/functions.nf", "--calls", str(spec), "--outdir", str(outdir),
        "-work-dir", str(root / "functions_work"), *record_options(parser, outdir),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [json.loads(line.removeprefix("CALL ")) for line in result.stdout.splitlines() if line.startswith("CALL ")]
    assert [line["index"] for line in lines] == list(range(len(calls))), result.stdout[-3000:]
    return lines
