"""What every bin script shares: --version, --threads, logging to stderr, and clean error exits.

A script hands ``run`` its ``main`` and the function that builds its parser, and imports the
heavy libraries (torch, numpy, h5py, tokenizers) only inside those two: ``run`` answers
--version from the installed packages' metadata and applies --threads before either is called,
so that the thread settings are in place when the libraries load.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import OutOfMemoryError, VirNucProError, from_os_error

log = logging.getLogger("virnucpro")

# the distributions whose versions shape results, as --version names them
DEPENDENCIES = ("numpy", "torch", "fair-esm", "tokenizers", "h5py", "biopython")
_TORCH_VERSION = re.compile(r"^__version__ = '([^']+)'$", re.MULTILINE)
# what OpenMP (torch's intra-op threads), OpenBLAS, MKL and the tokenizers' rayon pool read when they load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")


def dependency_versions() -> str:
    """One line naming this package and the versions of the libraries that shape results, read
    from the installed packages' metadata: none of them is imported."""
    parts = [f"virnucpro {__version__}", f"python {sys.version.split()[0]}"]
    for name in DEPENDENCIES:
        try:
            parts.append(f"{name} {_installed_version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "; ".join(parts)


def _installed_version(name: str) -> str:
    distribution = metadata.distribution(name)
    if name == "torch":  # its build (+cu130, +cpu) is in torch/version.py, not always in the wheel's metadata
        match = _TORCH_VERSION.search(Path(distribution.locate_file("torch/version.py")).read_text(encoding="utf-8"))
        if match:
            return match[1]
    return distribution.version


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, which batch schedulers and containers set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def limit_threads(threads: int, uses_torch: bool) -> None:
    """Tie the BLAS libraries' and the tokenizers' thread pools to ``threads`` by the variables
    they read when they load, and torch's (which caps what OMP_NUM_THREADS asks at the physical
    cores) by setting it; its inter-op pool is never started by these stages."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    if uses_torch:
        import torch

        torch.set_num_threads(threads)


def _add_shared_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="store_true", help="print the versions of this tool and its libraries, then exit")
    parser.add_argument(
        "--threads", type=positive_int,
        help="CPU threads for torch, the BLAS libraries and the tokenizer (the pipeline gives task.cpus); "
        "default: the CPUs this process may use",
    )


def make_parser(description: str) -> argparse.ArgumentParser:
    # no abbreviated options: --threads is read before the rest, and --thr must not mean it there and --threshold here
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    _add_shared_options(parser)
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


class Terminated(BaseException):
    """SIGTERM (how Nextflow and batch schedulers stop a task): unwinds so temporary files go."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def run(
    main: Callable[[argparse.Namespace], None],
    build_parser: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str] | None = None,
    uses_torch: bool = False,
) -> int:
    """Answer --version, apply --threads (to torch as well if the script ``uses_torch``), then
    build the parser, parse the arguments, run ``main`` and end every failure the user can act
    on with one line.

    A VirNucProError keeps its exit code; an OSError (a missing or unreadable file, an output path
    that cannot be made, a full disk) and a MemoryError are mapped to one. SIGTERM removes the
    temporary files of unfinished outputs and exits 143, the status of a terminated process.
    """
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    _add_shared_options(early)
    try:
        shared, _ = early.parse_known_args(argv)
    except argparse.ArgumentError:  # a bad --threads: the script's own parser says so, with its usage
        shared = argparse.Namespace(version=False, threads=None)
    if shared.version:
        print(dependency_versions())
        return 0
    threads = shared.threads or available_cpus()
    limit_threads(threads, uses_torch)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.threads = threads
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
