"""The pipeline's own Groovy code for --input and --outdir, run by the real Nextflow
(tests/pipeline/functions.nf, one launch per parser for all cases): samplesheets read as CSV with
one error per problem naming the file and row, the start-up refusals of --outdir, and publishing
that never replaces what the pipeline did not write and replaces a result set only by a whole new
one (on a local file system by renames, on an object store with summary.json removed first and
written last), also when the disk fills or the head node died between the renames."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from nextflow_cli import PARSERS, call_functions
from small_disk import small_disk

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="java (17 or later) is not installed: Nextflow needs it")

RESULT_FILES = ["prediction_results.txt", "prediction_results_highestscore.csv", "sequence_calls.tsv", "viral_sequences.fasta"]
FASTA = ">r1\nACGTACGTACGT\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def result_set(folder: Path, sample: str, payload: str) -> Path:
    """A result set as summarize.py writes it: four files and summary.json with their SHA-256."""
    for name in RESULT_FILES:
        write(folder / name, f"{payload} {name}\n")
    files = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in RESULT_FILES}
    write(folder / "summary.json", json.dumps({"sample": sample, "threshold": 0.5, "files": files}))
    return folder


def complete_set(folder: Path) -> bool:
    """Whether ``folder`` is a complete result set: summary.json there, every file with the SHA-256 it lists."""
    summary = folder / "summary.json"
    if not summary.is_file():
        return False
    files = json.loads(summary.read_text())["files"]
    present = sorted(path.name for path in folder.iterdir() if path.name != "summary.json")
    return present == sorted(files) and all(hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest for name, digest in files.items())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def hidden_siblings(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.parent.iterdir() if path.name.startswith(f".{folder.name}.virnucpro-"))


# ---------------------------------------------------------------- the cases
# each case writes its files under its own folder and returns its calls; its test reads the
# results and the file system after the one launch
CASES: dict[str, Callable[[Path], list[list]]] = {}


def case(function: Callable[[Path], list[list]]) -> Callable[[Path], list[list]]:
    CASES[function.__name__] = function
    return function


def sheet_case(name: str, text: str | bytes, fastas: tuple[str, ...] = ("a.fa",)) -> None:
    def setup(root: Path) -> list[list]:
        for fasta in fastas:
            write(root / fasta, FASTA)
        return [["inputSamples", str(write(root / "samples.csv", text))]]
    setup.__name__ = name
    case(setup)


# as R's write.csv(row.names = FALSE) and pandas' to_csv(quoting=QUOTE_ALL) write it, with a
# path that holds a comma and a space, CRLF line ends
sheet_case("quoted", '"sample","fasta"\r\n"s1","a.fa"\r\n"s2","sub dir/b, c.fa"\r\n', ("a.fa", "sub dir/b, c.fa"))
# R's write.csv with its default row names: an unnamed first column
sheet_case("r_row_names", '"","sample","fasta"\n"1","s1","a.fa"\n')
# Excel's "CSV UTF-8": a byte-order mark, columns in another order, empty trailing fields
sheet_case("excel", "\ufefffasta,sample,,\r\na.fa,s1,,\r\n".encode("utf-8"))
sheet_case("empty", "")
sheet_case("blank_lines", "\n \n")
sheet_case("header_only", "sample,fasta\n")
sheet_case("missing_column", "sample,path\ns1,a.fa\n")
sheet_case("unclosed_quote", 'sample,fasta\n"s1,a.fa\n')
sheet_case("extra_field", "sample,fasta\ns1,a.fa,notes\n")
sheet_case("missing_fasta", "sample,fasta\n\ns1,missing.fa\n")
sheet_case("url_fasta", "sample,fasta\ns1,http://127.0.0.1:9/data/missing.fa\n")
sheet_case("duplicate", "sample,fasta\nS1,a.fa\ns1,a.fa\n")
sheet_case("bad_name", "sample,fasta\ns 1,a.fa\n")
sheet_case("reserved_name", "sample,fasta\npipeline_info,a.fa\n")
sheet_case("quote_in_file_name", "sample,fasta\ns1,it's.fa\n", ("it's.fa",))
sheet_case("dollar_in_file_name", "sample,fasta\ns1,$(touch x).fa\n", ("$(touch x).fa",))
sheet_case("semicolons", "sample;fasta\ns1;a.fa\n")
sheet_case("empty_sample", "sample,fasta\n,a.fa\n")


@case
def fasta_folder(root: Path) -> list[list]:
    (root / "a.fa").mkdir(parents=True)
    return [["inputSamples", str(write(root / "samples.csv", "sample,fasta\ns1,a.fa\n"))]]


@case
def glob_without_match(root: Path) -> list[list]:
    root.mkdir(parents=True)
    return [["inputSamples", f"{root}/*.fa"]]


@case
def missing_samplesheet(root: Path) -> list[list]:
    return [["inputSamples", f"{root}/missing.csv"]]


def outdir_case(name: str, user_files: dict[str, str], fasta: str = "in/s1.fa", sheet: str = "samples.csv") -> None:
    """checkOutdir of --outdir ROOT/out, which holds ``user_files``, for sample s1 in ROOT/``fasta``
    listed in the samplesheet ROOT/``sheet``."""
    def setup(root: Path) -> list[list]:
        (root / "out").mkdir(parents=True)
        for path, text in user_files.items():
            write(root / path, text)
        return [["checkOutdir", str(root / "out"), one_sample_sheet(root / sheet, root / fasta)]]
    setup.__name__ = name
    case(setup)


def one_sample_sheet(sheet: Path, fasta: Path) -> str:
    write(fasta, FASTA)
    return str(write(sheet, f"sample,fasta\ns1,{fasta}\n"))


# the layout: proj/s1/s1.fa with --outdir proj
outdir_case("user_files_in_a_sample_folder", {"out/s1/notes.txt": "mine"}, fasta="out/s1/s1.fa")
outdir_case("foreign_summary_json", {"out/s1/summary.json": '{"project": "mine"}'})
outdir_case("input_fasta_inside_outdir", {}, fasta="out/data/s1.fa")
outdir_case("samplesheet_inside_outdir", {}, sheet="out/samples.csv")
outdir_case("foreign_report", {"out/report.html": "<html>my report</html>"})
outdir_case("foreign_models_json", {"out/pipeline_info/models.json": "{}"})
outdir_case("foreign_versions", {"out/pipeline_info/virnucpro_software_mqc_versions.yml": "BWA_MEM:\n  bwa: 0.7\n"})


@case
def previous_results(root: Path) -> list[list]:
    out = root / "out"
    result_set(out / "s1", "s1", "old")
    write(out / "report.html", "<!DOCTYPE html>\n<html><head><title>VirNucPro report</title></head></html>")
    write(out / "virnucpro_mqc.tsv", '# id: "virnucpro"\n# section_name: "VirNucPro"\n')
    write(out / "pipeline_info" / "models.json", json.dumps({"dnabert": {"name": "d", "path": "p", "sha256": "0" * 64, "files": {}}}))
    write(out / "pipeline_info" / "virnucpro_software_mqc_versions.yml", "MAKE_REPORT:\n  virnucpro: \"0.1.0\"\nWorkflow:\n  Nextflow: \"25.04.4\"\n")
    write(out / "pipeline_info" / "execution_trace_2025-01-01_00-00-00.txt", "task_id\n")
    write(out / "notes.txt", "other things beside the results are left alone")
    return [["checkOutdir", str(out), one_sample_sheet(root / "samples.csv", root / "in" / "s1.fa")]]


@case
def aside_set_put_back_at_start(root: Path) -> list[list]:
    # the head node died between its two renames: the old set aside, the new one not yet in
    out = root / "out"
    result_set(out / ".s1.virnucpro-old-1234abcd", "s1", "old")
    result_set(out / ".s1.virnucpro-new-1234abcd", "s1", "new")
    return [["checkOutdir", str(out), one_sample_sheet(root / "samples.csv", root / "in" / "s1.fa")]]


@case
def leftovers_not_ours_are_kept(root: Path) -> list[list]:
    out = root / "out"
    result_set(out / "s1", "s1", "old")
    write(out / ".s1.virnucpro-new-5678abcd" / "mine.txt", "a folder of the user's, whatever its name")
    return [["recoverResultSet", str(out / "s1")]]


@case
def replace_a_result_set(root: Path) -> list[list]:
    result_set(root / "out" / "s1", "s1", "old")
    return [["publishResultSet", str(result_set(root / "work" / "s1", "s1", "new")), str(root / "out" / "s1")]]


@case
def publish_a_new_result_set(root: Path) -> list[list]:
    return [["publishResultSet", str(result_set(root / "work" / "s1", "s1", "new")), str(root / "out" / "s1")]]


@case
def refuse_a_folder_with_user_files(root: Path) -> list[list]:
    result_set(root / "out" / "s1", "s1", "old")
    write(root / "out" / "s1" / "s1.fa", FASTA)
    return [["publishResultSet", str(result_set(root / "work" / "s1", "s1", "new")), str(root / "out" / "s1")]]


@case
def object_store_copy_fails(root: Path) -> list[list]:
    result_set(root / "out" / "s1", "s1", "old")
    source = result_set(root / "work" / "s1", "s1", "new")
    (source / "sequence_calls.tsv").unlink()
    (source / "sequence_calls.tsv").symlink_to(root / "gone")  # the copy fails half way
    return [["copySummaryLast", str(source), str(root / "out" / "s1")]]


@case
def object_store_copy(root: Path) -> list[list]:
    result_set(root / "out" / "s1", "s1", "old")
    write(root / "out" / "s1" / "viral_sequences.fasta", "a file the new set lacks")
    source = result_set(root / "work" / "s1", "s1", "new")
    (source / "viral_sequences.fasta").unlink()
    summary = json.loads((source / "summary.json").read_text())
    del summary["files"]["viral_sequences.fasta"]
    write(source / "summary.json", json.dumps(summary))
    return [["copySummaryLast", str(source), str(root / "out" / "s1")]]


def params_case(name: str, given: dict) -> None:
    def setup(root: Path) -> list[list]:
        return [["typedParams", given]]
    setup.__name__ = name
    case(setup)


# as the strict parser passes command-line values: strings
params_case("typed_from_strings", {"chunk_size": "300", "threshold": "0.25", "use_gpu": "false", "tiny_models": "TRUE", "esm_model": "/data/my models/esm2_t36_3B_UR50D.pt"})
PARAMETER_ERRORS = {
    "chunk_size_not_a_number": ({"chunk_size": "abc"}, "--chunk_size must be an integer, not 'abc'"),
    "chunk_size_400": ({"chunk_size": 400}, "--chunk_size 400: must be 300 or 500: the published classifiers were trained on these chunk lengths"),
    "threshold_above_1": ({"threshold": "1.5"}, "--threshold 1.5: must be at most 1"),
    "shard_tokens_0": ({"shard_tokens": 0}, "--shard_tokens 0: must be at least 1"),
    "precision_fp16": ({"precision": "fp16"}, "--precision 'fp16': must be one of auto, fp32, bf16"),
    "dnabert_command_substitution": ({"dnabert_model": "x/$(touch y)"}, "--dnabert_model 'x/$(touch y)': must be a name, URL or path without quotes"),
    "esm_backquotes": ({"esm_model": "esm2_t36_3B_UR50D`touch y`"}, "--esm_model 'esm2_t36_3B_UR50D`touch y`': must be a name"),
    "classifier_quote": ({"classifier": "a'; touch y; '"}, "--classifier 'a'; touch y; '': must be a name"),
    "classifier_option": ({"classifier": "--help"}, "--classifier '--help': must be a name"),
    "model_cache_dollar": ({"model_cache": "/data/$HOME"}, "--model_cache '/data/$HOME': must be a folder path or URL without quotes"),
    "suffix_path": ({"trace_report_suffix": "../x"}, "--trace_report_suffix '../x': may hold only letters"),
}
for _name, (_given, _) in PARAMETER_ERRORS.items():
    params_case(_name, _given)

DISK = 256 * 1024


@pytest.fixture(scope="module", params=sorted(PARSERS))
def launch(request, tmp_path_factory, nxf_home) -> tuple[Path, dict[str, dict]]:
    """Every case's files, one launch of tests/pipeline/functions.nf, the results by case."""
    parser = request.param
    root = tmp_path_factory.mktemp(f"functions_{parser}")
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(small_disk(DISK))
        calls, owners = [], []
        for name, setup in CASES.items():
            for call in setup(root / name):
                calls.append(call)
                owners.append(name)
        # disk full: an old set on a small disk, the rest of it filled, a new set that does not fit
        result_set(disk / "out" / "s1", "s1", "old")
        source = result_set(root / "disk_full" / "work" / "s1", "s1", "new")
        write(source / "prediction_results.txt", os.urandom(DISK))
        with contextlib.suppress(OSError):
            write(disk / "filler", os.urandom(DISK))
        calls.append(["publishResultSet", str(source), str(disk / "out" / "s1")])
        owners.append("disk_full")
        results = call_functions(nxf_home, parser, root, calls)
        by_case = {owner: result for owner, result in zip(owners, results)}
        by_case["disk_full"]["state"] = {
            "snapshot": snapshot(disk / "out" / "s1"), "complete": complete_set(disk / "out" / "s1"),
            "hidden": hidden_siblings(disk / "out" / "s1"),
        }
        yield root, by_case


def error_of(launch, name: str) -> str:
    _, results = launch
    assert "error" in results[name], f"{name}: no error, returned {results[name].get('result')}"
    message = results[name]["error"]
    assert "\n" not in message.strip(), message
    return message


def result_of(launch, name: str):
    _, results = launch
    assert "error" not in results[name], results[name]["error"]
    return results[name]["result"]


def test_a_fully_quoted_samplesheet_is_read(launch):
    root, _ = launch
    assert result_of(launch, "quoted") == [
        {"id": "s1", "fasta": str(root / "quoted" / "a.fa")}, {"id": "s2", "fasta": str(root / "quoted" / "sub dir" / "b, c.fa")},
    ]


def test_r_row_names_and_excel_layouts_are_read(launch):
    root, _ = launch
    assert result_of(launch, "r_row_names") == [{"id": "s1", "fasta": str(root / "r_row_names" / "a.fa")}]
    assert result_of(launch, "excel") == [{"id": "s1", "fasta": str(root / "excel" / "a.fa")}]


@pytest.mark.parametrize("name, row, needle", [
    ("empty", None, "empty samplesheet"),
    ("blank_lines", None, "empty samplesheet"),
    ("header_only", None, "no samples"),
    ("missing_column", 1, "the header must name the columns sample and fasta once each (it has: sample, path)"),
    ("unclosed_quote", 2, "not valid CSV"),
    ("extra_field", 2, "3 fields, but the header has 2"),
    ("missing_fasta", 3, "FASTA file {root}/missing.fa does not exist"),
    ("url_fasta", 2, "FASTA file http://127.0.0.1:9/data/missing.fa does not exist"),
    ("duplicate", 3, "sample name 's1' is taken ({sheet}: row 2)"),
    ("bad_name", 2, "sample name 's 1' may hold only letters"),
    ("reserved_name", 2, "sample name 'pipeline_info' would clash with the run's own outputs"),
    ("quote_in_file_name", 2, "the FASTA file name it's.fa holds a quote"),
    ("dollar_in_file_name", 2, "the FASTA file name $(touch x).fa holds a quote, '$'"),
    ("semicolons", 1, "the header must name the columns sample and fasta once each (it has: sample;fasta)"),
    ("empty_sample", 2, "the sample column is empty"),
    ("fasta_folder", 2, "{root}/a.fa is a folder, not a FASTA file"),
])
def test_each_samplesheet_problem_is_one_error_naming_the_file_and_row(launch, name, row, needle):
    root, _ = launch
    sheet = root / name / "samples.csv"
    message = error_of(launch, name)
    where = f"{sheet}: row {row}: " if row else f"{sheet}: "
    assert message.startswith(where), message
    assert needle.format(root=root / name, sheet=sheet) in message, message


def test_a_glob_without_match_and_a_missing_samplesheet(launch):
    root, _ = launch
    assert error_of(launch, "glob_without_match") == f"--input {root}/glob_without_match/*.fa: no file matches it"
    assert error_of(launch, "missing_samplesheet") == f"--input {root}/missing_samplesheet/missing.csv: no such file"


@pytest.mark.parametrize("name, needle", [
    ("user_files_in_a_sample_folder", "{out}/s1 holds 'notes.txt', which this pipeline did not write"),
    ("foreign_summary_json", "{out}/s1 holds a summary.json that is not sample s1's from this pipeline"),
    ("input_fasta_inside_outdir", "{out}/data/s1.fa lies inside --outdir {out}"),
    ("samplesheet_inside_outdir", "--input: {out}/samples.csv lies inside --outdir {out}"),
    ("foreign_report", "{out}/report.html was not written by this pipeline"),
    ("foreign_models_json", "{out}/pipeline_info/models.json was not written by this pipeline"),
    ("foreign_versions", "{out}/pipeline_info/virnucpro_software_mqc_versions.yml was not written by this pipeline"),
])
def test_outdir_content_the_run_did_not_write_is_refused_at_start(launch, name, needle):
    root, _ = launch
    out = root / name / "out"
    before = snapshot(root / name)
    assert needle.format(out=out) in error_of(launch, name)
    assert snapshot(root / name) == before


def test_an_outdir_of_previous_results_is_accepted(launch):
    assert result_of(launch, "previous_results") == "ok"


def test_a_set_left_aside_by_a_dead_run_is_put_back_at_start(launch):
    root, _ = launch
    out = root / "aside_set_put_back_at_start" / "out"
    assert result_of(launch, "aside_set_put_back_at_start") == "ok"
    assert complete_set(out / "s1") and "old" in (out / "s1" / "sequence_calls.tsv").read_text()
    assert hidden_siblings(out / "s1") == []


def test_hidden_folders_that_are_not_ours_are_left_alone(launch):
    root, _ = launch
    out = root / "leftovers_not_ours_are_kept" / "out"
    assert result_of(launch, "leftovers_not_ours_are_kept") == "ok"
    assert hidden_siblings(out / "s1") == [".s1.virnucpro-new-5678abcd"] and complete_set(out / "s1")


@pytest.mark.parametrize("name", ["replace_a_result_set", "publish_a_new_result_set"])
def test_a_result_set_is_published_whole(launch, name):
    root, _ = launch
    out = root / name / "out" / "s1"
    assert result_of(launch, name) == str(out)
    assert snapshot(out) == snapshot(root / name / "work" / "s1") and complete_set(out)
    assert hidden_siblings(out) == []


def test_a_folder_with_user_files_is_not_published_into(launch):
    root, _ = launch
    out = root / "refuse_a_folder_with_user_files" / "out" / "s1"
    assert f"{out} holds 's1.fa', which this pipeline did not write" in error_of(launch, "refuse_a_folder_with_user_files")
    assert (out / "s1.fa").read_text() == FASTA and "old" in (out / "sequence_calls.tsv").read_text()


def test_on_an_object_store_a_failed_copy_leaves_no_summary_json(launch):
    # without renames the set cannot be swapped: summary.json, which makes a set complete, goes
    # first and comes back last, so a half-copied set never passes for a complete one
    root, _ = launch
    out = root / "object_store_copy_fails" / "out" / "s1"
    error_of(launch, "object_store_copy_fails")
    assert not (out / "summary.json").exists() and not complete_set(out)


def test_on_an_object_store_summary_json_is_written_last(launch):
    root, _ = launch
    out = root / "object_store_copy" / "out" / "s1"
    assert result_of(launch, "object_store_copy") == "ok"
    assert complete_set(out) and snapshot(out) == snapshot(root / "object_store_copy" / "work" / "s1")


def test_a_full_disk_keeps_the_previous_result_set(launch):
    root, results = launch
    message = error_of(launch, "disk_full")
    assert message.startswith("publishing the results of sample s1 to ") and "No space left on device" in message
    assert "the folder holds its previous results" in message
    state = results["disk_full"]["state"]
    assert state["complete"] and state["hidden"] == []
    assert all(b"old" in content for name, content in state["snapshot"].items() if name != "summary.json")


def test_parameters_are_typed_as_the_schema_says(launch):
    assert result_of(launch, "typed_from_strings") == {
        "chunk_size": 300, "threshold": 0.25, "use_gpu": False, "tiny_models": True, "esm_model": "/data/my models/esm2_t36_3B_UR50D.pt",
    }


@pytest.mark.parametrize("name", PARAMETER_ERRORS)
def test_parameters_are_checked_against_the_schema(launch, name):
    # the plugin-free entry refuses what nf-schema refuses (the same patterns, enums and ranges),
    # before any task: nothing a shell would run reaches a command line
    assert error_of(launch, name).startswith(PARAMETER_ERRORS[name][1])
