"""A small disk for tests of a full one: a tmpfs of a given size, mounted for the test's duration.

As root the tmpfs is mounted directly. Otherwise it is mounted in a user and mount namespace of
its own (``unshare --user --map-root-user --mount``), held open by a sleeping process, and reached
from outside through that process's root (/proc/PID/root/...), so the tests and the scripts they
run use it as any folder. Where neither works (no privileges, user namespaces disabled), the
test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

_HOLD_MOUNT = 'mount -t tmpfs -o size="$1" tmpfs "$2" && echo mounted && exec sleep 86400'


@contextlib.contextmanager
def small_disk(size: int) -> Iterator[Path]:
    """A folder on a tmpfs of ``size`` bytes (rounded up to whole pages)."""
    mount_point = Path(tempfile.mkdtemp(prefix="small_disk_"))
    try:
        if os.geteuid() == 0 and _run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)]):
            try:
                yield mount_point
            finally:
                _run(["umount", str(mount_point)])
        else:
            with _namespace_mount(size, mount_point) as folder:
                yield folder
    finally:
        mount_point.rmdir()


@contextlib.contextmanager
def _namespace_mount(size: int, mount_point: Path) -> Iterator[Path]:
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _HOLD_MOUNT, "sh", str(size), str(mount_point)]
    try:
        holder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except FileNotFoundError:
        pytest.skip("no tmpfs can be mounted here: not root, and unshare is not installed")
    try:
        if holder.stdout.readline().strip() != "mounted":
            pytest.skip("no tmpfs can be mounted here: not root, and user namespaces are not available")
        yield Path(f"/proc/{holder.pid}/root") / mount_point.relative_to("/")
    finally:
        holder.kill()
        holder.wait()


def _run(command: list[str]) -> bool:
    return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
