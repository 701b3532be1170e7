"""The files between stages, in one place: their columns, statuses, labels, frame IDs and
digests, the HDF5 embedding format and the model file names.

Every stage module imports its formats from here and none imports another stage, so each
reads as a unit and a format changes in one place. Nothing here imports torch; h5py is imported
by the embedding functions only, so the table stages start fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputError
from .fasta import text_lines

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

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def record_digest(header: str, sequence: str) -> str:
    """The ``digest`` of P.sequences.tsv: BLAKE2b-64 of an input record's header line (without
    '>' and the line end) and its sequence letters as read, so SUMMARIZE can prove that the
    FASTA it copies viral records from is the one PREPARE read."""
    return hashlib.blake2b(f"{header}\n{sequence}".encode("utf-8"), digest_size=8).hexdigest()


# ---------------------------------------------------------------- PREPARE_FRAMES tables
SHARD_COLUMNS = ("shard", "frames", "tokens", "first_id", "last_id", "ids_sha256")
SEQUENCE_COLUMNS = ("record", "sequence_id", "input_id", "length", "chunks", "frames", "status", "reason", "digest")
PENDING, NO_OPEN_FRAME, TOO_SHORT, INVALID = "pending", "no_open_frame", "too_short", "invalid"
SEQUENCE_STATUSES = (PENDING, NO_OPEN_FRAME, TOO_SHORT, INVALID)
SHARDS_SUFFIX = ".shards.tsv"
SEQUENCES_SUFFIX = ".sequences.tsv"


def shard_name(prefix: str, number: int) -> str:
    return f"{prefix}.{number:04d}"


def esm_tokens(protein_length: int | np.ndarray) -> int | np.ndarray:
    """ESM-2 tokens of a protein: its residues plus BOS and EOS (the shard budget counts these)."""
    return protein_length + 2


@dataclass(frozen=True)
class Shard:
    name: str
    frames: int
    tokens: int
    first_id: str
    last_id: str
    ids_sha256: str


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


def parse_int(path: str | Path, value: str, what: str, line: int | None = None, minimum: int = 0) -> int:
    where = f"line {line}: " if line is not None else ""
    try:
        number = int(value)
    except ValueError:
        raise InputError(path, f"{where}{what} {value!r} is not an integer") from None
    if number < minimum:
        raise InputError(path, f"{where}{what} {number} is below {minimum}")
    return number


def read_shards(path: str | Path) -> list[Shard]:
    shards = []
    for line, row in read_tsv(path, SHARD_COLUMNS):
        shards.append(
            Shard(
                row["shard"],
                parse_int(path, row["frames"], f"shard {row['shard']} frame count", line, minimum=1),
                parse_int(path, row["tokens"], f"shard {row['shard']} token count", line, minimum=1),
                row["first_id"],
                row["last_id"],
                row["ids_sha256"],
            )
        )
    return shards


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
# Datasets `ids` (UTF-8, the shard's frame order) and `embeddings` (N x dim), both chunked by
# rows so that readers stream them. Attributes: EMBEDDING_ATTRIBUTES.
DNABERT, ESM, CLASSIFIER = "dnabert", "esm", "classifier"
MODEL_ROLES = (DNABERT, ESM, CLASSIFIER)
EMBEDDING_ATTRIBUTES = ("model_role", "model", "layer", "pooling", "precision", "dtype", "dim", "ids_sha256")
# bf16 compute keeps 8 bits of mantissa: float16 storage (11 bits) keeps them all above 6e-5,
# where float16 turns subnormal (an absolute error of at most 3e-8 below)
STORAGE_DTYPES = {"bf16": "float16", "fp32": "float32"}
CHUNK_BYTES = 1 << 20
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
    rows = max(1, min(len(ids), CHUNK_BYTES // max(1, vectors.shape[1] * dtype.itemsize)))
    image = io.BytesIO()
    # track_order and absent timestamps keep the bytes identical between runs
    with h5py.File(image, "w", track_order=True) as handle:
        string = h5py.string_dtype("utf-8")
        handle.create_dataset("ids", data=np.array(list(ids), dtype=object), dtype=string, track_times=False,
                              maxshape=(None,), chunks=(rows,))
        handle.create_dataset("embeddings", data=vectors, track_times=False,
                              maxshape=(None, vectors.shape[1]), chunks=(rows, vectors.shape[1]))
        for key, value in attributes.items():
            handle.attrs[key] = value
        handle.attrs["dtype"] = dtype.name
        handle.attrs["dim"] = vectors.shape[1]
        handle.attrs["ids_sha256"] = digest.hexdigest()
    with atomic_open(path, "wb") as output:
        output.write(image.getbuffer())


class EmbeddingFile:
    """An embeddings HDF5 file opened for streaming: checked on opening, read in row blocks.

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
        except BaseException:
            self._file.close()
            raise
        self.count, self.dim = self._vectors.shape
        self.attributes = {key: self._file.attrs[key] for key in self._file.attrs}

    def _checked(self, h5py, role: str) -> "tuple[h5py.Dataset, h5py.Dataset]":
        datasets = []
        for name in ("ids", "embeddings"):
            item = self._file.get(name)
            if not isinstance(item, h5py.Dataset):
                raise InputError(self.path, f"'{name}' is {'missing' if item is None else 'not a dataset'}: not an embeddings file from embed_dnabert.py or embed_esm.py")
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
        if len(ids) != vectors.shape[0] or int(attrs["dim"]) != vectors.shape[1]:
            raise InputError(self.path, f"{len(ids)} ids for embeddings of shape {vectors.shape} (dim attribute {attrs['dim']})")
        return ids, vectors

    def __enter__(self) -> "EmbeddingFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def ids(self, start: int, stop: int) -> list[str]:
        raw = self._ids[start:stop]
        try:
            return [value.decode("utf-8") for value in raw]
        except UnicodeDecodeError:
            row = next(start + offset for offset, value in enumerate(raw) if not _decodes(value))
            raise InputError(self.path, f"frame ID in row {row} is not UTF-8") from None

    def vectors(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32, refusing NaN and Inf."""
        block = self.stored_rows(start, stop).astype(np.float32, copy=False)
        self.check_finite(start, block)
        return block

    def stored_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) in their storage dtype, unchecked: for a reader that widens float16
        itself (torch does it several times faster than numpy) and then calls check_finite."""
        return self._vectors[start:stop]

    def check_finite(self, start: int, vectors: np.ndarray) -> None:
        """Refuse NaN and Inf in ``vectors``, this file's rows from row ``start`` on."""
        bad = first_non_finite(vectors)
        if bad is not None:
            raise InputError(self.path, f"the embedding in row {start + bad} holds NaN or Inf", self.ids(start + bad, start + bad + 1)[0])

    def blocks(self, rows: int) -> Iterator[tuple[int, int]]:
        """(start, stop) of consecutive row blocks, aligned to the file's chunks."""
        chunk = (self._vectors.chunks or (rows,))[0]
        step = max(chunk, rows // chunk * chunk)
        for start in range(0, self.count, step):
            yield start, min(start + step, self.count)


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
