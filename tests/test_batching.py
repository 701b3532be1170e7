"""The embedder skeleton's batching (embedding.py): padding stays within a tenth of the real
tokens for any length mix and budget, batches are built in a thread ahead of the forward
passes, every sequence gets its own vector whatever the windows and splits, and a failure in
either thread, or SIGTERM, ends the task in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import embed_esm
from conftest import BIN, run_main
from virnucpro import embedding, esm
from virnucpro.embedding import Embedder, embed_token_ids, token_budget_batches
from virnucpro.errors import VirNucProError

CPU = torch.device("cpu")


class SumEmbedder(Embedder):
    """A stand-in model: each sequence's vector is (sum of its ids, its length), whatever batch it
    is in; ``on_collate`` and ``on_forward`` see each batch's lengths."""

    def __init__(self, on_collate=None, on_forward=None) -> None:
        super().__init__(torch.nn.Identity())
        self.on_collate, self.on_forward = on_collate, on_forward

    @property
    def dim(self) -> int:
        return 2

    def preprocess(self, sequences):
        return [np.frombuffer(sequence.encode(), dtype=np.uint8).astype(np.int64) for sequence in sequences]

    def tokens(self, token_ids) -> int:
        return len(token_ids) + 2

    def collate(self, batch, device):
        if self.on_collate:
            self.on_collate(batch)
        return embedding.padded_batch(batch, 0, device)

    def forward(self, inputs, device):
        tokens, lengths = inputs
        if self.on_forward:
            self.on_forward(lengths)
        return torch.stack([tokens.sum(dim=1).float(), lengths.float()], dim=1)


def expected(token_ids) -> np.ndarray:
    return np.array([[ids.sum(), len(ids)] for ids in token_ids], dtype=np.float32)


def random_ids(rng: np.random.Generator, lengths) -> list[np.ndarray]:
    return [rng.integers(1, 30, size=int(length)) for length in lengths]


LENGTH_MIXES = {
    "uniform 50-170": lambda rng, n: rng.integers(50, 171, n),
    "frames of 300 and 500 bp chunks": lambda rng, n: np.where(rng.random(n) < 0.5, 100, 166) - rng.integers(0, 60, n) * (rng.random(n) < 0.15),
    "1 to 1000": lambda rng, n: rng.integers(1, 1001, n),
    "geometric": lambda rng, n: np.round(2 ** rng.uniform(0, 11, n)).astype(int),
    "two lengths far apart": lambda rng, n: rng.choice([3, 1000], n),
    "one long, many short": lambda rng, n: np.array([5000] + [20] * (n - 1)),
    "all equal": lambda rng, n: np.full(n, 166),
}


@pytest.mark.parametrize("mix", LENGTH_MIXES)
def test_padding_is_at_most_a_tenth_of_the_real_tokens(mix):
    rng = np.random.default_rng(5)
    for count in (1, 2, 7, 200, 3000):
        tokens = (LENGTH_MIXES[mix](rng, count) + 2).tolist()
        for budget in (1, 64, 2048, 65536, 10**9):
            batches = token_budget_batches(tokens, budget)
            assert sorted(index for batch in batches for index in batch) == list(range(count))
            padded = 0
            for batch in batches:
                longest = max(tokens[index] for index in batch)
                assert len(batch) * longest <= budget or len(batch) == 1  # within the budget, or one sequence alone
                assert len(batch) * longest <= 1.1 * sum(tokens[index] for index in batch)
                padded += len(batch) * longest
            assert padded <= 1.1 * sum(tokens)
            if mix == "all equal":  # no padding to avoid: as few batches as the budget allows
                assert len(batches) == -(-count // max(1, budget // tokens[0]))


@pytest.mark.parametrize("window, ahead", [(embedding.WINDOW, embedding.BATCHES_AHEAD), (5, 1), (1, 3)])
def test_every_sequence_gets_its_own_vector_whatever_the_windows(monkeypatch, window, ahead):
    monkeypatch.setattr(embedding, "WINDOW", window)
    monkeypatch.setattr(embedding, "BATCHES_AHEAD", ahead)
    token_ids = random_ids(np.random.default_rng(1), np.random.default_rng(2).integers(1, 200, 61))
    vectors, stats = embedding.embed_sequences(SumEmbedder(), lambda start, stop: token_ids[start:stop], len(token_ids), CPU, 500)
    np.testing.assert_array_equal(vectors, expected(token_ids))
    assert stats.tokens == sum(len(ids) + 2 for ids in token_ids) <= stats.padded_tokens <= 1.1 * stats.tokens
    assert stats.batches >= -(-len(token_ids) // window)


def test_batches_are_built_ahead_of_the_forward_passes():
    """Each forward pass waits until the next batch has been built: without a thread building
    batches ahead it would wait in vain (and fail after 30 s)."""
    built = threading.Condition()
    collated, forwards = [], []

    def count_built(batch) -> None:
        with built:
            collated.append(len(batch))
            built.notify_all()

    def next_batch_built(lengths) -> None:
        forwards.append(len(lengths))
        if len(forwards) < batches:
            with built:
                assert built.wait_for(lambda: len(collated) > len(forwards), timeout=30), "the next batch was not built while the device worked"

    token_ids = random_ids(np.random.default_rng(3), [10] * 40)
    batches = len(token_budget_batches([len(ids) + 2 for ids in token_ids], 48))
    vectors = embed_token_ids(SumEmbedder(on_collate=count_built, on_forward=next_batch_built), token_ids, CPU, 48)
    assert len(forwards) == len(collated) == batches == 10
    np.testing.assert_array_equal(vectors, expected(token_ids))


def test_out_of_memory_splits_a_batch_and_keeps_every_vector():
    def too_big(lengths) -> None:
        if len(lengths) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    token_ids = random_ids(np.random.default_rng(4), [7, 7, 7, 6, 6, 7, 7, 7])
    vectors, stats = embedding.embed_sequences(SumEmbedder(on_forward=too_big), lambda a, b: token_ids[a:b], len(token_ids), CPU, 10**6)
    np.testing.assert_array_equal(vectors, expected(token_ids))
    assert stats.batches == 4  # 8 -> 4 + 4 -> 2 + 2 + 2 + 2


def run_embed_esm(reference, tmp_path, monkeypatch, collate) -> tuple[int, str]:
    """embed_esm.py's main, in this process as the script runs it, with ``collate`` in place of
    the ESM-2 embedder's (called in the thread that builds batches)."""
    monkeypatch.setattr(esm.ESMEmbedder, "collate", collate)
    monkeypatch.setattr(embedding, "WINDOW", 16)
    return run_main(embed_esm, ["--fasta", str(reference / "identified_protein300.faa"), "--model", str(reference / "models" / "esm2_t36_tiny_UR50D.pt"),
                                "--out", str(tmp_path / "out.h5"), "--device", "cpu", "--batch-tokens", "300", "--no-progress", "--quiet"])  # fmt: skip


@pytest.mark.parametrize(
    "error, status, message",
    [(MemoryError(), 137, "out of memory"), (VirNucProError("shard.faa: a failure while building batches"), 1, "a failure while building batches")],
    ids=["memory", "virnucpro-error"],
)
def test_an_error_while_building_batches_ends_the_task_in_one_line(reference, tmp_path, monkeypatch, error, status, message):
    calls = []
    collate = esm.ESMEmbedder.collate

    def failing(self, batch, device):
        calls.append(len(batch))
        if len(calls) == 3:
            raise error
        return collate(self, batch, device)

    code, stderr = run_embed_esm(reference, tmp_path, monkeypatch, failing)
    assert code == status, stderr
    assert len(stderr.strip().splitlines()) == 1 and message in stderr and "Traceback" not in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []


# embed_dnabert.py whose forward passes take a second each; the first one touches the marker (to
# say the loop has started). argv: marker, bin folder, the script and its arguments.
SLOW_FORWARD = """
import runpy, sys, time
from pathlib import Path
marker = Path(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from virnucpro import dnabert
forward = dnabert.DNABertEmbedder.forward
def slow(self, inputs, device):
    marker.touch()
    time.sleep(1)
    return forward(self, inputs, device)
dnabert.DNABertEmbedder.forward = slow
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sigterm_during_the_forward_passes_exits_143_leaving_nothing(reference, tmp_path):
    marker, out = tmp_path / "started", tmp_path / "out" / "x.h5"
    command = [sys.executable, "-c", SLOW_FORWARD, str(marker), str(BIN), str(BIN / "embed_dnabert.py"),
               "--fasta", str(reference / "identified_nucleotide300.fa"), "--model", str(reference / "models" / "dnabert_s_tiny"),
               "--out", str(out), "--device", "cpu", "--batch-tokens", "500", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = 120
        while not marker.exists() and deadline > 0 and process.poll() is None:
            threading.Event().wait(0.2)
            deadline -= 0.2
        assert marker.exists(), process.stderr.read() if process.poll() is not None else "the forward passes never started"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr.strip().splitlines()[-1] and "Traceback" not in stderr
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["started"]
