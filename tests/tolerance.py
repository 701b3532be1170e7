"""How the suite compares this pipeline's numbers with the original's: one policy, used everywhere.

Rows, frame and chunk IDs and their order are compared exactly. Scores and embeddings are compared
within 1e-4 absolute (fp32): the last bits of a float sum depend on the CPU (vector width, FMA,
threads), so a text comparison would make the verdict depend on where the suite runs. A label
(or a chunk's Is_Virus) must match too, except where the two scores it was decided from tie
within that tolerance in either file: there either answer is right, and each such flip is
reported as a TieFlip warning in pytest's summary.

Byte-for-byte comparisons stay where no arithmetic can differ: text the pipeline copies, and two
runs of this pipeline on the same machine (determinism).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCORE_TOLERANCE = 1e-4
EMBEDDING_TOLERANCE = 1e-4
PREDICTIONS_HEADER = ["Sequence_ID", "Prediction", "score1", "score2"]
CHUNK_CALLS_HEADER = ["Modified_ID", "Is_Virus"]


class TieFlip(UserWarning):
    """A label that differs from the original's where its two scores tie within SCORE_TOLERANCE."""


@dataclass(frozen=True)
class Prediction:
    frame: str
    label: str
    others: float  # score1
    virus: float  # score2


def read_predictions(path: Path) -> list[Prediction]:
    """prediction_results.txt (or a predictions.tsv of the same columns)."""
    header, *lines = [line.split("\t") for line in path.read_text().splitlines()]
    assert header == PREDICTIONS_HEADER, f"{path}: header {header}"
    return [Prediction(frame, label, float(others), float(virus)) for frame, label, others, virus in lines]


def read_chunk_calls(path: Path) -> list[tuple[str, str]]:
    """prediction_results_highestscore.csv (tab-separated): (Modified_ID, Is_Virus) rows."""
    header, *lines = [tuple(line.split("\t")) for line in path.read_text().splitlines()]
    assert list(header) == CHUNK_CALLS_HEADER, f"{path}: header {header}"
    return lines


def ties(a: float, b: float) -> bool:
    return abs(a - b) <= SCORE_TOLERANCE


def report_flips(path: Path, flips: list[str]) -> None:
    if flips:
        warnings.warn(TieFlip(f"{path.name}: {len(flips)} tie(s) decided the other way: {'; '.join(flips)}"), stacklevel=3)


def assert_predictions_match(actual_path: Path, expected_path: Path) -> None:
    """prediction_results.txt against the original's: rows exact, scores within 1e-4, labels
    exact except where the row's two scores tie (reported)."""
    actual, expected = read_predictions(actual_path), read_predictions(expected_path)
    assert [row.frame for row in actual] == [row.frame for row in expected], f"{actual_path}: other frames or order than {expected_path}"
    np.testing.assert_allclose(
        [(row.others, row.virus) for row in actual], [(row.others, row.virus) for row in expected],
        rtol=0, atol=SCORE_TOLERANCE, err_msg=f"{actual_path} against {expected_path}",
    )  # fmt: skip
    flips, wrong = [], []
    for mine, theirs in zip(actual, expected):
        if mine.label != theirs.label:
            tied = ties(mine.others, mine.virus) or ties(theirs.others, theirs.virus)
            (flips if tied else wrong).append(f"{mine.frame} {mine.label} ({mine.others}, {mine.virus}), original {theirs.label} ({theirs.others}, {theirs.virus})")
    assert not wrong, f"{actual_path}: labels differ from the original's: {wrong}"
    report_flips(actual_path, flips)


def chunk_maxima(predictions: Sequence[Prediction]) -> dict[str, tuple[float, float]]:
    """Per chunk (frame ID less its 2-letter frame), the highest score1 and score2 of its frames."""
    maxima: dict[str, tuple[float, float]] = {}
    for row in predictions:
        others, virus = maxima.get(row.frame[:-2], (-np.inf, -np.inf))
        maxima[row.frame[:-2]] = (max(others, row.others), max(virus, row.virus))
    return maxima


def assert_chunk_calls_match(actual_path: Path, expected_path: Path, actual_predictions: Path, expected_predictions: Path) -> None:
    """prediction_results_highestscore.csv against the original's: rows exact, Is_Virus exact except
    where the chunk's highest score2 and highest score1 tie (reported); the ties are read from
    the prediction files each table was made from."""
    actual, expected = read_chunk_calls(actual_path), read_chunk_calls(expected_path)
    assert [chunk for chunk, _ in actual] == [chunk for chunk, _ in expected], f"{actual_path}: other chunks or order than {expected_path}"
    mine_maxima, their_maxima = chunk_maxima(read_predictions(actual_predictions)), chunk_maxima(read_predictions(expected_predictions))
    flips, wrong = [], []
    for (chunk, mine), (_, theirs) in zip(actual, expected):
        if mine != theirs:
            tied = ties(*mine_maxima[chunk]) or ties(*their_maxima[chunk])
            (flips if tied else wrong).append(f"{chunk} {mine} {mine_maxima[chunk]}, original {theirs} {their_maxima[chunk]}")
    assert not wrong, f"{actual_path}: Is_Virus differs from the original's: {wrong}"
    report_flips(actual_path, flips)


def read_expected_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    """expected/{dnabert,esm}_N.npz: the frame IDs and float32 vectors the original wrote."""
    data = np.load(path)
    return [str(frame) for frame in data["ids"]], data["embeddings"]


def assert_embeddings_match(ids: Sequence[str], vectors: np.ndarray, expected_path: Path) -> None:
    """Every frame's vector within 1e-4 of the original's for the same frame ID; the same frames.
    (The original's ESM file is in its own length-sorted order, so rows are matched by ID.)"""
    expected_ids, expected = read_expected_embeddings(expected_path)
    row_of = {frame: row for row, frame in enumerate(expected_ids)}
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(row_of), f"other frames than {expected_path}"
    np.testing.assert_allclose(vectors, expected[[row_of[frame] for frame in ids]], rtol=0, atol=EMBEDDING_TOLERANCE, err_msg=str(expected_path))
