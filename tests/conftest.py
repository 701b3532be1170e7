"""Shared fixtures: paths to the bin scripts and to the original tool's outputs, and hard timeouts."""

from __future__ import annotations

import contextlib
import io
import signal
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

from virnucpro import cli, contracts  # noqa: E402  (from bin/, put on the path above)
from virnucpro.fasta import read_fasta  # noqa: E402


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


def run_main(script, argv: list[str]) -> tuple[int, str]:
    """A bin script's main run in this process as the script runs it (``script``: the imported
    script module): (exit status, stderr)."""
    stderr, sigterm = io.StringIO(), signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stderr(stderr):
            status = cli.run(script.main, script.build_parser, argv)
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return status, stderr.getvalue()


@pytest.fixture(scope="session")
def nxf_home(tmp_path_factory) -> Path:
    """A Nextflow home of the tests' own: no user config, no plugin, nothing downloaded."""
    return tmp_path_factory.mktemp("nxf_home")


def with_repeats(source: Path, target: Path) -> dict[str, str]:
    """``source`` with every record followed by a copy under another ID, and every third record
    at the end once more (PCR duplicates, the same gene in two reads); returns copy -> original."""
    originals = list(read_fasta(source))
    copies: dict[str, str] = {}
    text = []
    for record in originals:
        text.append(f">{record.header}\n{record.sequence}\n>copy_{record.id}\n{record.sequence}\n")
        copies[f"copy_{record.id}"] = record.id
    for record in originals[::3]:
        text.append(f">again_{record.id}\n{record.sequence.lower()}\n")
        copies[f"again_{record.id}"] = record.id
    target.write_text("".join(text))
    return copies


EMBEDDERS = {"dnabert": ("embed_dnabert.py", "dnabert_s_tiny"), "esm": ("embed_esm.py", "esm2_t36_tiny_UR50D.pt")}  # script, tiny model


def run_after_prepare(reference: Path, folder: Path, prefix: str, fasta: Path, chunk_size: int) -> Path:
    """After prepare_frames.py (into ``folder`` with ``prefix``), the rest of the chain as the
    modules run it: every embedding shard embedded (fp32, the tiny models), every frame shard
    classified, the sample summarized into ``folder``/results."""
    manifest = contracts.read_shards(folder / f"{prefix}.shards.tsv")
    embeddings: dict[str, list[Path]] = {}
    for kind in contracts.EMBEDDING_KINDS:
        embeddings[kind] = []
        for shard in contracts.shards_of(manifest, kind):
            out = folder / f"{shard.name}.h5"
            run_script(EMBEDDERS[kind][0], "--fasta", folder / f"{shard.name}{contracts.SHARD_SUFFIXES[kind]}", "--model", reference / "models" / EMBEDDERS[kind][1],
                       "--out", out, "--device", "cpu", "--precision", "fp32", "--no-progress", "--metrics", folder / f"{shard.name}.json")  # fmt: skip
            embeddings[kind].append(out)
    predictions = []
    for shard in contracts.shards_of(manifest, contracts.FRAMES):
        predictions.append(folder / f"{shard.name}.predictions.tsv")
        run_script("classify_frames.py", "--frames", folder / f"{shard.name}.frames.tsv", "--shards", folder / f"{prefix}.shards.tsv",
                   "--dnabert", *embeddings[contracts.DNABERT], "--esm", *embeddings[contracts.ESM],
                   "--classifier", reference / "models" / "classifier_tiny.pth", "--out", predictions[-1], "--device", "cpu")  # fmt: skip
    run_script("summarize.py", "--sample", "S", "--predictions", *predictions, "--shards", folder / f"{prefix}.shards.tsv",
               "--sequences", folder / f"{prefix}.sequences.tsv", "--fasta", fasta, "--outdir", folder / "results",
               "--chunk-size", chunk_size)  # fmt: skip
    return folder / "results"
