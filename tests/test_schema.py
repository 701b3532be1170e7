"""nextflow_schema.json is a JSON Schema (draft 2020-12, nf-schema 2.x layout) whose parameters
are exactly nextflow.config's, with the same defaults; assets/schema_input.json describes the
samplesheet as the pipeline reads it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())
JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
# keywords nf-schema 2.x understands in a parameter (JSON Schema plus its own annotations)
PARAMETER_KEYWORDS = {
    "type", "description", "default", "enum", "minimum", "maximum", "pattern", "format", "exists",
    "mimetype", "schema", "help_text", "fa_icon", "hidden", "errorMessage", "if", "then",
}
SAMPLESHEET_SCHEMA = json.loads((REPO / "assets" / "schema_input.json").read_text())
GROUP_KEYWORDS = {"title", "type", "fa_icon", "description", "required", "properties"}


# a default computed when Nextflow reads the config (trace_report_suffix: the launch's time)
COMPUTED = object()


def config_params() -> dict[str, object]:
    """The params block at the top of nextflow.config, as Python values (COMPUTED for an expression)."""
    text = (REPO / "nextflow.config").read_text()
    block = re.search(r"^params \{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL).group(1)
    params = {}
    for line in block.splitlines():
        line = line.split("//")[0].strip()
        if not line:
            continue
        name, _, value = (part.strip() for part in line.partition("="))
        params[name] = COMPUTED if value.startswith("new ") else groovy_literal(value)
    return params


def groovy_literal(text: str) -> object:
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"'[^']*'", text):
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    raise ValueError(f"not a literal: {text}")


def schema_params() -> dict[str, dict]:
    return {name: spec for group in SCHEMA["$defs"].values() for name, spec in group["properties"].items()}


def test_draft_2020_12_layout():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # nf-core's schema lint: the $id and title follow manifest.name
    manifest_name = re.search(r"^\s*name\s*=\s*'([^']+)'", (REPO / "nextflow.config").read_text(), re.MULTILINE).group(1)
    assert SCHEMA["$id"] == f"https://raw.githubusercontent.com/{manifest_name}/main/nextflow_schema.json"
    assert SCHEMA["title"] == f"{manifest_name} pipeline parameters"
    assert SCHEMA["type"] == "object"
    assert "definitions" not in SCHEMA, "nf-schema 2.x expects $defs (draft 2020-12), not definitions"
    assert SCHEMA["allOf"] == [{"$ref": f"#/$defs/{name}"} for name in SCHEMA["$defs"]]


@pytest.mark.parametrize("name", SCHEMA["$defs"])
def test_groups(name):
    group = SCHEMA["$defs"][name]
    assert set(group) <= GROUP_KEYWORDS
    assert group["type"] == "object" and group["title"] and group["description"] and group["properties"]
    assert set(group.get("required", [])) <= set(group["properties"])


@pytest.mark.parametrize("name", sorted(schema_params()))
def test_parameter(name):
    spec = schema_params()[name]
    assert set(spec) <= PARAMETER_KEYWORDS, f"{name}: unknown keywords {set(spec) - PARAMETER_KEYWORDS}"
    assert spec["type"] in JSON_TYPES and spec["description"]
    python_type = JSON_TYPES[spec["type"]]
    values = ([spec["default"]] if "default" in spec else []) + spec.get("enum", [])
    for value in values:
        assert isinstance(value, python_type) and not (spec["type"] in ("integer", "number") and isinstance(value, bool)), f"{name}: {value!r}"
        assert spec.get("minimum", value) <= value <= spec.get("maximum", value), f"{name}: {value!r} out of range"
    if "default" in spec and "enum" in spec:
        assert spec["default"] in spec["enum"]
    if "pattern" in spec:
        re.compile(spec["pattern"])


def test_parameters_match_the_config():
    config = config_params()
    schema = schema_params()
    assert set(schema) == set(config), f"only in schema: {set(schema) - set(config)}, only in config: {set(config) - set(schema)}"
    for name, default in config.items():
        if default is None or default is False or default is COMPUTED:  # unset, a false switch (nf-core's schema lint) or computed: no default in the schema
            assert "default" not in schema[name], name
        else:
            assert schema[name].get("default") == default and type(schema[name]["default"]) is type(default), name


def test_profiles_set_only_known_parameters():
    known = set(config_params())
    for config in sorted((REPO / "conf").glob("*.config")):
        text = config.read_text()
        names = set(re.findall(r"^\s*params\.(\w+)\s*=", text, re.MULTILINE))
        block = re.search(r"^params \{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL)
        if block:
            names |= set(re.findall(r"^\s*(\w+)\s*=", block.group(1), re.MULTILINE))
        assert names <= known, f"{config.name}: unknown parameters {names - known}"


def profile_params(name: str) -> dict[str, object]:
    """The literal values a profile's params block sets (interpolated strings left out)."""
    block = re.search(r"^params \{\n(.*?)^\}", (REPO / "conf" / f"{name}.config").read_text(), re.MULTILINE | re.DOTALL).group(1)
    values = {}
    for line in block.splitlines():
        name, _, value = (part.strip() for part in line.split("//")[0].partition("="))
        if name and '"' not in value:
            values[name] = groovy_literal(value)
    return values


def test_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("profile", ["defaults", "test", "test_full"])
def test_defaults_and_profiles_validate(profile):
    values = {name: value for name, value in config_params().items() if value is not None and value is not COMPUTED}
    if profile != "defaults":
        values |= profile_params(profile)
    values.setdefault("input", "samples.csv")
    assert not [error.message for error in Draft202012Validator(SCHEMA).iter_errors(values)]


REQUIRED = {"input": "samples.csv", "outdir": "results"}


@pytest.mark.parametrize("name, value", [
    ("chunk_size", 400), ("chunk_size", "500"), ("threshold", 1.5), ("precision", "fp16"), ("use_gpu", "false"),
    ("shard_tokens", 0), ("input", "two words.fa"), ("min_length", -1), ("min_length", 1.5),
    # values a shell would run, or read as an option, where they reach the tasks
    ("dnabert_model", "zhihan1996/$(touch x)"), ("esm_model", "esm2_t36_3B_UR50D`touch x`"), ("classifier", "a'; touch x; '"),
    ("classifier", "--help"), ("model_cache", '/data/"$HOME"'), ("model_cache", "/data/models\nx"), ("trace_report_suffix", "../x"),
])
def test_wrong_values_are_refused(name, value):
    assert not list(Draft202012Validator(SCHEMA).iter_errors(REQUIRED))
    errors = list(Draft202012Validator(SCHEMA).iter_errors(REQUIRED | {name: value}))
    assert errors and {error.path[-1] for error in errors} == {name}, f"{name}={value!r}: {errors}"


@pytest.mark.parametrize("name, value", [
    ("dnabert_model", "/data/my models/DNABERT-S"), ("esm_model", "/data/esm2_t36_3B_UR50D.pt"),
    ("classifier", "https://example.org/500_model.pth"), ("model_cache", "s3://bucket/virnucpro models"),
])
def test_paths_with_spaces_and_urls_pass(name, value):
    assert not list(Draft202012Validator(SCHEMA).iter_errors(REQUIRED | {name: value}))


def test_every_string_that_reaches_a_task_has_a_pattern():
    # model names and paths go into the tasks' command lines, --model_cache into their environment
    params = schema_params()
    assert all("pattern" in params[name] and "errorMessage" in params[name] for name in ("dnabert_model", "esm_model", "classifier", "model_cache"))


def test_input_takes_a_file_or_a_glob():
    # nf-schema resolves a glob to a list of files, which its 'file-path' format refuses
    assert schema_params()["input"]["format"] == "file-path-pattern"


def test_a_samplesheet_input_is_checked_against_the_samplesheet_schema():
    """nf-schema reads the file a `schema` names as CSV (a FASTA too, which then fails), so it applies
    to .csv inputs only; the mimetype offers samplesheets in Seqera Platform's launch form."""
    spec = schema_params()["input"]
    assert spec["mimetype"] == "text/csv" and spec["then"] == {"schema": "assets/schema_input.json"}
    assert (REPO / spec["then"]["schema"]).is_file()
    matches_if = Draft202012Validator(spec["if"]).is_valid
    assert matches_if("samples.csv") and matches_if("s3://bucket/runs/samples.csv")
    assert not any(map(matches_if, ["reads.fa", "reads.fasta.gz", "data/*.fa", "samples.csv.fa"]))


# ---------------------------------------------------------------- the samplesheet

def samplesheet_errors(rows: list[dict]) -> list[str]:
    return [error.message for error in Draft202012Validator(SAMPLESHEET_SCHEMA).iter_errors(rows)]


def read_samplesheet(path: Path) -> list[dict]:
    """The rows as nf-schema gives them to the schema: header-keyed, values stripped."""
    with open(path, newline="") as handle:
        return [{key: value.strip() for key, value in row.items()} for row in csv.DictReader(handle)]


def test_samplesheet_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(SAMPLESHEET_SCHEMA)
    assert SAMPLESHEET_SCHEMA["$id"].endswith("/main/assets/schema_input.json") and SAMPLESHEET_SCHEMA["type"] == "array"


def test_the_bundled_samplesheet_is_valid():
    assert not samplesheet_errors(read_samplesheet(REPO / "assets" / "samplesheet_test.csv"))


# the pipeline's rule for sample names (they name the output folders): letters, digits, '.', '_' and
# '-', starting with a letter or digit
@pytest.mark.parametrize("sample, valid", [
    ("gut_01", True), ("S1.rep-2", True), ("9lives", True), ("a", True),
    ("_hidden", False), ("-x", False), (".x", False), ("two words", False), ("a/b", False), ("ß", False), ("", False),
])  # fmt: skip
def test_sample_names(sample, valid):
    assert (not samplesheet_errors([{"sample": sample, "fasta": "reads.fa"}])) is valid


@pytest.mark.parametrize("fasta, valid", [
    ("reads.fa", True), ("reads.fasta.gz", True), ("/data/x.fna", True), ("s3://bucket/x.fas", True), ("x.fsa.gz", True),
    ("reads.fastq", False), ("reads.fa.bz2", False), ("my reads.fa", False), ("reads", False), ("", False),
])  # fmt: skip
def test_fasta_paths(fasta, valid):
    assert (not samplesheet_errors([{"sample": "s", "fasta": fasta}])) is valid


@pytest.mark.parametrize("rows", [
    [{"sample": "s"}],  # no FASTA
    [{"fasta": "x.fa"}],  # no sample
    {"sample": "s", "fasta": "x.fa"},  # not a list of rows
])  # fmt: skip
def test_rows_need_both_columns(rows):
    assert samplesheet_errors(rows)


def test_sample_names_are_unique():
    """nf-schema's uniqueEntries (which jsonschema does not know) names the sample column."""
    assert SAMPLESHEET_SCHEMA["uniqueEntries"] == ["sample"]
    assert set(SAMPLESHEET_SCHEMA["uniqueEntries"]) <= set(SAMPLESHEET_SCHEMA["items"]["required"])
