"""Model staging: fetch (or generate) the three models into one directory, verify them and
describe them in ``models.json``.

Layout of the output directory (a file already there is reused after verification):
- ``dnabert/<owner>--<name>/``: a Hugging Face snapshot limited to the files the embedder reads
- ``esm/<name>.pt`` and ``esm/<name>-contact-regression.pt``: a fair-esm checkpoint (the embedder reads
  only the first; the second completes fair-esm's layout for other tools)
- ``classifier/<file>``: the VirNucPro classifier
- ``checksums.sha256``: sha256 of every fetched file (``sha256sum -c`` format), written on
  first fetch and checked on reuse
- ``models.json``: ``{"dnabert"|"esm"|"classifier": {"name", "path", "sha256", "files"}}``; ``path``
  is relative to the output directory for fetched models and absolute for the user's own files,
  which are used in place (never copied); ``sha256`` is that of the weights, ``files`` maps every
  file a stage reads of the model (``contracts.model_files``) to its sha256, which the stages
  check before loading it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

from . import contracts, tiny_models
from .atomic import atomic_open, atomic_path, json_text, write_text
from .errors import InputError, VirNucProError

log = logging.getLogger("virnucpro")

CHUNK_SIZES = (300, 500)
ESM_REGRESSION_URL = "https://dl.fbaipublicfiles.com/fair-esm/regression/{name}" + contracts.ESM_REGRESSION_SUFFIX
TINY_SEEDS = {"dnabert": 11, "esm": 12, "classifier": 13}


class PublishedClassifier(NamedTuple):
    url: str
    blob_id: str  # git blob id in the VirNucPro repository: sha1(b"blob <size>\0" + bytes)


PUBLISHED_CLASSIFIERS = {
    300: PublishedClassifier("https://github.com/Li-Jing-1997/VirNucPro/raw/main/300_model.pth", "a0b5b85e7c1e44f00cde146d091beb82b2c8e855"),
    500: PublishedClassifier("https://github.com/Li-Jing-1997/VirNucPro/raw/main/500_model.pth", "fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d"),
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str
    sha256: str  # of the weights
    files: dict[str, str]  # sha256 of every file a stage reads, by its name in contracts.model_files
    test_only: bool = False  # contracts.TEST_ONLY: a tiny model of the test profile


def git_blob_id(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.sha1(b"blob %d\0" % path.stat().st_size)).hexdigest()


def model_entry(role: str, name: str, shown_path: str, path: Path) -> ModelEntry:
    """The models.json entry of the ``role`` model at ``path``: the sha256 of every file a stage
    reads of it, the weights' (the last of contracts.model_files) also as ``sha256``."""
    files = {}
    for file_name, file in contracts.model_files(role, path).items():
        if not file.is_file():
            raise InputError(file, f"missing: the {contracts.ROLE_NAMES.get(role, role)} model {path} needs it")
        files[file_name] = contracts.file_sha256(file)
    return ModelEntry(name, shown_path, files[list(files)[-1]], files)


def read_manifest(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries


def write_manifest(path: Path, entries: dict[str, str]) -> None:
    with atomic_open(path) as handle:
        handle.writelines(f"{entries[name]}  {name}\n" for name in sorted(entries))


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def obtain(outdir: Path, relative: str, produce: Callable[[Path], None]) -> Path:
    """Return ``outdir/relative``, produced (atomically) if missing, and verified against the
    checksum manifest: recorded on first fetch, checked on reuse."""
    target = outdir / relative
    if not target.exists():
        produce(target)
    manifest_path = outdir / contracts.MODEL_MANIFEST
    manifest = read_manifest(manifest_path)
    for file in files_under(target):
        name = file.relative_to(outdir).as_posix()
        digest = contracts.file_sha256(file)
        if name not in manifest:
            manifest[name] = digest
        elif manifest[name] != digest:
            raise InputError(file, f"sha256 {digest} differs from {manifest[name]} recorded in {manifest_path} when it was fetched; delete it to fetch it again")
    write_manifest(manifest_path, manifest)
    return target


def download(url: str, target: Path) -> None:
    """Fetch ``url`` to ``target`` through a temporary name."""
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as temporary:
            with open(temporary, "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
    except (urllib.error.URLError, TimeoutError) as error:
        raise VirNucProError(f"cannot download {url} ({error}); on a machine without internet access, stage the models where there is (see --model_cache)") from None


def download_snapshot(repo_id: str, target: Path) -> None:
    """Fetch the DNABERT-S files of a Hugging Face model repository to ``target`` (a directory)."""
    from huggingface_hub import snapshot_download

    log.info("downloading %s from the Hugging Face hub", repo_id)
    with atomic_path(target) as temporary:
        try:
            snapshot_download(repo_id=repo_id, local_dir=temporary, allow_patterns=list(contracts.DNABERT_HUB_FILES))  # the files the embedder reads, no code
        except Exception as error:  # the hub client raises many error types (HTTP, offline, missing repo)
            raise VirNucProError(f"cannot download {repo_id} from the Hugging Face hub ({error}); on a machine without internet access, stage the models where there is (see --model_cache)") from None
        shutil.rmtree(temporary / ".cache", ignore_errors=True)
        if contracts.dnabert_weight_file(temporary) is None:
            raise VirNucProError(f"{repo_id} on the Hugging Face hub has none of {', '.join(contracts.DNABERT_WEIGHT_FILES)}")


def local_path(spec: str) -> Path | None:
    """The user's own file or directory named by ``spec``, or None when ``spec`` is a name to fetch."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if spec.startswith(("/", "./", "../", "~")) or spec.endswith((".pt", ".pth", ".bin")):
        raise InputError(spec, "no such file or directory")
    return None


def local_entry(role: str, name: str, path: Path) -> ModelEntry:
    resolved = path.resolve()
    return model_entry(role, name, str(resolved), resolved)


def fetched_entry(role: str, name: str, outdir: Path, path: Path) -> ModelEntry:
    return model_entry(role, name, path.relative_to(outdir).as_posix(), path)


def stage_dnabert(spec: str, outdir: Path) -> ModelEntry:
    path = local_path(spec)
    if path is not None:
        if not (path / contracts.DNABERT_CONFIG_FILE).is_file():
            raise InputError(path, f"not a DNABERT-S model directory (no {contracts.DNABERT_CONFIG_FILE})")
        return local_entry(contracts.DNABERT, path.name, path)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        raise InputError(spec, "neither a DNABERT-S directory nor a Hugging Face model ID (owner/name)")
    target = obtain(outdir, f"dnabert/{spec.replace('/', '--')}", lambda t: download_snapshot(spec, t))
    return fetched_entry(contracts.DNABERT, spec, outdir, target)


def stage_esm(spec: str, outdir: Path) -> ModelEntry:
    path = local_path(spec)
    if path is not None:
        if not path.is_file() or path.suffix != ".pt":
            raise InputError(path, "not a fair-esm checkpoint file (.pt)")
        return local_entry(contracts.ESM, path.stem, path)
    if not re.fullmatch(r"esm2_t\d+_\w+", spec):
        raise InputError(spec, "neither a .pt file nor a fair-esm ESM-2 model name such as esm2_t36_3B_UR50D")
    target = obtain(outdir, f"esm/{spec}.pt", lambda t: download(contracts.ESM_MODEL_URL.format(name=spec), t))
    obtain(outdir, f"esm/{spec}{contracts.ESM_REGRESSION_SUFFIX}", lambda t: download(ESM_REGRESSION_URL.format(name=spec), t))
    return fetched_entry(contracts.ESM, spec, outdir, target)


def classifier_problem(path: Path, chunk_size: int) -> str | None:
    """Why the classifier at ``path`` does not fit ``chunk_size``, or None when it may."""
    blob_id = git_blob_id(path)
    for size, published in PUBLISHED_CLASSIFIERS.items():
        if blob_id == published.blob_id:
            return None if size == chunk_size else f"this is the published {size} bp classifier, but the chunk size is {chunk_size}"
    sizes = set(re.findall(r"(?<!\d)(300|500)(?!\d)", path.name))
    if len(sizes) == 1 and int(next(iter(sizes))) != chunk_size:
        return f"its name says it is for {next(iter(sizes))} bp chunks, but the chunk size is {chunk_size}"
    return None


def stage_classifier(spec: str | None, chunk_size: int, outdir: Path) -> ModelEntry:
    if not spec:
        published = PUBLISHED_CLASSIFIERS[chunk_size]
        name = f"{chunk_size}_model.pth"
        target = obtain(outdir, f"classifier/{name}", lambda t: download(published.url, t))
        if git_blob_id(target) != published.blob_id:
            raise InputError(target, f"git blob id {git_blob_id(target)} is not that of the published {name} ({published.blob_id}); delete it to fetch it again")
        return fetched_entry(contracts.CLASSIFIER, name, outdir, target)
    if spec.startswith(("https://", "http://")):
        name = spec.rstrip("/").rpartition("/")[2]
        target = obtain(outdir, f"classifier/{name}", lambda t: download(spec, t))
        entry = fetched_entry(contracts.CLASSIFIER, name, outdir, target)
    else:
        target = local_path(spec)
        if target is None or not target.is_file():
            raise InputError(spec, "the classifier must be a file or an http(s) URL")
        entry = local_entry(contracts.CLASSIFIER, target.name, target)
    problem = classifier_problem(target, chunk_size)
    if problem:
        raise InputError(target, f"{problem}: give the classifier trained on {chunk_size} bp chunks, or the matching --chunk_size")
    return entry


def stage_tiny(outdir: Path) -> dict[str, ModelEntry]:
    """Generate the seeded tiny models (the test profile's) into ``outdir``."""
    dnabert_dir = obtain(outdir, f"dnabert/{tiny_models.DNABERT_NAME}", lambda t: tiny_models.write_dnabert(t, TINY_SEEDS["dnabert"]))
    esm_name = f"esm/{tiny_models.ESM_NAME}.pt"

    def write_esm(_: Path) -> None:  # writes the checkpoint and its contact-regression file
        tiny_models.write_esm(outdir / esm_name, TINY_SEEDS["esm"])

    esm = obtain(outdir, esm_name, write_esm)
    obtain(outdir, tiny_models.esm_regression_path(esm).relative_to(outdir).as_posix(), write_esm)
    classifier = obtain(outdir, f"classifier/{tiny_models.CLASSIFIER_NAME}.pth", lambda t: tiny_models.write_classifier(t, TINY_SEEDS["classifier"]))
    entries = {
        "dnabert": fetched_entry(contracts.DNABERT, tiny_models.DNABERT_NAME, outdir, dnabert_dir),
        "esm": fetched_entry(contracts.ESM, tiny_models.ESM_NAME, outdir, esm),
        "classifier": fetched_entry(contracts.CLASSIFIER, classifier.name, outdir, classifier),
    }
    return {role: replace(entry, test_only=True) for role, entry in entries.items()}


def stage_models(outdir: Path, chunk_size: int, dnabert: str, esm: str, classifier: str | None) -> dict[str, ModelEntry]:
    """Stage the classifier first: a mismatch with the chunk size fails before any large download."""
    staged_classifier = stage_classifier(classifier, chunk_size, outdir)
    return {"dnabert": stage_dnabert(dnabert, outdir), "esm": stage_esm(esm, outdir), "classifier": staged_classifier}


def write_models_json(outdir: Path, entries: dict[str, ModelEntry]) -> Path:
    path = outdir / contracts.MODELS_JSON
    write_text(path, json_text({kind: asdict(entry) for kind, entry in entries.items()}))
    return path
