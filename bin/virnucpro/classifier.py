"""The VirNucPro MLP classifier: safe loading of the original checkpoints and frame scoring.

The published ``300_model.pth`` / ``500_model.pth`` are whole ``MLPClassifier`` objects pickled
with ``torch.save(model)``. Unpickling them normally would import and run whatever the pickle
names, so they are read with torch's weights-only unpickler, with the few classes such a file
references mapped to an inert stand-in that only records its state; the weights are then taken
from that state and loaded into our own module.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .embedding import Embeddings
from .errors import InputError, VirNucProError
from .summary import LABELS, PREDICTION_HEADER
DEFAULT_BATCH_EPS = 1e-5  # torch.nn.BatchNorm1d's default, used when the file does not say
ROWS_PER_BATCH = 4096

# torch.nn classes the original MLPClassifier is built from: they become stand-ins, never imported.
ALLOWED_MODULE_CLASSES = frozenset(
    {
        "torch.nn.modules.linear.Linear",
        "torch.nn.modules.batchnorm.BatchNorm1d",
        "torch.nn.modules.dropout.Dropout",
        "torch.nn.modules.activation.ReLU",
    }
)
# The original class is defined in whichever script saved it (__main__, train, prediction, ...).
CLASSIFIER_CLASS_NAME = "MLPClassifier"

WEIGHT_SHAPES = {
    "hidden_layer.weight": 2,
    "hidden_layer.bias": 1,
    "bn1.weight": 1,
    "bn1.bias": 1,
    "bn1.running_mean": 1,
    "bn1.running_var": 1,
    "output_layer.weight": 2,
    "output_layer.bias": 1,
}


class _PickledModule:
    """Inert stand-in for a pickled nn.Module: keeps the attribute dict, runs no code."""

    def __setstate__(self, state: dict) -> None:
        self.state = state


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


@dataclass(frozen=True)
class FramePrediction:
    frame_id: str
    label: str
    probabilities: tuple[np.float32, np.float32]


def _unsafe_globals(path: Path) -> list[str]:
    """The names a torch.save checkpoint's pickle references beyond torch's weights-only defaults."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise InputError(path, f"not a PyTorch checkpoint written by torch.save ({error})") from None


def _stand_ins_for(path: Path, names: Sequence[str]) -> list[tuple[type, str]]:
    refused = [name for name in names if name not in ALLOWED_MODULE_CLASSES and name.rpartition(".")[2] != CLASSIFIER_CLASS_NAME]
    if refused:
        raise InputError(
            path,
            f"refusing to load: the checkpoint's pickle references {', '.join(refused)}, which a "
            "VirNucPro classifier never contains (it may run arbitrary code)",
        )
    return [(_PickledModule, name) for name in names]


def _module_weights(module: _PickledModule, prefix: str = "") -> dict[str, object]:
    """Flatten a pickled module tree into a state dict (parameters and buffers by dotted name)."""
    state = getattr(module, "state", None)
    if not isinstance(state, dict):
        return {}
    weights: dict[str, object] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is not None:
                weights[f"{prefix}{name}"] = value
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _PickledModule):
            weights.update(_module_weights(child, f"{prefix}{name}."))
    return weights


def _batch_norm_eps(model: _PickledModule) -> float:
    batch_norm = (model.state.get("_modules") or {}).get("bn1")
    eps = getattr(batch_norm, "state", {}).get("eps", DEFAULT_BATCH_EPS)
    return float(eps) if isinstance(eps, (int, float)) else DEFAULT_BATCH_EPS


def _load_torch_file(path: Path) -> tuple[Mapping[str, object], float]:
    stand_ins = _stand_ins_for(path, _unsafe_globals(path))
    try:
        with torch.serialization.safe_globals(stand_ins):
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(path, f"cannot read the classifier checkpoint safely ({message})") from None
    if isinstance(loaded, _PickledModule):
        return _module_weights(loaded), _batch_norm_eps(loaded)
    if isinstance(loaded, Mapping):
        return loaded, DEFAULT_BATCH_EPS
    raise InputError(path, f"holds a {type(loaded).__name__}, not an MLPClassifier or a state dict")


def _load_safetensors(path: Path) -> Mapping[str, object]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(path, f"not a readable safetensors file ({error})") from None


def _checked_weights(path: Path, weights: Mapping[str, object]) -> dict[str, torch.Tensor]:
    missing = [name for name in WEIGHT_SHAPES if name not in weights]
    if missing:
        raise InputError(path, f"not a VirNucPro MLP classifier: missing weights {', '.join(missing)}")
    checked: dict[str, torch.Tensor] = {}
    for name, rank in WEIGHT_SHAPES.items():
        value = weights[name]
        if not isinstance(value, torch.Tensor) or value.dim() != rank:
            raise InputError(path, f"weight {name} is not a {rank}-dimensional tensor")
        checked[name] = value.detach().to(torch.float32)
    hidden_dim, _ = checked["hidden_layer.weight"].shape
    num_classes, output_inputs = checked["output_layer.weight"].shape
    if output_inputs != hidden_dim or len(checked["bn1.running_mean"]) != hidden_dim:
        raise InputError(path, "inconsistent layer sizes: hidden_layer, bn1 and output_layer do not fit together")
    if num_classes != len(LABELS):
        raise InputError(path, f"the classifier has {num_classes} outputs; VirNucPro needs {len(LABELS)} (others, virus)")
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
        weights, eps = _load_safetensors(path), DEFAULT_BATCH_EPS
    else:
        weights, eps = _load_torch_file(path)
    checked = _checked_weights(path, weights)
    hidden_dim, input_dim = checked["hidden_layer.weight"].shape
    model = MLPClassifier(input_dim, hidden_dim, len(LABELS), eps)
    model.load_state_dict(checked, strict=False)
    return model.eval()


def join_features(dnabert: Embeddings, esm: Embeddings, dnabert_path: str | Path, esm_path: str | Path) -> np.ndarray:
    """DNABERT then ESM embedding per frame, rows in the DNABERT file's order.

    Both files must hold the same frame IDs, each once.
    """
    esm_rows = {}
    for row, frame_id in enumerate(esm.ids):
        if frame_id in esm_rows:
            raise InputError(esm_path, "frame ID appears twice", frame_id)
        esm_rows[frame_id] = row
    seen: set[str] = set()
    for frame_id in dnabert.ids:
        if frame_id in seen:
            raise InputError(dnabert_path, "frame ID appears twice", frame_id)
        seen.add(frame_id)
        if frame_id not in esm_rows:
            raise InputError(esm_path, f"has no ESM embedding for this frame of {dnabert_path}", frame_id)
    for frame_id in esm.ids:
        if frame_id not in seen:
            raise InputError(dnabert_path, f"has no DNABERT embedding for this frame of {esm_path}", frame_id)
    order = [esm_rows[frame_id] for frame_id in dnabert.ids]
    return np.concatenate([dnabert.vectors, esm.vectors[order].reshape(len(order), -1)], axis=1).astype(np.float32, copy=False)


def check_input_dim(model: MLPClassifier, classifier_path: str | Path, dnabert: Embeddings, esm: Embeddings) -> None:
    dnabert_dim, esm_dim = dnabert.vectors.shape[1], esm.vectors.shape[1]
    if model.input_dim != dnabert_dim + esm_dim:
        raise VirNucProError(
            f"{classifier_path}: the classifier takes {model.input_dim} input dimensions but the embeddings "
            f"give {dnabert_dim + esm_dim} (DNABERT {dnabert_dim} + ESM {esm_dim}): models and classifier do not match"
        )


@torch.no_grad()
def predict(model: MLPClassifier, frame_ids: Sequence[str], features: np.ndarray, device: torch.device) -> list[FramePrediction]:
    """Softmax scores in fp32; the label is the first index of the largest probability, as the
    original's torch.max over the probabilities gives (on a tie in fp32: others)."""
    model = model.to(device=device, dtype=torch.float32).eval()
    predictions: list[FramePrediction] = []
    for start in range(0, len(frame_ids), ROWS_PER_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(features[start : start + ROWS_PER_BATCH])).to(device)
        logits = model(batch)
        probabilities = torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32)
        labels = probabilities.argmax(axis=1)
        for offset, (label, row) in enumerate(zip(labels, probabilities)):
            predictions.append(FramePrediction(frame_ids[start + offset], LABELS[int(label)], (row[0], row[1])))
    return predictions


def format_predictions(predictions: Sequence[FramePrediction]) -> str:
    """The original's prediction_results.txt: str() of each float32 probability."""
    lines = [PREDICTION_HEADER]
    for prediction in predictions:
        scores = "\t".join(str(np.float32(value)) for value in prediction.probabilities)
        lines.append(f"{prediction.frame_id}\t{prediction.label}\t{scores}\n")
    return "".join(lines)
