"""Values read from files, checked: JSON documents, and numbers of the right type, finite and
within their range.

Every number a stage reads from a file (a table field, a JSON value, an HDF5 attribute, a model
setting) goes through here, so a value out of range is one line naming the file, the record or
field and the value, never a traceback or an Infinity passed on into a JSON file.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path

from .errors import InputError, first_line

# the largest integer that every JSON reader (and a float64) holds exactly: bounds every count
MAX_COUNT = 2**53
# the largest size a model setting may claim (layers, widths, vocabulary, an embedding's dim):
# ESM-2 15B, the largest, has 48 layers of width 5,120
MAX_MODEL_SIZE = 1 << 20
_INTEGER_TEXT = re.compile(r"[0-9]+")


def json_cut_short(text: str) -> bool:
    """Whether the JSON ``text``, which does not parse, is a document cut short: an object or
    array without its closing bracket (what a file truncated anywhere but there looks like)."""
    text = text.strip()
    closer = {"{": "}", "[": "]"}.get(text[:1])
    return closer is not None and not text.endswith(closer)


def json_problem(error: json.JSONDecodeError) -> str:
    """What a JSON parser's error says about the file: cut short, or not JSON."""
    if error.pos >= len(error.doc.rstrip()) or json_cut_short(error.doc):
        return f"truncated: the JSON ends before it is complete ({error})"
    return f"not valid JSON ({error})"


def load_json(path: str | Path) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except json.JSONDecodeError as error:
        raise InputError(path, json_problem(error)) from None
    except (ValueError, UnicodeDecodeError) as error:  # ValueError: an integer of over 4,300 digits
        raise InputError(path, f"not valid JSON ({first_line(error)})") from None
    except RecursionError:
        raise InputError(path, "not valid JSON (nested too deeply)") from None


def _range_problem(value: float, minimum: float, maximum: float) -> str | None:
    if value < minimum:
        return f"is below {minimum:g}" if isinstance(minimum, float) else f"is below {minimum}"
    if value > maximum:
        return f"is above {maximum:g}" if isinstance(maximum, float) else f"is above {maximum}"
    return None


def shown(value: object) -> str:
    """``value`` as an error message shows it: at most 60 characters."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:  # an HDF5 attribute
        value = value.item()
    if isinstance(value, numbers.Integral) and int(value).bit_length() > 128:
        return f"(an integer of {int(value).bit_length()} bits)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_int(path: str | Path, what: str, value: object, minimum: int = 0, maximum: int = MAX_COUNT, record: str | None = None) -> int:
    """``value`` (a JSON value or an HDF5 attribute) as an int in [minimum, maximum]; a bool, a
    float or a string is refused, as is a value out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(path, f"{what} {shown(value)} is not an integer", record)
    problem = _range_problem(int(value), minimum, maximum)
    if problem:
        raise InputError(path, f"{what} {shown(int(value))} {problem}", record)
    return int(value)


def checked_float(path: str | Path, what: str, value: object, minimum: float, maximum: float, record: str | None = None) -> float:
    """``value`` (a JSON value) as a finite float in [minimum, maximum]; a bool or a string is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(path, f"{what} {shown(value)} is not a number", record)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range
        number = math.inf
    if math.isnan(number):
        raise InputError(path, f"{what} {shown(value)} is not a finite number", record)
    problem = _range_problem(number, minimum, maximum)
    if problem:
        raise InputError(path, f"{what} {shown(value)} {problem}", record)
    return number


def parse_int(path: str | Path, text: str, what: str, line: int | None = None, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    """A table field of ASCII digits as an int in [minimum, maximum] (no sign, space or '_')."""
    where = f"line {line}: " if line is not None else ""
    if not _INTEGER_TEXT.fullmatch(text):
        raise InputError(path, f"{where}{what} {text!r} is not an integer")
    if len(text) > len(str(maximum)) + 20:  # beyond any bound, and int() refuses 4,300 digits
        raise InputError(path, f"{where}{what} {text[:20]}... ({len(text)} digits) is above {maximum}")
    number = int(text)
    problem = _range_problem(number, minimum, maximum)
    if problem:
        raise InputError(path, f"{where}{what} {number} {problem}")
    return number

