"""Model files read safely: torch.save checkpoints and safetensors, for the embedders and the
classifier alike.

A torch.save file is read by torch's weights-only unpickler: tensors, plain containers and the
classes the caller allows, nothing else is built and no code runs. A class the caller wants to
see without building it (the classifier's pickled modules) is loaded as an inert stand-in that
records its state. A file cut short or damaged is named as such, before torch reads it where
the format allows (the end of a zip archive is its central directory, so a truncated one has none).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Collection, Iterator

import torch

from .errors import InputError, first_line

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6: a zip archive
PICKLE_PROTO = 0x80  # the legacy format starts with a pickle, of torch's magic number
WEIGHTS_ONLY_PROTOCOLS = 3  # torch's weights-only unpickler reads pickle protocols up to this
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")  # torch: "GLOBAL x was not an allowed global", "... whose module sys is blocked"
_APPLIED_TO = re.compile(r"but got (?:<class '([^']+)'>|(\S+))")


class PickledObject:
    """Inert stand-in for a pickled object of a class that must not be built: keeps the state
    the pickle gives it, runs no code. ``pickled_class`` is the dotted name in the pickle."""

    pickled_class = ""

    def __setstate__(self, state: object) -> None:
        self.state = state


def _global_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


# --- torch.save files ------------------------------------------------------------------------


def read_torch_file(
    path: Path, allowed: Collection[type] = (), stand_in: Callable[[str], bool] | None = None, holder: str | None = None
) -> object:
    """The object in a torch.save file, read by torch's weights-only unpickler: tensors, plain
    containers and the ``allowed`` classes; every other class whose dotted name ``stand_in``
    accepts becomes a PickledObject. Tensors are memory-mapped from zip archives (torch's legacy
    format is read whole). ``holder`` names what the file should be, for refusals (default: a
    weights file holding the allowed types). Anything else the pickle references is refused,
    naming it, before torch reads the file."""
    zipped, protocol = _torch_file_format(path)
    pickled = _main_pickle(path) if zipped else b""
    if zipped:
        protocol = _pickle_protocol(pickled)
    allowed_names = {_global_name(kind) for kind in allowed}
    unsafe = _unsafe_globals(path, pickled, protocol, allowed_names) if zipped else []
    stand_ins = [name for name in unsafe if stand_in is not None and stand_in(name)]
    refused = [name for name in unsafe if name not in allowed_names and name not in stand_ins]
    holder = holder or "a weights file (tensors, plain containers" + "".join(f", {name}" for name in sorted(allowed_names)) + ")"
    if refused:
        raise InputError(path, _refusal(refused, holder))
    if protocol is not None and protocol > WEIGHTS_ONLY_PROTOCOLS:
        raise InputError(path, f"pickle protocol {protocol}, which torch's weights-only loader cannot read; save the checkpoint with torch.save's default protocol")
    inert = [(type("PickledObject", (PickledObject,), {"pickled_class": name}), name) for name in stand_ins]
    try:
        with torch.serialization.safe_globals([*allowed, *inert]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # refused above
            return torch.load(path, map_location="cpu", mmap=zipped, weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as error:
        raise InputError(path, _unpickling_refusal(error, holder)) from None
    except Exception as error:  # a damaged file can fail anywhere in torch's reader, with any type
        state = "not a readable PyTorch checkpoint" if zipped else "truncated or damaged PyTorch checkpoint in torch's legacy format"
        raise InputError(path, f"{state} ({type(error).__name__}: {first_line(error)})") from None


def _torch_file_format(path: Path) -> tuple[bool, int | None]:
    """(whether ``path`` is a zip archive, the pickle protocol of a legacy file), the archive's
    end checked: a file cut short or of another kind is refused here. OS errors name the file."""
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if not head:
        raise InputError(path, "truncated PyTorch checkpoint: the file is empty")
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path):
                pass
        except zipfile.BadZipFile:
            raise InputError(
                path, "truncated or damaged PyTorch checkpoint: a zip archive (torch.save's format) whose end, the central "
                f"directory, is missing or broken ({os.path.getsize(path):,} bytes); copy or fetch it again",
            ) from None
        return True, None
    if head[0] == PICKLE_PROTO:
        return False, head[1] if len(head) > 1 else None
    if ZIP_MAGIC.startswith(head):
        raise InputError(path, f"truncated PyTorch checkpoint: {len(head)} bytes")
    raise InputError(path, "not a PyTorch checkpoint (neither torch.save's zip archive nor its legacy pickle format)")


def _unsafe_globals(path: Path, pickled: bytes, protocol: int | None, harmless: Collection[str]) -> list[str]:
    """The classes and functions the archive's pickle names beyond torch's weights-only defaults:
    torch's own list, or (for protocols torch cannot read) a scan of the pickle's opcodes."""
    if protocol is not None and protocol > WEIGHTS_ONLY_PROTOCOLS:
        known = {*harmless, "collections.OrderedDict"}
        return [name for name in dict.fromkeys(pickle_globals(pickled)) if name not in known and not name.startswith("torch.")]
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # a malformed pickle: torch.load names what is wrong with it
        return []


def _refusal(names: Collection[str], holder: str) -> str:
    return f"refused to load: its pickle references {', '.join(names)}, which {holder} has no reason to hold; nothing from it was run"


def _unpickling_refusal(error: pickle.UnpicklingError, holder: str) -> str:
    """torch's reason for refusing a pickle, without its advice (to load it with weights_only=False)."""
    reason = _weights_unpickler_reason(error)
    named = _REFUSED_GLOBAL.search(str(error))
    if named:
        return _refusal([named[1]], holder)
    target = _APPLIED_TO.search(reason)
    if target:
        return f"refused to load: its pickle applies an operation that torch.save never writes (to a {target[1] or target[2]}); nothing from it was run"
    return f"not a readable PyTorch checkpoint (malformed pickle: {reason})"


def _weights_unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The reason in torch's message, without its advice to load with weights_only=False."""
    text = str(error).split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "unreadable"


def _main_pickle(path: Path) -> bytes:
    """The pickle of a torch.save zip archive (``<archive>/data.pkl``); empty if there is none."""
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        return archive.read(names[0]) if names else b""


def _pickle_protocol(data: bytes) -> int | None:
    for opcode, argument, _ in _opcodes(data):
        return argument if opcode.name == "PROTO" else None
    return None


def _opcodes(data: bytes) -> Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]:
    """pickletools' opcodes of ``data``, ending quietly where it is malformed."""
    try:
        yield from pickletools.genops(data)
    except (ValueError, EOFError):
        return


_STRING_PUSHES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of each global (class or function) a pickle references, read from its
    opcodes without unpickling. A STACK_GLOBAL takes its two names from the pushes before it,
    strings or memo entries, as Python's pickler writes them; anything else pushes an unknown."""
    found: list[str] = []
    memo: dict[object, str | None] = {}
    pushed: list[str | None] = []
    for opcode, argument, _ in _opcodes(data):
        name = opcode.name
        if name == "GLOBAL":
            found.append(str(argument).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            found.append(".".join(str(part) for part in pushed[-2:]))
        if name in _STRING_PUSHES:
            pushed.append(str(argument))
        elif name in _MEMO_GETS:
            pushed.append(memo.get(argument))
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in _MEMO_PUTS:
            memo[argument] = pushed[-1] if pushed else None
        elif name != "FRAME":
            pushed.append(None)
    return found


# --- safetensors ----------------------------------------------------------------------------


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    with open(path, "rb"):  # a missing or unreadable file is an OSError naming it
        pass
    try:
        return load_file(str(path), device="cpu")
    except MemoryError:
        raise
    except Exception as error:  # the safetensors reader raises its own and several builtin types
        raise InputError(path, f"truncated or damaged safetensors file ({type(error).__name__}: {first_line(error)})") from None

