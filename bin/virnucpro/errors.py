"""Errors that end a process with a clear message instead of a traceback."""

from __future__ import annotations


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

    exit_code = 75  # conf/base.config retries tasks that exit with this code
