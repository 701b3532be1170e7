"""The files between stages, in one place: their columns, statuses, labels, frame IDs and
digests, the HDF5 embedding format and the model file names.

Every stage module imports its formats from here and none imports another stage, so each
reads as a unit and a format changes in one place. Nothing here imports torch; h5py is imported
by the embedding functions only, so the table stages start fast.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputError
from .fasta import text_lines
from .values import MAX_MODEL_SIZE, checked_int, parse_int, shown

if TYPE_CHECKING:
    import h5py

# ---------------------------------------------------------------- frame and chunk IDs
# chunk `{sequence_id}_chunk_{j}` (j from 1), frame `{chunk_id}{F|R}{1..3}`, as the original
FRAME_LABELS = ("F1", "F2", "F3", "R1", "R2", "R3")
CHUNK_MARK = "_chunk_"
_FRAME_ID = re.compile(rf"(.+){CHUNK_MARK}([1-9][0-9]*)([FR][123])")


def frame_suffix(chunk_number: int, frame: int) -> str:
    """What a frame adds to its sequence ID: chunk number from 1, frame index into FRAME_LABELS."""
    return f"{CHUNK_MARK}{chunk_number}{FRAME_LABELS[frame]}"


def chunk_of(frame_id: str) -> str:
    return frame_id[:-2]


def parse_frame_id(frame_id: str) -> tuple[str, int, int] | None:
    """(sequence ID, chunk number, index into FRAME_LABELS) of a frame ID, or None if it is not one."""
    match = _FRAME_ID.fullmatch(frame_id)
    if match is None:
        return None
    return match[1], int(match[2]), FRAME_LABELS.index(match[3])


class FrameIdDigest:
    """SHA-256 of a shard's frame IDs in order, each followed by a newline: the ``ids_sha256`` of
    P.shards.tsv, which the stages after PREPARE recompute to prove they hold exactly its frames."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def update(self, frame_ids: Iterable[str]) -> None:
        for frame_id in frame_ids:
            self._hash.update(frame_id.encode("utf-8") + b"\n")
            self.count += 1

    def update_lines(self, lines: bytes) -> None:
        """Add the IDs of ``lines``, each ID followed by a newline (as update hashes them)."""
        self._hash.update(lines)
        self.count += lines.count(b"\n")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def record_digest(header: str, sequence: str) -> str:
    """The ``digest`` of P.sequences.tsv: BLAKE2b-64 of an input record's header line (without
    '>' and the line end) and its sequence letters as read, so SUMMARIZE can prove that the
    FASTA it copies viral records from is the one PREPARE read."""
    return hashlib.blake2b(f"{header}\n{sequence}".encode("utf-8"), digest_size=8).hexdigest()


# ---------------------------------------------------------------- PREPARE_FRAMES tables
# P.shards.tsv lists three kinds of shards: frame shards (every kept frame once, input order;
# what CLASSIFY and SUMMARIZE run over) and the shards of the distinct sequences each model
# embeds once per sample (numbered in order of first occurrence, named after the first frame
# that has them).
FRAMES, DNABERT, ESM = "frames", "dnabert", "esm"
SHARD_KINDS = (FRAMES, DNABERT, ESM)
EMBEDDING_KINDS = (DNABERT, ESM)
SHARD_COLUMNS = ("shard", "kind", "items", "tokens", "first_id", "last_id", "ids_sha256", "dnabert_start", "esm_start")
SEQUENCE_COLUMNS = ("record", "sequence_id", "input_id", "length", "chunks", "frames", "status", "reason", "digest")
# a frame shard: each frame's ID and the sample-wide index of its nucleotide and protein sequence
FRAME_COLUMNS = ("frame_id", DNABERT, ESM)
PENDING, NO_OPEN_FRAME, TOO_SHORT, INVALID = "pending", "no_open_frame", "too_short", "invalid"
SEQUENCE_STATUSES = (PENDING, NO_OPEN_FRAME, TOO_SHORT, INVALID)
SHARDS_SUFFIX = ".shards.tsv"
SEQUENCES_SUFFIX = ".sequences.tsv"
SHARD_SUFFIXES = {FRAMES: ".frames.tsv", DNABERT: ".fna", ESM: ".faa"}


def shard_name(prefix: str, kind: str, number: int) -> str:
    """P.0001 for frame shards, P.dnabert.0001 and P.esm.0001 for the sequences a model embeds."""
    return f"{prefix}.{number:04d}" if kind == FRAMES else f"{prefix}.{kind}.{number:04d}"


def esm_tokens(protein_length: int | np.ndarray) -> int | np.ndarray:
    """ESM-2 tokens of a protein: its residues plus BOS and EOS (the shard budget counts these)."""
    return protein_length + 2


def dnabert_shard_tokens(bases: int | np.ndarray) -> int | np.ndarray:
    """What a nucleotide frame counts for against the shard budget: its whole codons plus two,
    the ESM-2 tokens of its protein (a frame has one base more than its codons), so that both
    kinds of embedding shard cut a sample's frames alike when nothing repeats."""
    return bases // 3 + 2


@dataclass(frozen=True)
class Shard:
    """A row of P.shards.tsv. ``items``: frames, or distinct sequences. ``dnabert_start`` and
    ``esm_start``: for a frame shard, the distinct sequences of each model first seen before it
    (the index its next new sequence gets); for an embedding shard, the index of its first
    sequence in its own model's column, None in the other."""

    name: str
    kind: str
    items: int
    tokens: int
    first_id: str
    last_id: str
    ids_sha256: str
    dnabert_start: int | None
    esm_start: int | None

    def start(self, kind: str) -> int | None:
        return self.dnabert_start if kind == DNABERT else self.esm_start


@dataclass(frozen=True, slots=True)
class SequenceEntry:
    record: int
    sequence_id: str
    input_id: str
    length: int
    chunks: int
    frames: int
    status: str
    reason: str
    digest: str


def tsv_line(fields: Iterable[object]) -> str:
    return "\t".join(map(str, fields)) + "\n"


def read_tsv(path: str | Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a tab-separated file whose header names at least ``columns``."""
    lines = text_lines(path)
    first = next(lines, None)
    if first is None:
        raise InputError(path, "empty file: expected a header line")
    header = first[1].split("\t")
    missing = [column for column in columns if column not in header]
    if missing:
        raise InputError(path, f"header lacks column(s) {', '.join(missing)}")
    for number, line in lines:
        if not line:
            continue
        values = line.split("\t")
        if len(values) != len(header):
            raise InputError(path, f"line {number} has {len(values)} fields, the header {len(header)}")
        yield number, dict(zip(header, values))


def _optional_int(path: str | Path, value: str, what: str, line: int) -> int | None:
    return None if value == "" else parse_int(path, value, what, line)
def read_shards(path: str | Path) -> list[Shard]:
    """Every row of P.shards.tsv, checked: known kinds, counts, and the start columns that each
    kind needs."""
    shards = []
    for line, row in read_tsv(path, SHARD_COLUMNS):
        name, kind = row["shard"], row["kind"]
        if kind not in SHARD_KINDS:
            raise InputError(path, f"line {line}: shard {name} has the unknown kind {kind!r} (one of {', '.join(SHARD_KINDS)})")
        starts = {column: _optional_int(path, row[f"{column}_start"], f"shard {name} {column}_start", line) for column in EMBEDDING_KINDS}
        needed = EMBEDDING_KINDS if kind == FRAMES else (kind,)
        if any(starts[column] is None for column in needed):
            raise InputError(path, f"line {line}: {kind} shard {name} lacks {' and '.join(f'{column}_start' for column in needed)}")
        shards.append(
            Shard(
                name, kind,
                parse_int(path, row["items"], f"shard {name} item count", line, minimum=1),
                parse_int(path, row["tokens"], f"shard {name} token count", line, minimum=1),
                row["first_id"], row["last_id"], row["ids_sha256"], starts[DNABERT], starts[ESM],
            )
        )  # fmt: skip
    for kind in EMBEDDING_KINDS:  # each model's shards number its sequences from 0 without gaps
        expected = 0
        for shard in (shard for shard in shards if shard.kind == kind):
            if shard.start(kind) != expected:
                raise InputError(path, f"{kind} shard {shard.name} starts at sequence {shard.start(kind)}, not {expected}: rows missing or reordered")
            expected += shard.items
    return shards


def shards_of(shards: Sequence[Shard], kind: str) -> list[Shard]:
    return [shard for shard in shards if shard.kind == kind]


def one_file_per_shard(held: Iterable[tuple[str, Shard]], shards: Sequence[Shard], manifest_path: str | Path, what: str) -> list[tuple[str, Shard]]:
    """(file, shard) for every shard of ``shards``, in their order, from (file, the shard it
    holds): a shard that two files hold, or none, is an error (``what`` the files hold)."""
    matched: dict[str, str] = {}
    for path, shard in held:
        if shard.name in matched:
            raise InputError(path, f"holds the {what} of shard {shard.name}, which {matched[shard.name]} holds too")
        matched[shard.name] = str(path)
    missing = [shard.name for shard in shards if shard.name not in matched]
    if missing:
        raise InputError(manifest_path, f"no {what} for shard(s) {', '.join(missing)}")
    return [(matched[shard.name], shard) for shard in shards]


def shard_row(shard: Shard) -> str:
    return tsv_line((shard.name, shard.kind, shard.items, shard.tokens, shard.first_id, shard.last_id, shard.ids_sha256,
                     "" if shard.dnabert_start is None else shard.dnabert_start, "" if shard.esm_start is None else shard.esm_start))


@dataclass(frozen=True)
class FrameBlock:
    """Consecutive rows of a frame shard: frame IDs and the index of each frame's sequences."""

    start: int  # row of the first, from 0
    frame_ids: list[str]
    dnabert: np.ndarray  # int64
    esm: np.ndarray


def read_frame_blocks(path: str | Path, rows: int) -> Iterator[FrameBlock]:
    """A frame shard (P.NNNN.frames.tsv) in blocks of ``rows`` rows, its header and fields checked."""
    lines = text_lines(path)
    if next(lines, (1, ""))[1] != "\t".join(FRAME_COLUMNS):
        raise InputError(path, "not a frame shard: the header must be " + " ".join(FRAME_COLUMNS))
    start = 0
    while block := list(itertools.islice(lines, rows)):
        ids, indices = [], []
        for number, line in block:
            fields = line.split("\t")
            if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
                raise InputError(path, f"line {number} is not a frame ID and two sequence indices", fields[0])
            ids.append(fields[0])
            indices.append((int(fields[1]), int(fields[2])))
        pairs = np.array(indices, dtype=np.int64).reshape(-1, 2)
        yield FrameBlock(start, ids, pairs[:, 0], pairs[:, 1])
        start += len(block)


def read_sequences(path: str | Path) -> Iterator[SequenceEntry]:
    """The rows of P.sequences.tsv in order, streamed."""
    for line, row in read_tsv(path, SEQUENCE_COLUMNS):
        if row["status"] not in SEQUENCE_STATUSES:
            raise InputError(path, f"line {line}: unknown status {row['status']!r}", row["sequence_id"])
        yield SequenceEntry(
            record=parse_int(path, row["record"], "record", line, minimum=1),
            sequence_id=row["sequence_id"],
            input_id=row["input_id"],
            length=parse_int(path, row["length"], "length", line),
            chunks=parse_int(path, row["chunks"], "chunk count", line),
            frames=parse_int(path, row["frames"], "frame count", line),
            status=row["status"],
            reason=row["reason"],
            digest=row["digest"],
        )


# ---------------------------------------------------------------- CLASSIFY_FRAMES predictions
# the original's prediction_results.txt: score1 = P(others), score2 = P(virus)
PREDICTION_COLUMNS = ("Sequence_ID", "Prediction", "score1", "score2")
PREDICTION_HEADER = tsv_line(PREDICTION_COLUMNS)
LABELS = ("others", "virus")  # class index -> label
PREDICTIONS_SUFFIX = ".predictions.tsv"


@dataclass(frozen=True, slots=True)
class Prediction:
    frame_id: str
    others: float  # the float32 value of score1 (compares as float32 does)
    virus: float


def prediction_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of each row of a predictions file, the header checked."""
    lines = text_lines(path)
    if next(lines, (1, ""))[1] != PREDICTION_HEADER.rstrip("\n"):
        raise InputError(path, "not a predictions file: the header must be " + " ".join(PREDICTION_COLUMNS))
    for number, line in lines:
        if line:
            yield number, line


def parse_prediction(path: str | Path, number: int, line: str) -> Prediction:
    fields = line.split("\t")
    if len(fields) != 4 or fields[1] not in LABELS:
        raise InputError(path, f"line {number} is not '{', '.join(PREDICTION_COLUMNS)}'")
    try:
        others, virus = float(np.float32(fields[2])), float(np.float32(fields[3]))
    except ValueError:
        raise InputError(path, f"line {number} has a score that is not a number", fields[0]) from None
    if not (0.0 <= others <= 1.0 and 0.0 <= virus <= 1.0):  # also false for NaN
        raise InputError(path, f"line {number} has a score that is not a probability", fields[0])
    return Prediction(fields[0], others, virus)


def read_predictions(path: str | Path) -> Iterator[Prediction]:
    for number, line in prediction_lines(path):
        yield parse_prediction(path, number, line)


# ---------------------------------------------------------------- SUMMARIZE results
DEFAULT_THRESHOLD = 0.5
CALL_COLUMNS = (
    "sample", "sequence_id", "input_id", "length", "chunks", "chunks_scored", "frames_scored", "viral_chunks",
    "viral_chunk_fraction", "max_chunk_score", "mean_chunk_score", "call", "status", "reason", "shorter_than_chunk",
)  # fmt: skip
SCORED = "scored"
CALL_STATUSES = (SCORED, NO_OPEN_FRAME, TOO_SHORT, INVALID)
# shorter_than_chunk: the sequence is shorter than the chunk length, so its one chunk is shorter
# than those the published classifiers were trained on
FLAG_VALUES = ("true", "false")


def flag(value: bool) -> str:
    """A FLAG_VALUES column value."""
    return FLAG_VALUES[0] if value else FLAG_VALUES[1]
VIRUS, NON_VIRUS = "virus", "non-virus"
CALLS = (VIRUS, NON_VIRUS)
PREDICTION_RESULTS = "prediction_results.txt"
HIGHEST_SCORES = "prediction_results_highestscore.csv"
SEQUENCE_CALLS = "sequence_calls.tsv"
VIRAL_SEQUENCES = "viral_sequences.fasta"
# written last; its "files" maps every other file of the folder to its file_sha256
SUMMARY_JSON = "summary.json"
SAMPLE_RESULT_FILES = (PREDICTION_RESULTS, HIGHEST_SCORES, SEQUENCE_CALLS, VIRAL_SEQUENCES, SUMMARY_JSON)


def call_rule(threshold: float) -> str:
    """The call rule in words, for summary.json and the report."""
    return (
        "A chunk's virus score is the highest virus probability (score2) among its open reading frames; "
        "a chunk is viral when that score is at least its highest non-virus probability (score1), the "
        f"original VirNucPro rule. A sequence is called virus when the mean virus score of its scored "
        f"chunks is at least {threshold:g}, otherwise non-virus; sequences without any scored frame get no call."
    )


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ---------------------------------------------------------------- EMBED_* embeddings (HDF5)
# Datasets `ids` (UTF-8, the shard's frame order; chunked by rows) and `embeddings` (N x dim,
# stored contiguously, so that readers map it and take any rows, near or scattered, at the cost
# of reading them). Attributes: EMBEDDING_ATTRIBUTES.
CLASSIFIER = "classifier"
MODEL_ROLES = (DNABERT, ESM, CLASSIFIER)
EMBEDDING_ATTRIBUTES = ("model_role", "model", "layer", "pooling", "precision", "dtype", "dim", "ids_sha256")
# bf16 compute keeps 8 bits of mantissa: float16 storage (11 bits) keeps them all above 6e-5,
# where float16 turns subnormal (an absolute error of at most 3e-8 below)
STORAGE_DTYPES = {"bf16": "float16", "fp32": "float32"}
ID_CHUNK_ROWS = 4096
_SHA256 = re.compile(r"[0-9a-f]{64}")
ROLE_NAMES = {DNABERT: "DNABERT-S", ESM: "ESM-2"}


def storage_dtype(precision: str) -> np.dtype:
    """How embeddings computed at ``precision`` ('bf16' or 'fp32') are stored."""
    return np.dtype(STORAGE_DTYPES[precision])


def first_non_finite(vectors: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    return int(bad[0]) if len(bad) else None


def write_embeddings(path: str | Path, ids: Sequence[str], vectors: np.ndarray, attributes: Mapping[str, object]) -> None:
    """Write ``ids`` and their ``vectors`` (N x D) atomically and byte-reproducibly.

    ``attributes`` gives every EMBEDDING_ATTRIBUTES key except dtype, dim and ids_sha256, which
    follow from the data. A non-finite vector is refused: it would become a silent wrong call.
    The HDF5 image is built in memory and written as plain bytes, so a full disk is an OSError
    (ENOSPC) naming ``path``, not a crash inside the HDF5 library.
    """
    import io

    import h5py

    from .atomic import atomic_open
    from .errors import VirNucProError

    dtype = storage_dtype(str(attributes["precision"]))
    vectors = np.asarray(vectors).astype(dtype, copy=False)  # a value beyond float16's range becomes Inf
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but embeddings of shape {vectors.shape}")
    bad = first_non_finite(vectors)
    if bad is not None:
        precision = attributes["precision"]
        advice = "check the model weights" + (" or use --precision fp32" if precision == "bf16" else "")
        raise VirNucProError(
            f"{path}: the {ROLE_NAMES[str(attributes['model_role'])]} embedding of frame '{ids[bad]}' holds NaN or "
            f"Inf (precision {precision}): not written; {advice}"
        )
    digest = FrameIdDigest()
    digest.update(ids)
    image = io.BytesIO()
    # track_order and absent timestamps keep the bytes identical between runs
    with h5py.File(image, "w", track_order=True) as handle:
        string = h5py.string_dtype("utf-8")
        handle.create_dataset("ids", data=np.array(list(ids), dtype=object), dtype=string, track_times=False,
                              maxshape=(None,), chunks=(max(1, min(len(ids), ID_CHUNK_ROWS)),))
        handle.create_dataset("embeddings", data=vectors, track_times=False)  # contiguous
        for key, value in attributes.items():
            handle.attrs[key] = value
        handle.attrs["dtype"] = dtype.name
        handle.attrs["dim"] = vectors.shape[1]
        handle.attrs["ids_sha256"] = digest.hexdigest()
    with atomic_open(path, "wb") as output:
        output.write(image.getbuffer())


class EmbeddingFile:
    """An embeddings HDF5 file opened for reading: checked on opening; its embeddings mapped from
    the file, so that any rows are read at the cost of reading them.

    ``role`` is the model the caller expects (DNABERT or ESM): a file made by the other is refused,
    so swapped inputs fail instead of being scored.
    """

    def __init__(self, path: str | Path, role: str) -> None:
        import h5py

        self.path = str(path)
        try:
            self._file = h5py.File(path, "r")
        except FileNotFoundError:
            raise InputError(path, "file not found") from None
        except OSError as error:
            raise InputError(path, f"not an HDF5 file ({str(error).splitlines()[0]})") from None
        try:
            self._ids, self._vectors = self._checked(h5py, role)
            self._rows = self._mapped()
        except BaseException:
            self._file.close()
            raise
        self.count, self.dim = self._vectors.shape
        self.attributes = {key: self._file.attrs[key] for key in self._file.attrs}

    def _mapped(self) -> np.ndarray:
        """The embeddings as an array mapped from the file."""
        if self._vectors.size == 0:
            return np.empty(self._vectors.shape, dtype=self._vectors.dtype)
        offset = self._vectors.id.get_offset()
        if offset is None:
            raise InputError(self.path, "'embeddings' is not stored contiguously (chunked or compressed): not written by this pipeline's embedders")
        try:
            return np.memmap(self.path, dtype=self._vectors.dtype, mode="r", offset=offset, shape=self._vectors.shape)
        except ValueError:  # the file ends before the data does
            raise InputError(self.path, "truncated: the file ends before its embeddings do") from None

    def _checked(self, h5py, role: str) -> "tuple[h5py.Dataset, h5py.Dataset]":
        datasets = []
        for name in ("ids", "embeddings"):
            item = self._file.get(name)
            if not isinstance(item, h5py.Dataset):
                raise InputError(self.path, f"'{name}' is {'missing' if item is None else 'not a dataset'}: not an embeddings file from embed_dnabert.py or embed_esm.py")
            problem = storage_problem(item)
            if problem:
                raise InputError(self.path, f"dataset '{name}' of shape {item.shape} {problem}: not a file the embedders wrote whole")
            datasets.append(item)
        ids, vectors = datasets
        attrs = self._file.attrs
        missing = [key for key in EMBEDDING_ATTRIBUTES if key not in attrs]
        if missing:
            raise InputError(self.path, f"lacks the attribute(s) {', '.join(missing)}: not written by this pipeline's embedders")
        made_by = str(attrs["model_role"])
        if made_by != role:
            raise InputError(
                self.path,
                f"holds {ROLE_NAMES.get(made_by, repr(made_by))} embeddings where {ROLE_NAMES[role]} embeddings belong "
                "(were the DNABERT and ESM files swapped?)",
            )
        if ids.ndim != 1 or h5py.check_string_dtype(ids.dtype) is None:
            raise InputError(self.path, "'ids' is not a one-dimensional string dataset")
        if vectors.ndim != 2 or vectors.dtype.name != str(attrs["dtype"]) or vectors.dtype.name not in STORAGE_DTYPES.values():
            raise InputError(self.path, f"'embeddings' is {vectors.dtype} of shape {vectors.shape}, the attributes say 2-D {attrs['dtype']}")
        dim = checked_int(self.path, "attribute dim", attrs["dim"], minimum=1, maximum=MAX_MODEL_SIZE)
        if len(ids) != vectors.shape[0] or dim != vectors.shape[1]:
            raise InputError(self.path, f"{len(ids)} ids for embeddings of shape {vectors.shape} (dim attribute {dim})")
        digest = attrs["ids_sha256"]
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise InputError(self.path, f"attribute ids_sha256 {shown(digest)} is not a SHA-256 in hex")
        return ids, vectors

    def __enter__(self) -> "EmbeddingFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def _read(self, dataset: "h5py.Dataset", start: int, stop: int) -> np.ndarray:
        try:
            return dataset[start:stop]
        except OSError as error:  # HDF5 names neither the file nor the rows
            raise InputError(self.path, f"rows {start}..{stop - 1} of '{dataset.name.lstrip('/')}' cannot be read, the file is damaged ({str(error).splitlines()[0]})") from None

    def ids(self, start: int, stop: int) -> list[str]:
        raw = self._read(self._ids, start, stop)
        try:
            return [value.decode("utf-8") for value in raw]
        except UnicodeDecodeError:
            row = next(start + offset for offset, value in enumerate(raw) if not _decodes(value))
            raise InputError(self.path, f"frame ID in row {row} is not UTF-8") from None

    def vectors(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32, refusing NaN and Inf."""
        block = self._rows[start:stop].astype(np.float32)
        self.check_finite(np.arange(start, stop), block)
        return block

    def check_finite(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Refuse NaN and Inf in ``vectors``, this file's rows ``rows``."""
        bad = first_non_finite(vectors)
        if bad is not None:
            row = int(rows[bad])
            raise InputError(self.path, f"the embedding in row {row} holds NaN or Inf", self.ids(row, row + 1)[0])

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The rows at ``rows`` in their storage dtype, unchecked (for a reader that widens
        float16 itself, torch being several times faster at it than numpy, and then calls
        check_finite)."""
        return np.asarray(self._rows[rows])


def storage_problem(dataset: "h5py.Dataset") -> str | None:
    """Why ``dataset`` does not hold data for all of its declared shape, or None. HDF5 reads a
    chunk never written, or contiguous storage never allocated, as the fill value, so a file may
    declare millions of rows it does not hold; this asks the file's index, reading no data."""
    if dataset.is_virtual:
        return "is a virtual dataset (its data lives in other files)"
    if dataset.external:
        return f"keeps its data in external file(s) ({', '.join(str(name) for name, *_ in dataset.external)})"
    if dataset.chunks is None:  # contiguous or compact storage is allocated whole or not at all
        declared = dataset.size * dataset.id.get_type().get_size()
        stored = dataset.id.get_storage_size()
        return f"declares {declared:,} bytes but stores {stored:,}" if stored < declared else None
    chunks = math.prod(-(-extent // chunk) for extent, chunk in zip(dataset.shape, dataset.chunks))
    stored = dataset.id.get_num_chunks()
    return f"needs {chunks:,} chunks but stores {stored:,}" if stored < chunks else None


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------- STAGE_MODELS files
# models.json: {role: {"name", "path", "sha256", "files", "test_only"}}; files: the sha256 of every
# file a stage reads of the model (model_files), sha256 the weights'; test_only marks the seeded
# tiny models of the test profile, whose calls mean nothing
MODELS_JSON = "models.json"
TEST_ONLY = "test_only"
MODEL_MANIFEST = "checksums.sha256"
VERSIONS_FILE = "versions.txt"
DEFAULT_DNABERT_MODEL = "zhihan1996/DNABERT-S"  # Hugging Face hub ID
DEFAULT_ESM_MODEL = "esm2_t36_3B_UR50D"  # fair-esm model name
ESM_MODEL_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
DNABERT_CONFIG_FILE = "config.json"
DNABERT_TOKENIZER_FILE = "tokenizer.json"
DNABERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
# what staging fetches from the hub: the files the embedder reads, never code
DNABERT_HUB_FILES = (DNABERT_CONFIG_FILE, DNABERT_TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json", *DNABERT_WEIGHT_FILES)
ESM_REGRESSION_SUFFIX = "-contact-regression.pt"


def dnabert_weight_file(directory: Path) -> Path | None:
    """The weight file the DNABERT-S embedder reads in ``directory``: the first of DNABERT_WEIGHT_FILES there."""
    return next((directory / name for name in DNABERT_WEIGHT_FILES if (directory / name).is_file()), None)


def model_files(role: str, model: Path) -> dict[str, Path]:
    """The files a stage reads of the model at ``model``, by their name in models.json: for
    DNABERT-S (a folder) its configuration, tokenizer and weights, for ESM-2 and the classifier
    the file itself. STAGE_MODELS records their sha256; the stages check them before loading."""
    if role != DNABERT:
        return {model.name: model}
    weights = dnabert_weight_file(model) or model / DNABERT_WEIGHT_FILES[0]
    return {path.name: path for path in (model / DNABERT_CONFIG_FILE, model / DNABERT_TOKENIZER_FILE, weights)}


def recorded_model_files(models_json: str | Path, role: str) -> dict[str, str]:
    """The sha256 of each file of the ``role`` model that STAGE_MODELS recorded in models.json."""
    try:
        entry = json.loads(Path(models_json).read_text(encoding="utf-8"))[role]
        files = entry["files"]
    except (ValueError, TypeError, KeyError):
        raise InputError(models_json, f"not a models.json of stage_models.py: no file checksums of the {role} model") from None
    if not isinstance(files, dict) or not all(isinstance(digest, str) for digest in files.values()):
        raise InputError(models_json, f"the {role} model's 'files' must map file names to sha256 digests")
    return files


def verify_model_files(models_json: str | Path, role: str, model: str | Path) -> None:
    """Refuse the ``role`` model at ``model`` unless every file a stage reads of it has the
    sha256 STAGE_MODELS recorded: a file changed, damaged or missing since it was staged (in the
    model cache or in place) is never used."""
    recorded = recorded_model_files(models_json, role)
    entry = Path(models_json).resolve().parent  # the model cache entry when models.json is staged from it
    advice = f"stage the models again (delete {entry}, the folder of its models.json, and run again)"
    for name, staged in model_files(role, Path(model)).items():
        path = staged.resolve()  # in the model cache, not the task's link to it
        expected = recorded.get(name)
        if expected is None:
            raise InputError(path, f"{models_json} records no sha256 for {name} of the {role} model: {advice}")
        if not path.is_file():
            raise InputError(path, f"missing: STAGE_MODELS recorded it with sha256 {expected}; {advice}")
        found = file_sha256(path)
        if found != expected:
            raise InputError(path, f"sha256 {found}, but STAGE_MODELS recorded {expected}: the file changed after staging; {advice}")
