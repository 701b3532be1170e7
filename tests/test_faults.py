"""Fault injection: every stage killed at a random point of its writing, and every stage on a
disk that fills up, never leaves a final-named output that is incomplete or mixed.

Each stage first runs undisturbed (the chain on assets/test.fa with the seeded tiny models that
stage_models.py --tiny writes; nothing here needs the original's outputs) with
its file-system changes counted (tests/fault_injection.py); then it runs again, SIGKILLed at a
random one of those changes, and on a small disk filled to a random level. After a kill, every
final-named output is absent or byte-equal to the undisturbed one, and a results folder holds one
complete set (the earlier run's or the new one's). On a full disk a stage succeeds with the same
outputs, or fails with exit 74 and one line saying the disk is full, leaving no output.

The seed is random per run and printed on failure (VIRNUCPRO_FAULT_SEED sets it).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BIN, REPO
from small_disk import small_disk

SEED = int(os.environ.get("VIRNUCPRO_FAULT_SEED", random.SystemRandom().randrange(1 << 30)))
INJECTOR = REPO / "tests" / "fault_injection.py"
DISK_FULL_EXIT = 74
KILLED = -9


@dataclass(frozen=True)
class Stage:
    name: str
    script: str
    arguments: tuple[str, ...]  # "{out}" is the output folder, "{base}" the undisturbed run's
    outputs: tuple[str, ...]  # final-named outputs, relative to the output folder

    def command(self, out: Path, base: Path) -> list[str]:
        return [argument.format(out=out, base=base) for argument in self.arguments]


CORPUS = REPO / "assets" / "test.fa"


def stages(shard: str = "0001") -> list[Stage]:
    """The chain's stages, the embedders and the classifier on shard ``shard`` of each kind;
    models are read from {base}/models (stage_models.py --tiny)."""
    embeddings = [f"{{base}}/s.{kind}.{number}.h5" for kind in ("dnabert", "esm") for number in ("0001", "0002")]
    return [
        Stage("prepare", "prepare_frames.py", ("--fasta", str(CORPUS), "--chunk-size", "300", "--prefix", "{out}/s", "--shard-tokens", "6000"),
              ("s.0001.frames.tsv", "s.0002.frames.tsv", "s.dnabert.0001.fna", "s.dnabert.0002.fna", "s.esm.0001.faa", "s.esm.0002.faa",
               "s.sequences.tsv", "s.shards.tsv")),
        Stage("dnabert", "embed_dnabert.py", ("--fasta", f"{{base}}/s.dnabert.{shard}.fna", "--model", "{base}/models/dnabert/dnabert_s_tiny",
              "--out", f"{{out}}/s.dnabert.{shard}.h5", "--device", "cpu", "--no-progress"), (f"s.dnabert.{shard}.h5",)),
        Stage("esm", "embed_esm.py", ("--fasta", f"{{base}}/s.esm.{shard}.faa", "--model", "{base}/models/esm/esm2_t36_tiny_UR50D.pt",
              "--out", f"{{out}}/s.esm.{shard}.h5", "--device", "cpu", "--no-progress"), (f"s.esm.{shard}.h5",)),
        Stage("classify", "classify_frames.py", ("--frames", f"{{base}}/s.{shard}.frames.tsv", "--shards", "{base}/s.shards.tsv",
              "--dnabert", *embeddings[:2], "--esm", *embeddings[2:], "--classifier", "{base}/models/classifier/classifier_tiny.pth",
              "--out", f"{{out}}/s.{shard}.predictions.tsv", "--device", "cpu"), (f"s.{shard}.predictions.tsv",)),
    ]


def summarize_stage(shards: int, threshold: str) -> Stage:
    predictions = [f"{{base}}/s.{number:04d}.predictions.tsv" for number in range(1, shards + 1)]
    return Stage("summarize", "summarize.py", ("--sample", "s", "--predictions", *predictions, "--sequences", "{base}/s.sequences.tsv",
                 "--fasta", str(CORPUS), "--outdir", "{out}/s", "--chunk-size", "300", "--threshold", threshold),
                 tuple(f"s/{name}" for name in ("prediction_results.txt", "prediction_results_highestscore.csv",
                                                "sequence_calls.tsv", "viral_sequences.fasta", "summary.json")))


REPORT = Stage("report", "make_report.py", ("--calls", "{base}/s/sequence_calls.tsv", "--models", "{base}/models/models.json",
               "--out", "{out}/report.html", "--mqc", "{out}/virnucpro_mqc.tsv"), ("report.html", "virnucpro_mqc.tsv"))


def run(stage: Stage, out: Path, base: Path, kill_at: int = 0, log: Path | None = None) -> subprocess.CompletedProcess:
    injector = [str(INJECTOR), "--kill-at", str(kill_at)] + (["--log", str(log)] if log else [])
    command = [sys.executable, *injector, str(BIN / stage.script), *stage.command(out, base)]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(BIN)})


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> tuple[Path, dict[str, Stage], dict[str, int]]:
    """The chain run once without faults into one folder: its outputs, stages and event counts."""
    base = tmp_path_factory.mktemp("undisturbed")
    staged = subprocess.run([sys.executable, str(BIN / "stage_models.py"), "--tiny", "--chunk-size", "300", "--outdir", str(base / "models")],
                            capture_output=True, text=True)  # fmt: skip
    assert staged.returncode == 0, staged.stderr
    chain = {stage.name: stage for stage in stages()}
    events: dict[str, int] = {}

    def counted(stage: Stage) -> None:
        log = base / f"{stage.name}.events"
        result = run(stage, base, base, log=log)
        assert result.returncode == 0, result.stderr
        events[stage.name] = len(log.read_text().splitlines())

    counted(chain["prepare"])
    kinds = [line.split("\t")[1] for line in (base / "s.shards.tsv").read_text().splitlines()[1:]]
    assert kinds == ["frames"] * 2 + ["dnabert"] * 2 + ["esm"] * 2, "the corpus should fill two shards of each kind at this budget"
    shards = 2
    # the second shards, unmonitored: the classifier reads every embedding shard, summarize every frame shard
    second = {stage.name: stage for stage in stages("0002")}
    for name in ("dnabert", "esm"):
        assert run(second[name], base, base).returncode == 0
        counted(chain[name])
    counted(chain["classify"])
    assert run(second["classify"], base, base).returncode == 0
    chain["summarize"] = summarize_stage(shards, "0.5")
    counted(chain["summarize"])
    chain["report"] = REPORT
    counted(chain["report"])
    return base, chain, events


def unfinished(stage: Stage, out: Path, base: Path) -> list[str]:
    """The final-named outputs under ``out`` that differ from the undisturbed run's."""
    return [
        name for name in stage.outputs
        if (out / name).exists() and not same_output(out / name, base / name)
    ]


def same_output(path: Path, expected: Path) -> bool:
    if path.name == "summary.json":  # its timings differ from run to run
        return without_stages(path) == without_stages(expected)
    return path.read_bytes() == expected.read_bytes()


def without_stages(path: Path) -> dict:
    import json

    return {key: value for key, value in json.loads(path.read_text()).items() if key != "stages"}


@pytest.mark.parametrize("name", ["prepare", "dnabert", "esm", "classify", "summarize", "report"])
def test_a_killed_stage_leaves_no_incomplete_output(undisturbed, tmp_path, name):
    base, chain, events = undisturbed
    stage = chain[name]
    kill_at = random.Random(f"{SEED}-{name}").randint(1, events[name])
    result = run(stage, tmp_path, base, kill_at=kill_at)
    context = f"seed {SEED}: {name} killed at file-system change {kill_at} of {events[name]}"
    assert result.returncode == KILLED, f"{context}: exit {result.returncode}\n{result.stderr}"
    assert unfinished(stage, tmp_path, base) == [], context
    if name == "prepare" and (tmp_path / "s.shards.tsv").exists():  # the set's manifest, renamed last
        assert all((tmp_path / output).exists() for output in stage.outputs), context


def test_a_killed_summarize_keeps_one_complete_set(undisturbed, tmp_path):
    """A rerun with another threshold into a finished results folder, killed: the folder holds
    the earlier set or the new one, never files of both."""
    base, chain, events = undisturbed
    earlier = summarize_stage(2, "0.3")
    assert run(earlier, tmp_path / "earlier", base).returncode == 0
    shutil.copytree(tmp_path / "earlier", tmp_path / "out")
    kill_at = random.Random(f"{SEED}-rerun").randint(1, events["summarize"])
    result = run(chain["summarize"], tmp_path / "out", base, kill_at=kill_at)
    context = f"seed {SEED}: rerun killed at file-system change {kill_at} of {events['summarize']}"
    assert result.returncode == KILLED, context
    present = [name for name in chain["summarize"].outputs if (tmp_path / "out" / name).exists()]
    assert present in ([], list(chain["summarize"].outputs)), context
    if present:
        matches = {
            label: all(same_output(tmp_path / "out" / name, folder / name) for name in present)
            for label, folder in (("earlier", tmp_path / "earlier"), ("new", base))
        }
        assert sum(matches.values()) == 1, f"{context}: a mixed set {matches}"


@pytest.mark.parametrize("name", ["prepare", "dnabert", "esm", "classify", "summarize", "report"])
def test_a_full_disk_fails_cleanly(undisturbed, name):
    base, chain, _ = undisturbed
    stage = chain[name]
    needed = sum((base / output).stat().st_size for output in stage.outputs)
    with small_disk(max(needed, 1 << 16) + (1 << 16)) as disk:
        free = shutil.disk_usage(disk).free
        # leave a random amount of room, from nothing to about what the outputs need
        room = random.Random(f"{SEED}-disk-{name}").randint(0, needed)
        (disk / "filler").write_bytes(b"\0" * max(0, free - room))
        result = run(stage, disk, base)
        context = f"seed {SEED}: {name} with {room} bytes free for {needed} bytes of output"
        if result.returncode == 0:
            assert unfinished(stage, disk, base) == [], context
        else:
            lines = result.stderr.strip().splitlines()
            assert result.returncode == DISK_FULL_EXIT, f"{context}: exit {result.returncode}\n{result.stderr}"
            assert "no space left" in lines[-1] and "Traceback" not in result.stderr, f"{context}\n{result.stderr}"
            left = sorted(path.name for path in disk.rglob("*") if path.name != "filler" and path.is_file())
            assert left == [], f"{context}: left {left}"


@pytest.mark.parametrize("name, blocked", [("classify", "folder"), ("summarize", "under a file"), ("report", "under a file")])
def test_an_unusable_output_path_fails_in_one_line(undisturbed, tmp_path, name, blocked):
    """An output that is a folder, or whose folder is a file: one line naming it, nothing written."""
    base, chain, _ = undisturbed
    stage = chain[name]
    if blocked == "folder":
        (tmp_path / stage.outputs[0]).mkdir(parents=True)
        out, expected = tmp_path, f"{tmp_path / stage.outputs[0]}: is a folder"
    else:
        (tmp_path / "file").write_text("")
        out, expected = tmp_path / "file", f"cannot be written: {tmp_path / 'file'} is a file, not a folder"
    result = run(stage, out, base)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in result.stderr.strip().splitlines()[-1]
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == (["file"] if blocked != "folder" else [])
