"""Errors that end a process with a clear message instead of a traceback, and their exit codes.

The exit codes are what conf/base.config reads: 75 (a sequence too large for the GPU) and 137
(out of memory) are retried with more room; 1 (bad input), 74 (disk full) and 2 (bad options)
are not, because a retry would fail the same way.
"""

from __future__ import annotations

import errno


class VirNucProError(Exception):
    """A problem with the input or the environment that the user can fix."""

    exit_code = 1


class InputError(VirNucProError):
    """Bad input data: names the file, the record (when there is one) and what is wrong."""

    def __init__(self, path: str, reason: str, record: str | None = None) -> None:
        self.path = str(path)
        self.record = record
        self.reason = reason
        where = f"{self.path}, record '{record}'" if record is not None else self.path
        super().__init__(f"{where}: {reason}")


class GpuOutOfMemoryError(VirNucProError):
    """A single sequence does not fit on the GPU even alone; the pipeline retries with more room."""

    exit_code = 75


class DiskFullError(VirNucProError):
    """No space (or quota) left where an output is written: not retried, the disk must be freed."""

    exit_code = 74  # EX_IOERR of sysexits.h


class OutOfMemoryError(VirNucProError):
    """The host ran out of memory: the exit status of a task the kernel killed for memory, so
    that the pipeline retries it with more."""

    exit_code = 137


def first_line(error: BaseException) -> str:
    """The first line of an error's message, for a one-line report of it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def from_os_error(error: OSError) -> VirNucProError:
    """The one-line form of an OSError: the file it concerns and the system's reason."""
    path = error.filename if error.filename is not None else "output"
    if error.errno in DISK_FULL_ERRNOS:
        return DiskFullError(f"{path}: no space left on the device (disk or quota full); free space and resume the run")
    if error.filename2 is not None:  # a rename: its destination is the output the user named
        path = error.filename2
    reason = error.strerror or str(error)
    return InputError(path, reason[:1].lower() + reason[1:])
