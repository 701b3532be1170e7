"""Crash-safe output: every file is written under a temporary name and renamed when complete,
and a set of files (a results folder) is written into a hidden folder put in place whole, so a
killed task never leaves a file or a set that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Iterator

from .errors import InputError


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def make_parent(final: Path) -> None:
    """Create the folder ``final`` goes into, or say in one line why it cannot be."""
    for parent in final.parents:
        if os.path.exists(parent):
            if not os.path.isdir(parent):
                raise InputError(final, f"cannot be written: {parent} is a file, not a folder")
            break
    final.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    final = Path(path)
    if final.is_dir():
        raise InputError(final, "is a folder: an output file cannot take its place")
    make_parent(final)
    temporary = _temporary_name(final)
    try:
        yield temporary
        os.replace(temporary, final)
    except OSError as error:
        if error.filename is None:  # write() and close() do not say which file filled the disk
            error.filename = str(final)
        raise
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file (text mode uses '\\n' line ends)."""
    with atomic_path(path) as temporary:
        newline = None if "b" in mode else "\n"
        encoding = None if "b" in mode else "utf-8"
        with open(temporary, mode, newline=newline, encoding=encoding) as handle:
            yield handle


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8 with '\\n' line ends."""
    with atomic_open(path) as handle:
        handle.write(text)


def json_text(value: object, sort_keys: bool = False) -> str:
    """``value`` as indented JSON and a newline; NaN and Infinity, which are not JSON, raise ValueError."""
    return json.dumps(value, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def replace_folder(new: Path, final: Path) -> None:
    """Put ``new`` in place of ``final``: an existing ``final`` is renamed aside, ``new`` renamed in,
    then the old one deleted, so that the name holds the old set, the new set, or (between the
    renames) nothing."""
    if not os.path.lexists(final):
        os.rename(new, final)
        return
    aside = final.with_name(f".{final.name}.old{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(final, aside)
    os.rename(new, final)
    shutil.rmtree(aside)


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """A hidden sibling folder to write into, put in place of ``final`` when the block succeeds."""
    staging = _temporary_name(final)
    make_parent(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
