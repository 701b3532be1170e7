"""Every module calls an existing bin script with options that script accepts."""

from __future__ import annotations

import os
import re

import pytest

from nf_modules import (
    REPO, command_template, ext_args_options, interpolations, labels, load_parser, module_files, process_name, sections,
)

MODULES = module_files()
MODULES_BY_NAME = {module.parent.name: module for module in MODULES}
EXPECTED = {"STAGE_MODELS", "PREPARE_FRAMES", "EMBED_DNABERT", "EMBED_ESM", "CLASSIFY_FRAMES", "SUMMARIZE", "MAKE_REPORT"}


def test_every_process_has_its_module():
    assert {process_name(module) for module in MODULES} == EXPECTED
    for module in MODULES:
        assert process_name(module).lower() == module.parent.name


def script_of(module) -> str:
    return command_template(module).split()[0]


def options_used(module) -> set[str]:
    """The --options written in the module's command, including those inside ${...} ternaries."""
    template = command_template(module)
    text = template + "".join(re.findall(r"^\s*def .*$", sections(module)["script"], re.MULTILINE))
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.parent.name)
def test_script_exists_and_is_executable(module):
    script = REPO / "bin" / script_of(module)
    assert script.is_file(), f"{module}: calls {script.name}, which is not in bin/"
    assert os.access(script, os.X_OK), f"bin/{script.name} is not executable (Nextflow puts bin/ on the PATH)"
    assert script.read_text().startswith("#!/usr/bin/env python3")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.parent.name)
def test_options_are_accepted_by_the_script(module):
    parser = load_parser(REPO / "bin" / script_of(module))
    accepted = set(parser._option_string_actions)
    used = options_used(module) | ext_args_options(process_name(module))
    assert used <= accepted, f"{module.parent.name}: {sorted(used - accepted)} not accepted by {script_of(module)}"
    required = {action.option_strings[0] for action in parser._actions if action.required}
    assert required <= options_used(module), f"{module.parent.name}: required options {sorted(required - options_used(module))} missing"


@pytest.mark.parametrize("module", [m for m in MODULES if m.parent.name != "stage_models"], ids=lambda m: m.parent.name)
def test_versions_come_from_the_same_script(module):
    output = sections(module)["output"]
    assert f"eval('{script_of(module)} --version'), topic: versions" in output


def test_stage_models_has_only_file_outputs():
    # it gets a storeDir with --model_cache, which allows no eval, env or stdout output; its
    # version comes from the versions.txt that stage_models.py writes into the staged folder
    output = sections(MODULES_BY_NAME["stage_models"])["output"]
    assert "eval(" not in output and "env(" not in output and "stdout" not in output


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.parent.name)
def test_nf_core_shape(module):
    parts = sections(module)
    assert "stub" in parts, f"{module.parent.name}: no stub: block"
    assert "def args = task.ext.args ?: ''" in parts["script"]
    assert "args" in interpolations(command_template(module))
    assert labels(module), f"{module.parent.name}: no resource label"


def test_gpu_processes():
    gpu = [module for module in MODULES if "process_gpu" in labels(module)]
    assert {process_name(module) for module in gpu} == {"EMBED_DNABERT", "EMBED_ESM"}
    for module in gpu:
        assert "stub" in sections(module)
        assert "def device = task.accelerator ? (task.ext.device ?: 'cuda') : 'cpu'" in sections(module)["script"]
        assert "--device ${device}" in command_template(module)
