"""The whole chain against the original: the bin scripts run as the modules run them, on the
reference corpus with the tiny models, give the original's prediction_results.txt and
prediction_results_highestscore.csv within the suite's tolerance (tests/tolerance.py)."""

from __future__ import annotations

import pytest

from conftest import run_after_prepare, run_script
from tolerance import assert_chunk_calls_match, assert_predictions_match


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_the_chain_reproduces_the_original_result_files(reference, tmp_path, chunk_size):
    expected = reference / "expected"
    run_script("prepare_frames.py", "--fasta", reference / "input.fa", "--chunk-size", chunk_size, "--prefix", tmp_path / "S",
               "--shard-tokens", 8300)  # fmt: skip
    assert len(list(tmp_path.glob("S.[0-9]*.frames.tsv"))) == 2  # summarize joins them back into the original's order
    run_after_prepare(reference, tmp_path, "S", reference / "input.fa", chunk_size)

    out = tmp_path / "results"
    assert_predictions_match(out / "prediction_results.txt", expected / f"prediction_results_{chunk_size}.txt")
    assert_chunk_calls_match(
        out / "prediction_results_highestscore.csv", expected / f"prediction_results_highestscore_{chunk_size}.csv",
        out / "prediction_results.txt", expected / f"prediction_results_{chunk_size}.txt",
    )  # fmt: skip
