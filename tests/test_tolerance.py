"""The comparison policy of tests/tolerance.py can fail: what it lets through and what it does not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tolerance import TieFlip, assert_chunk_calls_match, assert_embeddings_match, assert_predictions_match

HEADER = "Sequence_ID\tPrediction\tscore1\tscore2\n"
ORIGINAL = [("s_chunk_1F1", "virus", 0.2, 0.8), ("s_chunk_1R1", "others", 0.50004, 0.49996), ("s_chunk_2F2", "others", 0.7, 0.3)]


def predictions(path, rows):
    path.write_text(HEADER + "".join(f"{frame}\t{label}\t{others}\t{virus}\n" for frame, label, others, virus in rows))
    return path


def chunk_calls(path, rows):
    path.write_text("Modified_ID\tIs_Virus\n" + "".join(f"{chunk}\t{call}\n" for chunk, call in rows))
    return path


def changed(row: int, **values) -> list[tuple]:
    rows = [list(line) for line in ORIGINAL]
    for column, value in values.items():
        rows[row][("frame", "label", "others", "virus").index(column)] = value
    return [tuple(line) for line in rows]


@pytest.fixture
def original(tmp_path):
    return predictions(tmp_path / "original.txt", ORIGINAL)


def test_scores_within_the_tolerance_pass_silently(tmp_path, original):
    near = changed(0, others=0.20009, virus=0.79991)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_predictions_match(predictions(tmp_path / "near.txt", near), original)


@pytest.mark.parametrize("rows", [
    changed(0, others=0.2002, virus=0.7998),  # a score beyond 1e-4
    changed(0, label="others"),  # a label flip without a tie
    changed(2, frame="s_chunk_2F3"),  # another frame
    [ORIGINAL[1], ORIGINAL[0], ORIGINAL[2]],  # another order
    ORIGINAL[:2],  # a missing row
], ids=["score", "label", "frame", "order", "missing"])
def test_anything_else_fails(tmp_path, original, rows):
    with pytest.raises(AssertionError):
        assert_predictions_match(predictions(tmp_path / "mine.txt", rows), original)


def test_a_tie_may_go_either_way_and_is_reported(tmp_path, original):
    flipped = changed(1, label="virus", others=0.49996, virus=0.50004)
    with pytest.warns(TieFlip, match="s_chunk_1R1 virus"):
        assert_predictions_match(predictions(tmp_path / "flipped.txt", flipped), original)


def test_chunk_calls_flip_only_where_the_chunk_maxima_tie(tmp_path, original):
    # chunk 1: highest score1 0.50004, highest score2 0.8: no tie; chunk 2: 0.7 against 0.3
    expected = chunk_calls(tmp_path / "expected.csv", [("s_chunk_1", "True"), ("s_chunk_2", "False")])
    wrong = chunk_calls(tmp_path / "wrong.csv", [("s_chunk_1", "True"), ("s_chunk_2", "True")])
    with pytest.raises(AssertionError, match="s_chunk_2"):
        assert_chunk_calls_match(wrong, expected, original, original)
    tied = predictions(tmp_path / "tied.txt", changed(2, others=0.50002, virus=0.49998))
    with pytest.warns(TieFlip, match="s_chunk_2 True"):
        assert_chunk_calls_match(wrong, expected, tied, original)


def test_embeddings_are_matched_by_frame_within_the_tolerance(tmp_path):
    expected = tmp_path / "expected.npz"
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(expected, ids=np.array(["a", "b", "c"]), embeddings=vectors)
    assert_embeddings_match(["c", "a", "b"], vectors[[2, 0, 1]] + 9e-5, expected)
    with pytest.raises(AssertionError):
        assert_embeddings_match(["a", "b", "c"], vectors + 2e-4, expected)
    with pytest.raises(AssertionError):
        assert_embeddings_match(["a", "b"], vectors[:2], expected)
