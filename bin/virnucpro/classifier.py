"""The VirNucPro MLP classifier: safe loading of the original checkpoints and streamed frame scoring.

The published ``300_model.pth`` / ``500_model.pth`` are whole ``MLPClassifier`` objects pickled
with ``torch.save(model)``. Unpickling them normally would import and run whatever the pickle
names, so they are read with torch's weights-only unpickler, with the few classes such a file
references mapped to inert stand-ins that only record their state; the weights are then taken
from that state and loaded into our own module. Anything the file holds that our module would
not use is refused rather than dropped, so a file is either scored as it was trained or not at all.

Scoring streams a frame shard, one batch of rows at a time: each frame's DNABERT-S and ESM-2
embeddings are gathered by the numbers of its sequences from the sample's embedding files (each
distinct sequence was embedded once per sample) into one preallocated feature buffer, and each
batch's prediction rows are written at once, so memory stays the same whatever the shard's size.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .contracts import (
    DNABERT, FRAMES, LABELS, PREDICTION_HEADER, ROLE_NAMES, EmbeddingFile, FrameBlock, FrameIdDigest, Shard, one_file_per_shard,
    read_frame_blocks, shards_of,
)
from .errors import InputError, VirNucProError
from .model_files import PickledObject, read_safetensors, read_torch_file
from .values import checked_float

DEFAULT_BATCH_EPS = 1e-5  # torch.nn.BatchNorm1d's default, used when the file does not say
# The CPU matrix product's rounding depends on how many rows it is given, so batches always
# start at row 0 and hold this many rows: the scores are the same bytes in every run.
ROWS_PER_BATCH = 4096

LINEAR = "torch.nn.modules.linear.Linear"
BATCH_NORM = "torch.nn.modules.batchnorm.BatchNorm1d"
DROPOUT = "torch.nn.modules.dropout.Dropout"
RELU = "torch.nn.modules.activation.ReLU"
# The original MLPClassifier's layers. It applies ReLU as a function (the published files have no
# relu layer); a relu or dropout layer has no weights and is the identity in eval mode.
LAYERS = {"hidden_layer": LINEAR, "bn1": BATCH_NORM, "relu": RELU, "dropout": DROPOUT, "output_layer": LINEAR}
ALLOWED_MODULE_CLASSES = frozenset(LAYERS.values())
# The original class is defined in whichever script saved it (__main__, train, prediction, ...).
CLASSIFIER_CLASS_NAME = "MLPClassifier"

WEIGHT_RANKS = {
    "hidden_layer.weight": 2,
    "hidden_layer.bias": 1,
    "bn1.weight": 1,
    "bn1.bias": 1,
    "bn1.running_mean": 1,
    "bn1.running_var": 1,
    "output_layer.weight": 2,
    "output_layer.bias": 1,
}
# BatchNorm counts its training steps here and reads the count only while training with
# momentum=None: no eval-mode score depends on it, so it is the one entry a file may carry unused.
IGNORED_WEIGHTS = frozenset({"bn1.num_batches_tracked"})
# what a classifier file may hold, named when a file holds something else
HOLDER = "a VirNucPro classifier (tensors, plain containers, an MLPClassifier and its Linear, BatchNorm1d, ReLU and Dropout layers)"
MAX_BATCH_NORM_EPS = 1.0  # torch's default is 1e-5; an eps near the variances flattens every score


class MLPClassifier(nn.Module):
    """hidden_layer -> bn1 -> ReLU -> dropout -> output_layer, as in the original train.py."""

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int, batch_norm_eps: float) -> None:
        super().__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim, eps=batch_norm_eps)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.output_layer = nn.Linear(hidden_dim, num_classes)

    @property
    def input_dim(self) -> int:
        return self.hidden_layer.in_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(self.relu(self.bn1(self.hidden_layer(features))))
        return self.output_layer(hidden)


# ---------------------------------------------------------------- loading


def _is_classifier_class(name: str) -> bool:
    """Whether ``name`` (dotted, from the pickle) is a class of the original's pickled model, read as an inert PickledObject."""
    return name in ALLOWED_MODULE_CLASSES or name.rpartition(".")[2] == CLASSIFIER_CLASS_NAME


def _module_state(path: Path, module: object, what: str) -> dict:
    state = getattr(module, "state", None) if isinstance(module, PickledObject) else None
    if not isinstance(state, dict):
        raise InputError(path, f"{what} is not a pickled torch module")
    return state


def _entries(path: Path, state: dict, group: str, what: str) -> dict[str, object]:
    entries = state.get(group) or {}
    if not isinstance(entries, dict):
        raise InputError(path, f"{what} is not a pickled torch module ({group} is a {type(entries).__name__})")
    return {name: value for name, value in entries.items() if value is not None}


def _class_of(module: object) -> str:
    return module.pickled_class if isinstance(module, PickledObject) else type(module).__name__


def _pickled_weights(path: Path, model: PickledObject) -> tuple[dict[str, object], float]:
    """The state dict and BatchNorm eps of a pickled MLPClassifier, whose layers must all be ours.

    The module tree is read one level deep and no further: our layers have no sublayers, so a
    deeper or cyclic tree is refused without walking it.
    """
    if model.pickled_class.rpartition(".")[2] != CLASSIFIER_CLASS_NAME:
        raise InputError(path, f"holds a pickled {model.pickled_class}, not an MLPClassifier or a state dict")
    state = _module_state(path, model, "the MLPClassifier")
    layers = _entries(path, state, "_modules", "the MLPClassifier")
    unknown = [f"{name} ({_class_of(layer).rpartition('.')[2]})" for name, layer in layers.items() if LAYERS.get(name) != _class_of(layer)]
    if unknown:
        expected = ", ".join(f"{name} ({kind.rpartition('.')[2]})" for name, kind in LAYERS.items())
        raise InputError(path, f"refusing to load: layer(s) {', '.join(unknown)} are not in VirNucPro's MLPClassifier, which has {expected}")
    weights = {**_entries(path, state, "_parameters", "the MLPClassifier"), **_entries(path, state, "_buffers", "the MLPClassifier")}
    eps: object = DEFAULT_BATCH_EPS
    for name, layer in layers.items():
        layer_state = _module_state(path, layer, f"layer {name}")
        if _entries(path, layer_state, "_modules", f"layer {name}"):
            raise InputError(path, f"refusing to load: layer {name} has sublayers, which VirNucPro's {_class_of(layer).rpartition('.')[2]} has not")
        for group in ("_parameters", "_buffers"):
            weights.update({f"{name}.{key}": value for key, value in _entries(path, layer_state, group, f"layer {name}").items()})
        if name == "bn1":
            eps = layer_state.get("eps", DEFAULT_BATCH_EPS)
    return weights, checked_float(path, "bn1 eps", eps, 0.0, MAX_BATCH_NORM_EPS)


def _load_torch_file(path: Path) -> tuple[Mapping[str, object], float]:
    loaded = read_torch_file(path, stand_in=_is_classifier_class, holder=HOLDER)
    if isinstance(loaded, PickledObject):
        return _pickled_weights(path, loaded)
    if isinstance(loaded, Mapping):
        return loaded, DEFAULT_BATCH_EPS
    raise InputError(path, f"holds a {type(loaded).__name__}, not an MLPClassifier or a state dict")


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _checked_weights(path: Path, weights: Mapping[str, object]) -> dict[str, torch.Tensor]:
    unknown = sorted(str(name) for name in weights if name not in WEIGHT_RANKS and name not in IGNORED_WEIGHTS)
    if unknown:
        raise InputError(path, f"refusing to load: weight(s) {', '.join(unknown)} are not in VirNucPro's MLPClassifier, which would ignore them")
    missing = [name for name in WEIGHT_RANKS if name not in weights]
    if missing:
        raise InputError(path, f"not a VirNucPro MLP classifier: missing weights {', '.join(missing)}")
    checked: dict[str, torch.Tensor] = {}
    for name, rank in WEIGHT_RANKS.items():
        value = weights[name]
        if not isinstance(value, torch.Tensor) or value.dim() != rank or not value.is_floating_point():
            raise InputError(path, f"weight {name} is not a {rank}-dimensional floating-point tensor")
        checked[name] = value.detach().to(torch.float32)
    non_finite = [name for name, value in checked.items() if not torch.isfinite(value).all()]
    if non_finite:
        raise InputError(path, f"weight(s) {', '.join(non_finite)} hold NaN or Inf (in fp32)")
    if (checked["bn1.running_var"] < 0).any():
        raise InputError(path, "weight bn1.running_var holds negative variances")
    hidden_dim, input_dim = checked["hidden_layer.weight"].shape
    num_classes = len(LABELS)
    expected = {
        "hidden_layer.bias": (hidden_dim,),
        **{f"bn1.{key}": (hidden_dim,) for key in ("weight", "bias", "running_mean", "running_var")},
        "output_layer.weight": (num_classes, hidden_dim),
        "output_layer.bias": (num_classes,),
    }
    for name, shape in expected.items():
        if tuple(checked[name].shape) != shape:
            raise InputError(
                path,
                f"weight {name} has shape {_shape(checked[name].shape)} where hidden_layer ({hidden_dim} units) and "
                f"{num_classes} classes ({', '.join(LABELS)}) need {_shape(shape)}",
            )
    return checked


def load_classifier(path: str | Path) -> MLPClassifier:
    """Load an MLPClassifier from a whole pickled model, a state dict (.pth/.pt) or .safetensors.

    Layer sizes are read from the weights; the module is returned in eval mode (BatchNorm uses
    its running statistics, dropout is off).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "classifier file not found")
    if path.suffix == ".safetensors":
        weights, eps = read_safetensors(path), DEFAULT_BATCH_EPS
    else:
        weights, eps = _load_torch_file(path)
    checked = _checked_weights(path, weights)
    hidden_dim, input_dim = checked["hidden_layer.weight"].shape
    model = MLPClassifier(input_dim, hidden_dim, len(LABELS), eps)
    model.load_state_dict(checked, strict=False)  # every weight but the ignored step count, checked above
    return model.eval()


# ---------------------------------------------------------------- scoring


class EmbeddingSet:
    """One model's embedding files of a sample, each matched to its shard of P.shards.tsv by the
    ids_sha256 its embedder recorded, so that a sample-wide sequence number finds its row."""

    def __init__(self, kind: str, paths: Sequence[str | Path], manifest: Sequence[Shard], manifest_path: str | Path, stack: contextlib.ExitStack) -> None:
        self.kind = kind
        shards = shards_of(manifest, kind)
        by_digest = {shard.ids_sha256: shard for shard in shards}
        opened: dict[str, EmbeddingFile] = {}

        def held() -> Iterator[tuple[str, Shard]]:
            for path in map(str, paths):
                embeddings = opened[path] = stack.enter_context(EmbeddingFile(path, kind))
                shard = by_digest.get(str(embeddings.attributes["ids_sha256"]))
                if shard is None:
                    raise InputError(path, f"holds the {ROLE_NAMES[kind]} embeddings of no {kind} shard of {manifest_path} (its ids_sha256 is none of "
                                           "theirs): from another sample or another prepare_frames.py run?")  # fmt: skip
                if embeddings.count != shard.items:
                    raise InputError(path, f"holds {embeddings.count} embeddings, but shard {shard.name} has {shard.items} sequences")
                yield path, shard

        self.files = [opened[path] for path, _ in one_file_per_shard(held(), shards, manifest_path, f"{ROLE_NAMES[kind]} embeddings")]
        self.starts = np.array([shard.start(kind) for shard in shards] + [sum(shard.items for shard in shards)], dtype=np.int64)
        dims = sorted({embeddings.dim for embeddings in self.files})
        if len(dims) > 1:
            raise VirNucProError(f"the {ROLE_NAMES[kind]} embedding files have different sizes ({', '.join(map(str, dims))}): not of one model")
        self.dim = dims[0]

    @property
    def count(self) -> int:
        return int(self.starts[-1])

    def _file_runs(self, numbers: np.ndarray) -> Iterator[tuple[EmbeddingFile, np.ndarray, slice]]:
        """(file, rows in it, where in ``numbers``) for the sorted ``numbers`` in each file."""
        bounds = np.searchsorted(numbers, self.starts).tolist()
        for embeddings, start, low, high in zip(self.files, self.starts.tolist(), bounds[:-1], bounds[1:]):
            if high > low:
                yield embeddings, numbers[low:high] - start, slice(low, high)

    def gather(self, numbers: np.ndarray, out: np.ndarray) -> None:
        """Write the float32 embedding of sequence ``numbers[i]`` into row i of ``out``."""
        unique, inverse = np.unique(numbers, return_inverse=True)
        rows = np.empty((len(unique), self.dim), dtype=np.float32)
        for embeddings, local, where in self._file_runs(unique):
            # torch widens float16 several times faster than numpy's astype
            torch.from_numpy(rows[where]).copy_(torch.from_numpy(embeddings.gather(local)))
            embeddings.check_finite(local, rows[where])
        np.take(rows, inverse, axis=0, out=out)

    def names(self, start: int, stop: int) -> list[tuple[EmbeddingFile, str]]:
        """The file and record name (the first frame with it) of sequences [start, stop)."""
        return [
            (embeddings, name)
            for embeddings, local, _ in self._file_runs(np.arange(start, stop))
            for name in embeddings.ids(int(local[0]), int(local[-1]) + 1)
        ]


@dataclass
class NewSequences:
    """Where a frame shard's sequence numbers stand: each frame repeats a sequence numbered
    before it or brings the next new one, whose embedding is named after that frame."""

    embeddings: EmbeddingSet
    next: int  # the number the next new sequence gets

    def check(self, frames_path: str | Path, block: FrameBlock) -> None:
        numbers = block.dnabert if self.embeddings.kind == DNABERT else block.esm
        highest = np.maximum.accumulate(np.concatenate([[self.next - 1], numbers]))[:-1]
        wrong = np.flatnonzero((numbers > highest + 1) | (numbers >= self.embeddings.count))
        if len(wrong):
            index = int(wrong[0])
            raise InputError(
                frames_path, f"row {block.start + index + 1}: {self.embeddings.kind} sequence {int(numbers[index])} where at most "
                f"{min(int(highest[index]) + 1, self.embeddings.count - 1)} can come: not as prepare_frames.py numbers them", block.frame_ids[index],
            )  # fmt: skip
        new = np.flatnonzero(numbers == highest + 1)
        if not len(new):
            return
        stop = self.next + len(new)
        for number, (embeddings, name), index in zip(range(self.next, stop), self.embeddings.names(self.next, stop), new.tolist()):
            if name != block.frame_ids[index]:
                raise InputError(
                    embeddings.path, f"{self.embeddings.kind} sequence {number} is named '{name}', but the first frame with it in "
                    f"{frames_path} is '{block.frame_ids[index]}': not the embeddings of this sample's shards", name,
                )  # fmt: skip
        self.next = stop


def frame_shard_of(manifest: Sequence[Shard], manifest_path: str | Path, frames_path: str | Path, first_id: str | None) -> Shard:
    """The frame shard of P.shards.tsv whose first frame is ``first_id``."""
    if first_id is None:
        raise InputError(frames_path, "holds no frames: prepare_frames.py writes no empty frame shard")
    shard = next((shard for shard in shards_of(manifest, FRAMES) if shard.first_id == first_id), None)
    if shard is None:
        raise InputError(frames_path, f"its first frame begins no frame shard of {manifest_path}", first_id)
    return shard


def check_input_dim(model: MLPClassifier, classifier_path: str | Path, dnabert: EmbeddingSet, esm: EmbeddingSet) -> None:
    if model.input_dim != dnabert.dim + esm.dim:
        raise VirNucProError(
            f"{classifier_path}: the classifier takes {model.input_dim} input dimensions but the embeddings "
            f"give {dnabert.dim + esm.dim} (DNABERT {dnabert.dim} + ESM {esm.dim}): models and classifier do not match"
        )


@torch.inference_mode()
def probabilities(model: MLPClassifier, features: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax over the two classes in fp32, one row per feature row."""
    logits = model(torch.from_numpy(features).to(device))
    return torch.softmax(logits, dim=1).cpu().numpy()


def prediction_rows(frame_ids: Sequence[str], scores: np.ndarray) -> str:
    """The original's prediction_results.txt rows: str() of each float32 probability. The label is
    the first index of the largest probability, as the original's torch.max gives (others on a tie)."""
    labels = scores.argmax(axis=1).tolist()
    return "".join(
        f"{frame_id}\t{LABELS[label]}\t{str(others)}\t{str(virus)}\n"  # str(): f"{np.float32}" prints the float64 digits
        for frame_id, label, others, virus in zip(frame_ids, labels, scores[:, 0], scores[:, 1])
    )


@dataclass(frozen=True)
class ShardInputs:
    """A frame shard and what scoring it reads: the sample's P.shards.tsv and embedding sets."""

    frames_path: str
    manifest_path: str
    manifest: Sequence[Shard]
    dnabert: EmbeddingSet
    esm: EmbeddingSet


def score_frames(model: MLPClassifier, classifier_path: str | Path, inputs: ShardInputs, device: torch.device, out: IO[str]) -> int:
    """Write the header and a prediction row per frame of the shard to ``out``; returns the number of frames.

    Each frame's features are its DNABERT-S and ESM-2 embeddings, found by its sequence numbers.
    The frame IDs are hashed as read and must give the shard's ids_sha256 and count at the end,
    and its new sequences must bring the numbers P.shards.tsv gives the next shard; otherwise the
    rows already written are not this shard's (the caller's output must then be discarded).
    """
    model = model.to(device=device, dtype=torch.float32).eval()
    dnabert, esm = inputs.dnabert, inputs.esm
    blocks = read_frame_blocks(inputs.frames_path, ROWS_PER_BATCH)
    block = next(blocks, None)
    shard = frame_shard_of(inputs.manifest, inputs.manifest_path, inputs.frames_path, block.frame_ids[0] if block else None)
    new = [NewSequences(dnabert, shard.dnabert_start), NewSequences(esm, shard.esm_start)]
    features = np.empty((min(ROWS_PER_BATCH, shard.items), dnabert.dim + esm.dim), dtype=np.float32)
    digest = FrameIdDigest()
    out.write(PREDICTION_HEADER)
    while block is not None:
        digest.update(block.frame_ids)
        if digest.count > shard.items:
            break
        for sequences in new:
            sequences.check(inputs.frames_path, block)
        batch = features[: len(block.frame_ids)]
        dnabert.gather(block.dnabert, batch[:, : dnabert.dim])
        esm.gather(block.esm, batch[:, dnabert.dim :])
        scores = probabilities(model, batch, device)
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
        if len(bad):
            raise InputError(classifier_path, "gives a score that is not finite (weights too large for fp32)", block.frame_ids[bad[0]])
        out.write(prediction_rows(block.frame_ids, scores))
        block = next(blocks, None)
    if digest.count != shard.items or digest.hexdigest() != shard.ids_sha256:
        raise InputError(inputs.frames_path, f"does not hold the {shard.items} frames of shard {shard.name} (their IDs do not hash to its "
                                             f"ids_sha256 in {inputs.manifest_path}): altered, or of another prepare_frames.py run")  # fmt: skip
    frame_shards = shards_of(inputs.manifest, FRAMES)
    following = frame_shards[frame_shards.index(shard) + 1 :]
    expected = (following[0].dnabert_start, following[0].esm_start) if following else (dnabert.count, esm.count)
    if (new[0].next, new[1].next) != expected:
        raise InputError(inputs.frames_path, f"brings sequences up to ({new[0].next}, {new[1].next}) (DNABERT-S, ESM-2) where "
                                             f"{inputs.manifest_path} says ({expected[0]}, {expected[1]}): its sequence numbers are not prepare_frames.py's")  # fmt: skip
    return digest.count
