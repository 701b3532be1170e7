#!/usr/bin/env python3
"""Run a bin script and kill it with SIGKILL at its N-th file-system change.

    fault_injection.py --kill-at N [--log FILE] -- SCRIPT [ARGS...]

A Python audit hook counts the events by which a script changes files: opening a file for
writing, renaming, removing, making or removing a folder. At event N (before it happens) the
process kills itself, as the kernel's OOM killer or a scheduler would, so no handler or finally
block runs. --kill-at 0 kills nothing; --log writes one line per event, to count them.
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys

WRITING_MODES = frozenset("wax+")
CHANGE_EVENTS = frozenset({"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"})


def changes_files(event: str, args: tuple) -> bool:
    if event in CHANGE_EVENTS:
        return True
    if event != "open" or len(args) < 3:
        return False
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        return bool(WRITING_MODES & set(mode))
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def install(kill_at: int, log_path: str | None) -> None:
    log = open(log_path, "a", buffering=1) if log_path else None  # opened before the hook counts
    count = 0

    def hook(event: str, args: tuple) -> None:
        nonlocal count
        if not changes_files(event, args):
            return
        count += 1
        if log is not None:
            log.write(f"{count}\t{event}\t{args[0]!r}\n")
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--log")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    sys.argv = [options.script, *options.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(options.script)))
    install(options.kill_at, options.log)
    runpy.run_path(options.script, run_name="__main__")


if __name__ == "__main__":
    main()
