"""Crash-safe output: every file is written under a temporary name and renamed when complete,
so a killed task never leaves a file that looks finished."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(final)
    try:
        yield temporary
        os.replace(temporary, final)
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
