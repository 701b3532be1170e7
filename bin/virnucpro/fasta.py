"""Streaming text and FASTA reading (plain or gzip, any line ends and wrapping) with clear errors."""

from __future__ import annotations

import gzip
import itertools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
READ_BLOCK = 1 << 20
IUPAC_NUCLEOTIDES = frozenset("ACGTUNRYSWKMBDHV")
# Only ASCII letters are codes: str.upper() of 'ß' is 'SS' and of 'ſ' is 'S', which would pass
IUPAC_LETTERS = IUPAC_NUCLEOTIDES | frozenset("".join(IUPAC_NUCLEOTIDES).lower())
# Letters that are amino acids but never nucleotide codes: their presence means a protein FASTA.
PROTEIN_ONLY_LETTERS = frozenset("EFILPQ")


@dataclass(frozen=True, slots=True)
class FastaRecord:
    id: str
    description: str
    sequence: str
    line: int  # line number of the header, for error messages
    header: str  # the header line as written, without '>' and the line end


def _blocks(path: str | Path) -> Iterator[bytes]:
    """The decompressed bytes of a plain or gzip file (gzip detected by its magic bytes), in blocks."""
    with open(path, "rb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="rb") if raw.peek(2)[:2] == GZIP_MAGIC else raw as handle:
            try:
                while block := handle.read(READ_BLOCK):
                    yield block
            except (gzip.BadGzipFile, EOFError, zlib.error) as error:
                raise InputError(path, f"corrupt or truncated gzip file ({error})") from None


def _line_ends(data: bytes) -> int:
    """Line ends in ``data``: '\\n', '\\r\\n' and a lone '\\r' each count once."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _decoded(path: str | Path, piece: bytes, lines_before: int, bytes_before: int) -> tuple[str, InputError | None]:
    """``piece`` (whole lines) as text, or the whole lines before its first undecodable or NUL byte
    and the error naming that byte's line and place in the file (both counted from 1)."""
    nul = piece.find(b"\x00")
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError as error:
        bad, what = error.start, f"byte 0x{piece[error.start]:02x} is not UTF-8"
    else:
        if nul < 0:
            return text, None
        bad = len(piece)
    if 0 <= nul < bad:
        bad, what = nul, "a NUL byte: binary data, not text"
    before = piece[:bad]
    whole = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
    line = lines_before + _line_ends(before) + 1
    return before[:whole].decode("utf-8"), InputError(path, f"line {line} (byte {bytes_before + bad + 1} of the file): {what}")


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, line without its end) of a UTF-8 text file, plain or gzip.

    Lines end at '\\n', '\\r\\n' or '\\r' (and nowhere else: form feeds and Unicode separators stay
    in the line); a UTF-8 byte-order mark at the start is skipped. An undecodable or NUL byte is an
    InputError naming its line and its place in the decompressed file, raised after the lines
    before it; so is a corrupt gzip stream. The file is decoded a block of whole lines at a time.
    """
    number = consumed = 0  # lines yielded; bytes of the file before `pending`
    pending: list[bytes] = []  # the start of a line that the blocks read so far do not end
    blocks = _blocks(path)
    first = next(blocks, b"")
    if first.startswith(UTF8_BOM):
        first, consumed = first[len(UTF8_BOM) :], len(UTF8_BOM)
    for block in itertools.chain([first], blocks, [None]):
        if block is None:  # end of file: what is left is the last line, if any
            piece = b"".join(pending)
        else:
            # cut after the block's last line end; a final '\r' may be the first half of '\r\n'
            cut = max(block.rfind(b"\n"), block.rfind(b"\r", 0, len(block) - 1)) + 1
            if not cut:
                pending.append(block)
                continue
            piece, pending = b"".join([*pending, block[:cut]]), [block[cut:]]
        text, error = _decoded(path, piece, number, consumed)
        consumed += len(piece)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        if not lines[-1]:
            lines.pop()  # the text ended with a line end (or was empty)
        yield from zip(itertools.count(number + 1), lines)
        number += len(lines)
        if error is not None:
            raise error


def read_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Yield the records of a FASTA file in order.

    Raises InputError for text before the first header or a header without an ID; sequence
    content is checked by the caller, which knows what alphabet it expects.
    """
    header: str | None = None
    header_line = 0
    parts: list[str] = []
    for number, line in text_lines(path):
        if line[:1] == ">":
            if header is not None:
                yield _make_record(path, header, header_line, parts)
            header, header_line, parts = line[1:], number, []
        elif header is None:
            if line.strip():
                raise InputError(path, f"line {number} comes before any '>' header: not a FASTA file")
        else:
            parts.append("".join(line.split()))  # whitespace dropped line by line: no second copy
    if header is not None:
        yield _make_record(path, header, header_line, parts)


def _make_record(path: str | Path, header: str, line: int, parts: list[str]) -> FastaRecord:
    # Biopython's record.id, which the original uses: the header up to the first whitespace of any kind
    fields = header.split(None, 1)
    if not fields:
        raise InputError(path, f"the header on line {line} has no sequence ID")
    description = fields[1].strip() if len(fields) == 2 else ""
    return FastaRecord(fields[0], description, "".join(parts), line, header)


def nucleotide_problem(sequence: str) -> str | None:
    """Why ``sequence`` is not a nucleotide sequence, or None when it is one (IUPAC, ASCII, any case)."""
    if not sequence:
        return "empty sequence"
    unexpected = set(sequence) - IUPAC_LETTERS
    if not unexpected:
        return None
    shown = "".join(sorted({letter.upper() if letter.isascii() else letter for letter in unexpected}))[:20]
    if {letter.upper() for letter in unexpected if letter.isascii()} & PROTEIN_ONLY_LETTERS:
        return f"looks like a protein sequence, not nucleotides (letters {shown!r})"
    return f"characters that are not IUPAC nucleotide codes: {shown!r}"


def format_record(identifier: str, sequence: str) -> str:
    """One FASTA record with the sequence on a single line, as the original writes its frames."""
    return f">{identifier}\n{sequence}\n"
