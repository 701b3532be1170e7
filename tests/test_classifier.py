"""Classifier loading (safely), its refusals, and streamed frame scoring against the original's predictions."""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import classify_frames
from conftest import run_main, run_script
from tolerance import assert_predictions_match
from virnucpro import contracts
from virnucpro.classifier import MLPClassifier, load_classifier, prediction_rows, probabilities
from virnucpro.errors import InputError

ATTRIBUTES = {
    contracts.DNABERT: {"model_role": contracts.DNABERT, "model": "dnabert_s_tiny", "layer": "last", "pooling": "mean", "precision": "fp32"},
    contracts.ESM: {"model_role": contracts.ESM, "model": "esm2_t36_tiny_UR50D", "layer": 36, "pooling": "mean", "precision": "fp32"},
}
TINY_DIMS = {contracts.DNABERT: 96, contracts.ESM: 32}  # classifier_tiny.pth takes 96 + 32
FRAME_IDS = ["s_chunk_1F1", "s_chunk_1F2", "s_chunk_1R1"]


def write_embeddings(path, role, ids, vectors) -> None:
    contracts.write_embeddings(path, ids, vectors, ATTRIBUTES[role])


def digest_of(ids) -> str:
    digest = contracts.FrameIdDigest()
    digest.update(ids)
    return digest.hexdigest()


@dataclass
class Sample:
    """One frame shard, its P.shards.tsv and the sample's embedding files, as the stages before
    CLASSIFY write them."""

    frames: Path
    manifest: Path
    dnabert: list[Path]
    esm: list[Path]
    vectors: dict[str, np.ndarray]  # per model, of each sequence number
    numbers: list[int]  # each frame's sequence number (the same for both models here)

    def arguments(self) -> list[Path]:
        return [self.frames, self.manifest, self.dnabert, self.esm]


def write_sample(folder, frame_ids=FRAME_IDS, numbers=None, per_shard=None, esm_dim=TINY_DIMS[contracts.ESM], name="s", seed=0) -> Sample:
    """A sample of one frame shard: frame i has sequence ``numbers[i]`` for both models (default:
    each frame its own), numbered in order of first occurrence and named after the first frame
    with each; random embeddings of tiny dimensions, ``per_shard`` sequences per embedding shard."""
    numbers = list(range(len(frame_ids))) if numbers is None else numbers
    names = [frame_ids[numbers.index(number)] for number in range(max(numbers) + 1)]
    per_shard = per_shard or len(names)
    rng = np.random.default_rng(seed)
    frames = folder / f"{name}.0001.frames.tsv"
    frames.write_text(contracts.tsv_line(contracts.FRAME_COLUMNS) + "".join(contracts.tsv_line((i, n, n)) for i, n in zip(frame_ids, numbers)))
    table = [contracts.Shard(f"{name}.0001", contracts.FRAMES, len(frame_ids), 10, frame_ids[0], frame_ids[-1], digest_of(frame_ids), 0, 0)]
    paths, vectors = {}, {}
    for kind, dim in ((contracts.DNABERT, TINY_DIMS[contracts.DNABERT]), (contracts.ESM, esm_dim)):
        vectors[kind] = rng.standard_normal((len(names), dim), dtype=np.float32)
        paths[kind] = []
        for number, start in enumerate(range(0, len(names), per_shard), start=1):
            ids = names[start : start + per_shard]
            shard = contracts.shard_name(name, kind, number)
            paths[kind].append(folder / f"{shard}.h5")
            write_embeddings(paths[kind][-1], kind, ids, vectors[kind][start : start + per_shard])
            starts = (start, None) if kind == contracts.DNABERT else (None, start)
            table.append(contracts.Shard(shard, kind, len(ids), 10, ids[0], ids[-1], digest_of(ids), *starts))
    manifest = folder / f"{name}.shards.tsv"
    manifest.write_text(contracts.tsv_line(contracts.SHARD_COLUMNS) + "".join(map(contracts.shard_row, table)))
    return Sample(frames, manifest, paths[contracts.DNABERT], paths[contracts.ESM], vectors, numbers)


def classify(frames, manifest, dnabert, esm, classifier, out) -> tuple[int, str]:
    """classify_frames.py's main run in this process as the script runs it: (exit status, stderr)."""
    return run_main(classify_frames, ["--frames", str(frames), "--shards", str(manifest), "--dnabert", *map(str, dnabert), "--esm", *map(str, esm),
                                      "--classifier", str(classifier), "--out", str(out), "--device", "cpu", "--quiet"])  # fmt: skip


def assert_refused(tmp_path, inputs, classifier, *fragments) -> str:
    """``inputs``: a Sample, or its four arguments (frames, manifest, DNABERT files, ESM files)."""
    out = tmp_path / "z.tsv"
    status, stderr = classify(*(inputs.arguments() if isinstance(inputs, Sample) else inputs), classifier, out)
    assert status == 1, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for fragment in fragments:
        assert fragment in stderr
    assert "weights_only" not in stderr and "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".z.tsv.tmp*"))
    return stderr


def write_checkpoint(path, data_pkl: bytes) -> None:
    """A torch.save archive whose pickle is ``data_pkl``: for pickles torch.save never makes."""
    torch.save({}, path)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data_pkl if name.endswith("/data.pkl") else data)


def text(value: str) -> bytes:
    return b"X" + struct.pack("<I", len(value)) + value.encode()  # BINUNICODE


@pytest.fixture(scope="module")
def tiny_classifier(reference):
    return reference / "models" / "classifier_tiny.pth"


@pytest.fixture(scope="module")
def tiny_weights(tiny_classifier):
    return {name: value.clone() for name, value in load_classifier(tiny_classifier).state_dict().items()}


@pytest.fixture
def pair(tmp_path):
    return write_sample(tmp_path)


def test_loads_the_original_pickled_model(tiny_classifier):
    model = load_classifier(tiny_classifier)
    assert isinstance(model, MLPClassifier)
    assert not model.training
    assert model.input_dim == 128
    assert model.hidden_layer.out_features == 512 and model.output_layer.out_features == 2
    # the running statistics were taken from the file, not left at their defaults
    assert not torch.allclose(model.bn1.running_var, torch.ones(512))


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "marker"
    Exploit.marker = marker
    malicious = tmp_path / "evil.pth"
    torch.save({"hidden_layer.weight": Exploit()}, malicious)
    with pytest.raises(InputError) as error:
        load_classifier(malicious)
    assert not marker.exists()
    assert str(malicious) in str(error.value)
    assert "posix.system" in str(error.value) and "refused to load" in str(error.value) and "nothing from it was run" in str(error.value)

    result = run_script("classify_frames.py", "--frames", tmp_path / "s.0001.frames.tsv", "--shards", tmp_path / "s.shards.tsv",
                        "--dnabert", tmp_path / "x.h5", "--esm", tmp_path / "y.h5", "--classifier", malicious, "--out", tmp_path / "z.tsv",
                        check=False)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "refused to load" in result.stderr
    assert not marker.exists() and not (tmp_path / "z.tsv").exists()


def test_refuses_files_that_are_not_classifiers(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pth"):
        load_classifier(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match=r"weight\(s\) weight are not in"):
        load_classifier(other)
    with pytest.raises(InputError, match="not found"):
        load_classifier(tmp_path / "absent.pth")


def assert_same_model(model, weights) -> None:
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_accepts_a_state_dict(tmp_path, tiny_weights):
    path = tmp_path / "classifier_state.pt"
    torch.save(tiny_weights, path)  # with bn1.num_batches_tracked, which no score reads
    assert_same_model(load_classifier(path), tiny_weights)


def test_accepts_safetensors(tmp_path, tiny_weights):
    path = tmp_path / "classifier.safetensors"
    save_file({name: value.contiguous() for name, value in tiny_weights.items()}, str(path))
    assert_same_model(load_classifier(path), tiny_weights)


def pickled_model_with_extra_layer(tiny_weights):
    model = MLPClassifier(128, 512, 2, 1e-5)
    model.load_state_dict(tiny_weights)
    model.hidden2 = torch.nn.Linear(512, 512)
    return model


@pytest.mark.parametrize(
    "make, named",
    [
        (pickled_model_with_extra_layer, "hidden2 (Linear)"),
        (lambda weights: {**weights, "extra.weight": torch.zeros(3)}, "extra.weight"),
    ],
    ids=["pickled-extra-layer", "state-dict-extra-weight"],
)
def test_refuses_layers_and_weights_it_would_ignore(tmp_path, pair, tiny_weights, make, named):
    path = tmp_path / "classifier.pth"
    torch.save(make(tiny_weights), path)
    assert_refused(tmp_path, pair, path, str(path), named, "refusing")


@pytest.mark.parametrize("weight, value", [("hidden_layer.weight", float("nan")), ("bn1.running_var", float("inf"))])
def test_refuses_non_finite_weights(tmp_path, pair, tiny_weights, weight, value):
    weights = {name: tensor.clone() for name, tensor in tiny_weights.items()}
    weights[weight].view(-1)[7] = value
    path = tmp_path / "classifier.pt"
    torch.save(weights, path)
    assert_refused(tmp_path, pair, path, str(path), weight, "NaN or Inf")


@pytest.mark.parametrize(
    "make, named",
    [
        # the weights-only unpickler's scan names it
        (lambda path: torch.save({"hidden_layer.weight": np.zeros(3)}, path), "numpy._core.multiarray._reconstruct"),
        # torch refuses it itself (module sys is blocked), with advice to use weights_only=False
        (lambda path: write_checkpoint(path, b"\x80\x02csys\nMLPClassifier\n)\x81}b."), "sys.MLPClassifier"),
        # BUILD on a list: torch refuses the operation, not a class
        (lambda path: write_checkpoint(path, b"\x80\x02]}b."), "an operation that torch.save never writes (to a list)"),
    ],
    ids=["scanned", "torch-refused", "torch-refused-operation"],
)
def test_refused_pickles_are_named_without_torch_advice(tmp_path, pair, make, named):
    path = tmp_path / "classifier.pth"
    make(path)
    assert_refused(tmp_path, pair, path, str(path), named, "refused to load")


def cyclic_model() -> MLPClassifier:
    model = MLPClassifier(128, 512, 2, 1e-5)
    model._modules["again"] = model
    return model


def cyclic_layer() -> MLPClassifier:
    model = MLPClassifier(128, 512, 2, 1e-5)
    model.hidden_layer._modules["again"] = model.hidden_layer
    return model


def deeply_nested_layers(depth: int = 20000) -> bytes:
    linear = b"ctorch.nn.modules.linear\nLinear\n)\x81}"
    chain = (linear + text("_modules") + b"}" + text("inner")) * depth + linear + b"b" + b"ssb" * depth
    return b"\x80\x02c__main__\nMLPClassifier\n)\x81}" + text("_modules") + b"}" + text("hidden_layer") + chain + b"ssb."


@pytest.mark.parametrize(
    "save, named",
    [
        (lambda path: torch.save(cyclic_model(), path), "again (MLPClassifier)"),
        (lambda path: torch.save(cyclic_layer(), path), "layer hidden_layer has sublayers"),
        (lambda path: write_checkpoint(path, deeply_nested_layers()), "layer hidden_layer has sublayers"),
    ],
    ids=["model-contains-itself", "layer-contains-itself", "20000-levels"],
)
def test_cyclic_or_deep_module_trees_are_one_line(tmp_path, pair, save, named):
    path = tmp_path / "classifier.pth"
    save(path)
    stderr = assert_refused(tmp_path, pair, path, str(path), named)
    assert "Recursion" not in stderr


def replace_with_group(path) -> None:
    with h5py.File(path, "a") as handle:
        del handle["embeddings"]
        handle.create_group("embeddings")


def break_utf8(path) -> None:
    with h5py.File(path, "a") as handle:
        handle["ids"][1] = b"s_chunk_1\xff2"


def drop_pooling(path) -> None:
    with h5py.File(path, "a") as handle:
        del handle.attrs["pooling"]


def put_nan(path) -> None:
    with h5py.File(path, "a") as handle:
        handle["embeddings"][2, 5] = np.nan


def set_attribute(name, value):
    def damage(path) -> None:
        with h5py.File(path, "a") as handle:
            handle.attrs[name] = value

    return damage


def store_in_chunks(path) -> None:
    with h5py.File(path, "a") as handle:
        vectors = handle["embeddings"][:]
        del handle["embeddings"]
        handle.create_dataset("embeddings", data=vectors, chunks=(1, vectors.shape[1]), compression="gzip")


def cut_short(path) -> None:
    with h5py.File(path) as handle:
        end = handle["embeddings"].id.get_offset() + handle["embeddings"].id.get_storage_size()
    with open(path, "r+b") as handle:
        handle.truncate(end - 10)
@pytest.mark.parametrize(
    "damage, fragments",
    [
        (set_attribute("dim", "ninety-six"), ["attribute dim 'ninety-six' is not an integer"]),
        (set_attribute("dim", 2.5), ["attribute dim 2.5 is not an integer"]),
        (set_attribute("dim", -96), ["attribute dim -96 is below 1"]),
        (set_attribute("dim", 2**40), ["attribute dim 1099511627776 is above 1048576"]),
        (set_attribute("dim", [96, 96]), ["attribute dim"]),
        (set_attribute("ids_sha256", 7), ["attribute ids_sha256 7 is not a SHA-256"]),
        (replace_with_group, ["'embeddings' is not a dataset"]),
        (break_utf8, ["row 1 is not UTF-8"]),
        (drop_pooling, ["lacks the attribute(s) pooling"]),
        (put_nan, ["row 2 holds NaN or Inf", "s_chunk_1R1"]),
        (store_in_chunks, ["'embeddings' is not stored contiguously"]),
        (cut_short, ["truncated"]),
    ],
    ids=["dim-text", "dim-float", "dim-negative", "dim-huge", "dim-array", "digest-number", "group", "not-utf8", "missing-attribute", "nan",
         "chunked", "truncated"],
)
@pytest.mark.parametrize("role", [contracts.DNABERT, contracts.ESM])
def test_damaged_embedding_files_are_one_line(tmp_path, pair, tiny_classifier, damage, fragments, role):
    damaged = pair.dnabert[0] if role == contracts.DNABERT else pair.esm[0]
    damage(damaged)
    assert_refused(tmp_path, pair, tiny_classifier, str(damaged), *fragments)


CLAIMED_ROWS = 5_000_000


def claiming_file(path, role, layout) -> None:
    """An embeddings file whose attributes are all in order and whose datasets declare
    CLAIMED_ROWS rows, of which it holds three, or none, or holds them elsewhere."""
    ids, dim = FRAME_IDS, TINY_DIMS[role]
    digest = contracts.FrameIdDigest()
    digest.update(ids)
    with h5py.File(path, "w") as handle:
        strings = h5py.string_dtype("utf-8")
        if layout == "missing-chunks":  # chunks never written read as the fill value: empty IDs, zero vectors
            handle.create_dataset("ids", shape=(CLAIMED_ROWS,), dtype=strings, chunks=(1024,), maxshape=(None,))[:3] = ids
            handle.create_dataset("embeddings", shape=(CLAIMED_ROWS, dim), dtype="f4", chunks=(1024, dim), maxshape=(None, dim))[:3] = 1.0
        elif layout == "unallocated":  # contiguous storage is allocated when first written
            handle.create_dataset("ids", shape=(CLAIMED_ROWS,), dtype=strings)
            handle.create_dataset("embeddings", shape=(CLAIMED_ROWS, dim), dtype="f4")
        elif layout == "external":
            handle.create_dataset("ids", data=ids, dtype=strings)
            raw = path.with_suffix(".raw")
            raw.write_bytes(np.ones((3, dim), dtype="f4").tobytes())
            handle.create_dataset("embeddings", shape=(CLAIMED_ROWS, dim), dtype="f4", external=[(raw.name, 0, h5py.h5f.UNLIMITED)])
        else:  # virtual: three rows mapped from another file, the rest the fill value
            handle.create_dataset("ids", data=ids, dtype=strings)
            with h5py.File(path.with_suffix(".source.h5"), "w") as source:
                source.create_dataset("rows", data=np.ones((3, dim), dtype="f4"))
            layout_ = h5py.VirtualLayout(shape=(CLAIMED_ROWS, dim), dtype="f4")
            layout_[:3] = h5py.VirtualSource(path.with_suffix(".source.h5").name, "rows", shape=(3, dim))
            handle.create_virtual_dataset("embeddings", layout_, fillvalue=0)
        handle.attrs.update({**ATTRIBUTES[role], "dtype": "float32", "dim": dim, "ids_sha256": digest.hexdigest()})


@pytest.mark.parametrize(
    "layout, named",
    [
        ("missing-chunks", f"dataset 'ids' of shape ({CLAIMED_ROWS},) needs 4,883 chunks but stores 1"),
        ("unallocated", f"dataset 'ids' of shape ({CLAIMED_ROWS},) declares 40,000,000 bytes but stores 0"),
        ("external", "dataset 'embeddings' of shape (5000000, {dim}) keeps its data in external file(s)"),
        ("virtual", "dataset 'embeddings' of shape (5000000, {dim}) is a virtual dataset"),
    ],
)
@pytest.mark.parametrize("role", [contracts.DNABERT, contracts.ESM])
def test_datasets_not_backed_by_data_are_refused_when_opened(tmp_path, pair, tiny_classifier, layout, named, role):
    """Millions of declared rows that the file does not hold: refused when opened, from the
    file's index alone, instead of scored as fill values for hours."""
    path = tmp_path / f"claims_{role}.h5"
    claiming_file(path, role, layout)
    with pytest.raises(InputError) as error:
        contracts.EmbeddingFile(path, role)
    assert str(error.value).startswith(f"{path}: ") and named.format(dim=TINY_DIMS[role]) in str(error.value)
    dnabert, esm = ([path], pair.esm) if role == contracts.DNABERT else (pair.dnabert, [path])
    assert_refused(tmp_path, [pair.frames, pair.manifest, dnabert, esm], tiny_classifier, str(path), "not a file the embedders wrote whole")


def test_swapped_embedding_files_are_refused(tmp_path, pair, tiny_classifier):
    assert_refused(tmp_path, [pair.frames, pair.manifest, pair.esm, pair.dnabert], tiny_classifier, str(pair.esm[0]), "swapped")


def test_dimension_mismatch_names_both_numbers(tmp_path, tiny_classifier):
    assert_refused(tmp_path, write_sample(tmp_path, esm_dim=40), tiny_classifier, "128", "136", "DNABERT 96 + ESM 40")


REPEATS = [0, 1, 0, 2, 1, 3, 3, 0, 4, 2]  # the first frame with each sequence: 0, 1, 3, 5, 8
REPEATED_IDS = [f"r{row}_chunk_1F1" for row in range(len(REPEATS))]


def test_a_missing_repeated_or_foreign_embedding_file_is_refused(tmp_path, tiny_classifier):
    sample = write_sample(tmp_path, REPEATED_IDS, REPEATS, per_shard=2)  # three shards of each model
    frames, manifest, dnabert, esm = sample.arguments()
    assert_refused(tmp_path, [frames, manifest, dnabert[::2], esm], tiny_classifier, str(manifest), "no DNABERT-S embeddings for shard(s) s.dnabert.0002")
    assert_refused(tmp_path, [frames, manifest, dnabert, [*esm, esm[1]]], tiny_classifier, str(esm[1]), "holds the ESM-2 embeddings of shard s.esm.0002, which")
    # the same sequences cut into other shards, as another PREPARE run would: not this sample's
    (tmp_path / "other").mkdir()
    other = write_sample(tmp_path / "other", REPEATED_IDS, REPEATS, per_shard=3)
    assert_refused(tmp_path, [frames, manifest, [*dnabert[:2], other.dnabert[1]], esm], tiny_classifier, str(other.dnabert[1]),
                   "holds the DNABERT-S embeddings of no dnabert shard of", "another prepare_frames.py run")  # fmt: skip


def swap_ids(rows: list[str], first: int, second: int) -> None:
    (a, *a_numbers), (b, *b_numbers) = rows[first].split("\t"), rows[second].split("\t")
    rows[first], rows[second] = "\t".join([b, *a_numbers]), "\t".join([a, *b_numbers])


@pytest.mark.parametrize(
    "edit, named",
    [
        # a frame PREPARE never wrote: found by the hash of the shard's frame IDs
        (lambda rows: rows.__setitem__(4, "r9_chunk_1F1\t1\t1"), ["does not hold the 10 frames of shard s.0001"]),
        # a frame that skips a sequence number
        (lambda rows: rows.__setitem__(1, "r1_chunk_1F1\t2\t2"), ["row 2: dnabert sequence 2 where at most 1 can come", "r1_chunk_1F1"]),
        # two frames swapped: a new sequence is not named after the frame that brings it
        (lambda rows: swap_ids(rows, 1, 3), ["dnabert sequence 1 is named 'r1_chunk_1F1'", "in", "is 'r3_chunk_1F1'"]),
        (lambda rows: rows.__delitem__(slice(5, None)), ["does not hold the 10 frames of shard s.0001"]),
    ],
    ids=["other-frame", "skips-ahead", "swapped-frames", "truncated"],
)
def test_a_frame_shard_other_than_prepares_is_refused(tmp_path, tiny_classifier, edit, named):
    sample = write_sample(tmp_path, REPEATED_IDS, REPEATS, per_shard=2)
    header, *rows = sample.frames.read_text().splitlines()
    edit(rows)
    sample.frames.write_text("\n".join([header, *rows]) + "\n")
    assert_refused(tmp_path, sample, tiny_classifier, *named)


def test_frames_that_bring_fewer_sequences_than_embedded_are_refused(tmp_path, tiny_classifier):
    """The embeddings hold a sixth sequence that no frame brings: the frames are not PREPARE's."""
    ids = [*REPEATED_IDS, "r10_chunk_1F1"]
    sample = write_sample(tmp_path, ids, [*REPEATS, 5], per_shard=2)
    header, *rows = sample.frames.read_text().splitlines()
    sample.frames.write_text("\n".join([header, *rows[:-1]]) + "\n")
    manifest = sample.manifest.read_text()
    sample.manifest.write_text(manifest.replace(f"\t11\t10\t{ids[0]}\t{ids[-1]}\t{digest_of(ids)}", f"\t10\t10\t{ids[0]}\t{ids[-2]}\t{digest_of(ids[:-1])}"))
    assert_refused(tmp_path, sample, tiny_classifier, str(sample.frames), "brings sequences up to (5, 5)", "says (6, 6)")


def test_streams_a_shard_of_several_batches_reading_repeats_once(tmp_path, tiny_classifier):
    rng = np.random.default_rng(3)
    ids = [f"s{row}_chunk_1F1" for row in range(5000)]  # one full batch of 4096 rows and a partial one
    numbers, seen = [], 0
    for _ in ids:  # a third repeat an earlier sequence, from anywhere before
        numbers.append(int(rng.integers(0, seen)) if seen and rng.random() < 1 / 3 else seen)
        seen = max(seen, numbers[-1] + 1)
    sample = write_sample(tmp_path, ids, numbers, per_shard=700)
    out = tmp_path / "predictions.tsv"
    assert classify(*sample.arguments(), tiny_classifier, out) == (0, "")
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ids
    features = np.concatenate([sample.vectors[kind][numbers] for kind in (contracts.DNABERT, contracts.ESM)], axis=1)
    expected = probabilities(load_classifier(tiny_classifier), features, torch.device("cpu"))
    np.testing.assert_allclose(np.array([row[2:] for row in rows], dtype=np.float32), expected, atol=1e-6, rtol=0)


def test_scores_that_overflow_fp32_are_refused(tmp_path, pair, tiny_weights):
    weights = {name: tensor.clone() for name, tensor in tiny_weights.items()}
    weights["bn1.weight"].zero_()
    weights["bn1.bias"].fill_(3e38)  # finite, but 512 of them sum to Inf in both logits
    weights["output_layer.weight"].fill_(1.0)
    path = tmp_path / "classifier.pt"
    torch.save(weights, path)
    assert_refused(tmp_path, pair, path, str(path), "not finite", "s_chunk_1F1")


@pytest.mark.parametrize("chunk_size", [300, 500])
def test_reproduces_the_original_predictions(tmp_path, reference, tiny_classifier, chunk_size):
    """The original's embeddings as the embedders write them (each frame its own sequence: the
    corpus repeats none) give its prediction_results.txt."""
    expected_dir = reference / "expected"
    dnabert, esm = (np.load(expected_dir / f"{model}_{chunk_size}.npz") for model in ("dnabert", "esm"))
    ids = [str(frame_id) for frame_id in dnabert["ids"]]
    sample = write_sample(tmp_path, ids, per_shard=50)
    # the original's ESM embeddings come sorted by protein length; the pipeline's in frame order
    esm_row = {str(frame_id): row for row, frame_id in enumerate(esm["ids"])}
    for kind, data, order in ((contracts.DNABERT, dnabert, range(len(ids))), (contracts.ESM, esm, [esm_row[i] for i in ids])):
        paths = sample.dnabert if kind == contracts.DNABERT else sample.esm
        for number, path in enumerate(paths):
            rows = list(order)[50 * number : 50 * number + 50]
            write_embeddings(path, kind, ids[50 * number : 50 * number + 50], data["embeddings"][rows])
    out = tmp_path / "predictions.tsv"
    run_script("classify_frames.py", "--frames", sample.frames, "--shards", sample.manifest, "--dnabert", *sample.dnabert,
               "--esm", *sample.esm, "--classifier", tiny_classifier, "--out", out, "--device", "cpu")  # fmt: skip
    assert_predictions_match(out, expected_dir / f"prediction_results_{chunk_size}.txt")
    # each score in the original's text form: str() of the float32, its shortest repr
    scores = [score for line in out.read_text().splitlines()[1:] for score in line.split("	")[2:]]
    assert scores == [str(np.float32(score)) for score in scores]


@pytest.mark.parametrize("virus_logit, label", [(1e-8, "others"), (2.0, "virus"), (-2.0, "others")])
def test_label_is_the_first_largest_probability_as_the_original(virus_logit, label):
    # logits 0 and 1e-8 differ, but their fp32 probabilities are both 0.5: torch.max over the
    # probabilities (the original) says others, an argmax over the logits would say virus
    model = MLPClassifier(1, 1, 2, 1e-5).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.output_layer.bias.copy_(torch.tensor([0.0, virus_logit]))
    scores = probabilities(model, np.zeros((1, 1), np.float32), torch.device("cpu"))
    assert prediction_rows(["s_chunk_1F1"], scores).split("\t")[1] == label
