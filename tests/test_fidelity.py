"""The whole chain against the original: the bin scripts run as the modules run them, on the
reference corpus with the tiny models, give the original's prediction_results.txt and
prediction_results_highestscore.csv within the suite's tolerance (tests/tolerance.py)."""

from __future__ import annotations

import pytest

from conftest import run_script
from tolerance import assert_chunk_calls_match, assert_predictions_match


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_the_chain_reproduces_the_original_result_files(reference, tmp_path, chunk_size):
    models, expected = reference / "models", reference / "expected"
    run_script("prepare_frames.py", "--fasta", reference / "input.fa", "--chunk-size", chunk_size, "--prefix", tmp_path / "S",
               "--shard-tokens", 8300)  # fmt: skip
    shards = sorted(path.stem for path in tmp_path.glob("S.[0-9]*.fna"))
    assert len(shards) == 2  # summarize joins them back into the original's order
    embed_options = ("--device", "cpu", "--precision", "fp32", "--no-progress", "--quiet")
    for shard in shards:
        run_script("embed_dnabert.py", "--fasta", tmp_path / f"{shard}.fna", "--model", models / "dnabert_s_tiny",
                   "--out", tmp_path / f"{shard}.dnabert.h5", *embed_options)  # fmt: skip
        run_script("embed_esm.py", "--fasta", tmp_path / f"{shard}.faa", "--model", models / "esm2_t36_tiny_UR50D.pt",
                   "--out", tmp_path / f"{shard}.esm.h5", *embed_options)  # fmt: skip
        run_script("classify_frames.py", "--dnabert", tmp_path / f"{shard}.dnabert.h5", "--esm", tmp_path / f"{shard}.esm.h5",
                   "--classifier", models / "classifier_tiny.pth", "--out", tmp_path / f"{shard}.predictions.tsv",
                   "--device", "cpu", "--quiet")  # fmt: skip
    run_script("summarize.py", "--sample", "S", "--predictions", *(tmp_path / f"{shard}.predictions.tsv" for shard in shards),
               "--sequences", tmp_path / "S.sequences.tsv", "--fasta", reference / "input.fa", "--outdir", tmp_path / "out",
               "--chunk-size", chunk_size, "--quiet")  # fmt: skip

    out = tmp_path / "out"
    assert_predictions_match(out / "prediction_results.txt", expected / f"prediction_results_{chunk_size}.txt")
    assert_chunk_calls_match(
        out / "prediction_results_highestscore.csv", expected / f"prediction_results_highestscore_{chunk_size}.csv",
        out / "prediction_results.txt", expected / f"prediction_results_{chunk_size}.txt",
    )  # fmt: skip
