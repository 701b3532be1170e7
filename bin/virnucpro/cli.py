"""What every bin script shares: --version, logging to stderr, and clean error exits."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import OutOfMemoryError, VirNucProError, from_os_error

log = logging.getLogger("virnucpro")


def dependency_versions() -> str:
    """One line naming this package and the versions of the libraries that shape results."""
    import numpy

    parts = [f"virnucpro {__version__}", f"python {sys.version.split()[0]}", f"numpy {numpy.__version__}"]
    for name in ("torch", "esm", "tokenizers", "h5py", "Bio"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        label = {"esm": "fair-esm", "Bio": "biopython"}.get(name, name)
        parts.append(f"{label} {getattr(module, '__version__', 'unknown')}")
    return "; ".join(parts)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the versions of this tool and its libraries, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(dependency_versions())
        parser.exit()


def make_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


class Terminated(BaseException):
    """SIGTERM (how Nextflow and batch schedulers stop a task): unwinds so temporary files go."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def run(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run ``main`` and end every failure the user can act on with one line.

    A VirNucProError keeps its exit code; an OSError (a missing or unreadable file, an output path
    that cannot be made, a full disk) and a MemoryError are mapped to one. SIGTERM removes the
    temporary files of unfinished outputs and exits 143, the status of a terminated process.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"[{parser.prog}] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main(args)
    except Terminated:
        print(f"ERROR [{parser.prog}] terminated (SIGTERM); no output was left half written", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (VirNucProError, OSError, MemoryError) as caught:
        error = caught
        if isinstance(caught, OSError):
            error = from_os_error(caught)
        elif isinstance(caught, MemoryError):
            error = OutOfMemoryError("out of memory; the pipeline retries the task with more")
        print(f"ERROR [{parser.prog}] {error}", file=sys.stderr)
        return error.exit_code
    return 0
