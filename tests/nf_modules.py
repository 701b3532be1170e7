"""Read the Nextflow modules' command lines, for the tests that hold them to the bin scripts.

Each module's ``script:`` block is one call of a bin script in a triple-quoted string; the
Groovy interpolations in it (``${...}``) are replaced by values the test gives for each
expression, so a changed module command fails the tests until they are updated with it.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from argparse import ArgumentParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = REPO / "modules" / "local"
_PROCESS = re.compile(r"^process\s+(\w+)\s*\{", re.MULTILINE)
_SECTION = re.compile(r"^\s{4}(\w+):\s*$", re.MULTILINE)
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def module_files() -> list[Path]:
    return sorted(MODULES.glob("*/main.nf"))


def process_name(module: Path) -> str:
    match = _PROCESS.search(module.read_text())
    assert match, f"{module}: no process"
    return match.group(1)


def sections(module: Path) -> dict[str, str]:
    """The process body split at its section labels (input:, output:, script:, stub:)."""
    text = module.read_text()
    marks = list(_SECTION.finditer(text))
    return {
        mark.group(1): text[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else text.rindex("}")]
        for i, mark in enumerate(marks)
    }


def labels(module: Path) -> list[str]:
    return re.findall(r"^\s{4}label\s+'([^']+)'", module.read_text(), re.MULTILINE)


def command_template(module: Path) -> str:
    """The one command line of the script: block (the triple-quoted string, stripped)."""
    script = sections(module)["script"]
    quoted = re.findall(r'"""(.*?)"""', script, re.DOTALL)
    assert len(quoted) == 1, f"{module}: script: must hold one command string"
    lines = [line.strip() for line in quoted[0].strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"{module}: script: must be one command, found {len(lines)} lines"
    return lines[0]


def interpolations(template: str) -> list[str]:
    return _INTERPOLATION.findall(template)


def render(template: str, values: dict[str, str]) -> list[str]:
    """The command as arguments, each ``${expression}`` replaced by ``values[expression]``."""
    missing = [expression for expression in interpolations(template) if expression not in values]
    assert not missing, f"no test value for {missing} in: {template}"
    return shlex.split(_INTERPOLATION.sub(lambda match: values[match.group(1)], template))


def load_parser(script: Path) -> ArgumentParser:
    """The argparse parser of a bin script, from its build_parser()."""
    spec = importlib.util.spec_from_file_location(f"_bin_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def ext_args_options(process: str) -> set[str]:
    """The --options that conf/modules.config puts into ext.args of ``process``."""
    config = (REPO / "conf" / "modules.config").read_text()
    match = re.search(rf"withName:\s*'{process}'\s*\{{(.*?)\n    \}}", config, re.DOTALL)
    if not match:
        return set()
    block = match.group(1)
    start = block.find("ext.args")
    if start < 0:
        return set()
    opening = block.index("{", start)
    depth = 0
    for end in range(opening, len(block)):  # the closure, up to its matching brace
        depth += {"{": 1, "}": -1}.get(block[end], 0)
        if depth == 0:
            break
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", block[opening : end + 1]))
