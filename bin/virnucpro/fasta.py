"""Streaming FASTA reading (plain or gzip, any line ends and wrapping) with clear errors."""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
IUPAC_NUCLEOTIDES = frozenset("ACGTUNRYSWKMBDHV")
# Letters that are amino acids but never nucleotide codes: their presence means a protein FASTA.
PROTEIN_ONLY_LETTERS = frozenset("EFILPQ")


@dataclass(frozen=True)
class FastaRecord:
    id: str
    description: str
    sequence: str
    line: int  # line number of the header, for error messages
    header: str  # the header line as written, without '>' and the line end


def open_text(path: str | Path) -> IO[str]:
    """Open a plain or gzip-compressed text file, detecting gzip by its magic bytes."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline=None)
    return open(path, encoding="utf-8", newline=None)


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if "\x00" in line:
                    raise InputError(path, f"line {number} holds binary data (NUL bytes): not a FASTA text file")
                yield number, line
    except UnicodeDecodeError as error:
        raise InputError(path, f"not a text FASTA file (undecodable byte at offset {error.start})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise InputError(path, f"corrupt or truncated gzip file ({error})") from None


def read_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Yield the records of a FASTA file in order.

    Raises InputError for text before the first header or a header without an ID; sequence
    content is checked by the caller, which knows what alphabet it expects.
    """
    header: str | None = None
    header_line = 0
    parts: list[str] = []
    for number, line in _lines(path):
        if line.startswith(">"):
            if header is not None:
                yield _make_record(path, header, header_line, parts)
            header, header_line, parts = line[1:].rstrip("\n"), number, []
        elif header is None:
            if line.strip():
                raise InputError(path, f"line {number} comes before any '>' header: not a FASTA file")
        else:
            parts.append("".join(line.split()))  # whitespace dropped line by line: no second copy
    if header is not None:
        yield _make_record(path, header, header_line, parts)


def _make_record(path: str | Path, header: str, line: int, parts: list[str]) -> FastaRecord:
    if not header.strip():
        raise InputError(path, f"the header on line {line} has no sequence ID")
    # Biopython's record.id, which the original uses: the header up to the first whitespace of any kind
    identifier, *description = header.split(None, 1)
    return FastaRecord(identifier, "".join(description).strip(), "".join(parts), line, header)


def nucleotide_problem(sequence: str) -> str | None:
    """Why ``sequence`` is not a nucleotide sequence, or None when it is one (IUPAC, any case)."""
    if not sequence:
        return "empty sequence"
    unexpected = set(sequence.upper()) - IUPAC_NUCLEOTIDES
    if not unexpected:
        return None
    shown = "".join(sorted(unexpected))[:20]
    if unexpected & PROTEIN_ONLY_LETTERS:
        return f"looks like a protein sequence, not nucleotides (letters {shown!r})"
    return f"characters that are not IUPAC nucleotide codes: {shown!r}"


def format_record(identifier: str, sequence: str) -> str:
    """One FASTA record with the sequence on a single line, as the original writes its frames."""
    return f">{identifier}\n{sequence}\n"
