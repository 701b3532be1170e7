#!/usr/bin/env python3
"""Embedding throughput: the original recipes against ours, on one device, in one run.

Random weights of the real architectures (no downloads), the same inputs for every recipe:
  ESM-2 3B   (a) original: fair-esm, fp32, 2048-token batches, FASTA on disk, as VirNucPro's extract_esm
             (b) seeds:    the same with bf16 autocast and 3072-token batches
             (c) ours:     embed_esm's path, FASTA on disk -> HDF5 (model load and compile warm-up
                           timed separately), without and with torch.compile
             on N proteins of 166 aa and on a mix of frame lengths from 300 and 500 bp chunks;
  DNABERT-S  original: one frame at a time, fp32; ours: embedding.embed_token_ids, on frames of
             499 nt (~107 BPE tokens, tokenisation excluded);
plus the ESM-2 3B load time from a checkpoint file written in fair-esm format, and bf16-vs-fp32
agreement of our ESM-2 (centred cosines). See benchmarks/README.md for the columns.

Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))

from virnucpro import contracts, dnabert, esm, tiny_models  # noqa: E402
from virnucpro.embedding import embed_token_ids, resolve_device  # noqa: E402
from virnucpro.fasta import read_fasta  # noqa: E402
from virnucpro.modeling_dnabert import DNABertConfig, DNABertModel  # noqa: E402
from virnucpro.modeling_esm2 import ESM2Config, ESM2Model  # noqa: E402

AMINO_ACIDS = np.array(list("LAGVSERTIDPKQNFYMHWC"))
QUICK_ESM = ESM2Config(num_layers=4, embed_dim=64, attention_heads=4)
QUICK_DNABERT = DNABertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)


@dataclass
class Result:
    recipe: str
    items: int
    tokens: int
    seconds: float
    flops: float
    peak_bytes: int | None
    note: str = ""


# --- inputs ----------------------------------------------------------------------------------


def frame_lengths_mix(rng: np.random.Generator, count: int) -> np.ndarray:
    """Protein lengths of kept frames: half from 300 bp chunks (99-100 aa), half from 500 bp
    chunks (165-166 aa); 15% come from a sequence's shorter last chunk (uniform down to 17 aa)."""
    full = np.where(rng.random(count) < 0.5, 100, 166) - rng.integers(0, 2, count)
    short = rng.random(count) < 0.15
    return np.where(short, rng.integers(17, full + 1), full)


def write_proteins(path: Path, lengths: Sequence[int], rng: np.random.Generator) -> Path:
    with open(path, "w") as handle:
        for index, length in enumerate(lengths):
            handle.write(f">p{index:07d}\n{''.join(rng.choice(AMINO_ACIDS, size=int(length)))}\n")
    return path


# --- measuring -------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, run: Callable[[], None]) -> tuple[float, int | None]:
    """Seconds and peak allocated GPU memory (None on CPU) of ``run``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    seconds = time.perf_counter() - started
    return seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def forward_flops(linear_params: int, layers: int, width: int, lengths: Sequence[int]) -> float:
    """2 x (weights of the linear layers) per token, plus 4 x layers x width x T^2 per sequence
    for q.k^T and attention.v; counts real tokens only, not padding."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return 2.0 * linear_params * lengths.sum() + 4.0 * layers * width * (lengths**2).sum()


def linear_params(model: torch.nn.Module) -> int:
    return sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))


# --- ESM-2 recipes ---------------------------------------------------------------------------


def random_fair_esm(config: ESM2Config, device: torch.device) -> torch.nn.Module:
    import esm as fair_esm

    torch.manual_seed(0)
    with torch.device(device):
        model = fair_esm.model.esm2.ESM2(config.num_layers, config.embed_dim, config.attention_heads)
    return model.eval()


def save_fair_esm_checkpoint(model: torch.nn.Module, config: ESM2Config, path: Path) -> None:
    settings = argparse.Namespace(
        encoder_layers=config.num_layers, encoder_embed_dim=config.embed_dim,
        encoder_attention_heads=config.attention_heads, token_dropout=True,
    )
    state = {f"encoder.{key}": value.cpu() for key, value in model.state_dict().items()}
    torch.save({"cfg": {"model": settings}, "model": state}, path)


def original_esm_recipe(model, fasta: Path, device: torch.device, toks_per_batch: int, autocast: bool) -> None:
    """VirNucPro's extract_esm loop (fair-esm batching, per-protein mean copied to the CPU)."""
    import esm as fair_esm

    layer = model.num_layers
    dataset = fair_esm.data.FastaBatchedDataset.from_file(str(fasta))
    batches = dataset.get_batch_indices(toks_per_batch, extra_toks_per_seq=1)
    alphabet = fair_esm.data.Alphabet.from_architecture("ESM-1b")
    loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(), batch_sampler=batches)
    data = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for labels, strs, toks in loader:
            representation = model(toks.to(device, non_blocking=True), repr_layers=[layer])["representations"][layer]
            for i in range(len(labels)):
                truncate_len = min(1024, len(strs[i]))
                data.append(representation[i, 1 : truncate_len + 1].mean(0).clone().float().to("cpu"))


def our_esm_recipe(model: ESM2Model, fasta: Path, out: Path, device: torch.device, batch_tokens: int) -> None:
    """embed_esm.py's path after the model is loaded: FASTA -> tokens -> embeddings -> HDF5."""
    records = list(read_fasta(fasta))
    token_ids = esm.tokenize([record.sequence for record in records])
    vectors = embed_token_ids(esm.ESMEmbedder(model, "off"), token_ids, device, batch_tokens)
    attributes = {"model_role": contracts.ESM, "model": "random", "layer": model.output_layer, "pooling": "mean", "precision": "bf16"}
    contracts.write_embeddings(out, [record.id for record in records], vectors, attributes)


def centred_cosine_stats(values: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """min, 1st percentile and mean of each row's cosine with its reference row, both centred
    on the reference's mean row (ESM embeddings share a large common component that would
    hide differences between proteins)."""
    centre = reference.mean(axis=0)
    a, b = values - centre, reference - centre
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cosines.min()), float(np.percentile(cosines, 1)), float(cosines.mean())


def benchmark_esm(args, device: torch.device, workdir: Path) -> tuple[list[Result], list[str]]:
    config = QUICK_ESM if args.quick else ESM2Config()
    rng = np.random.default_rng(1)
    with torch.device("meta"):
        params = linear_params(ESM2Model(config))
    inputs = {
        f"{args.proteins} x 166 aa": np.full(args.proteins, 166),
        f"{args.proteins} frames, 300/500 bp mix": frame_lengths_mix(rng, args.proteins),
    }
    fastas = {name: write_proteins(workdir / f"set{i}.faa", lengths, rng) for i, (name, lengths) in enumerate(inputs.items())}
    baseline = {name: write_proteins(workdir / f"base{i}.faa", lengths[: args.baseline_items], rng) for i, (name, lengths) in enumerate(inputs.items())}
    flops = {path: forward_flops(params, config.num_layers, config.embed_dim, [len(r.sequence) + 2 for r in read_fasta(path)])
             for path in [*fastas.values(), *baseline.values()]}
    results: list[Result] = []
    notes: list[str] = []

    def add(recipe: str, fasta: Path, run: Callable[[], None], note: str = "") -> None:
        seconds, peak = measure(device, run)
        lengths = [len(record.sequence) + 2 for record in read_fasta(fasta)]
        results.append(Result(recipe, len(lengths), sum(lengths), seconds, flops[fasta], peak, note))
        print(f"  {recipe}: {len(lengths) / seconds:.1f} proteins/s", file=sys.stderr)

    print("building a random ESM-2 with fair-esm ...", file=sys.stderr)
    reference_model = random_fair_esm(config, device)
    checkpoint_file = workdir / "esm2_random.pt"
    save_fair_esm_checkpoint(reference_model, config, checkpoint_file)
    for name in inputs:
        add(f"ESM-2 original (fp32, 2048 tok) | {name}", baseline[name],
            lambda: original_esm_recipe(reference_model, baseline[name], device, 2048, autocast=False))
        add(f"ESM-2 seeds (bf16 autocast, 3072 tok) | {name}", baseline[name],
            lambda: original_esm_recipe(reference_model, baseline[name], device, 3072, autocast=True))
    del reference_model

    load_started = time.perf_counter()
    model = esm.open_checkpoint(str(checkpoint_file), None, "off").load(device, torch.bfloat16).module
    notes.append(f"ESM-2 load (bf16, {checkpoint_file.stat().st_size / 2**30:.1f} GiB fair-esm file, page cache warm): "
                 f"{time.perf_counter() - load_started:.1f} s")
    compile_modes = [False, True] if device.type == "cuda" or args.compile else [False]
    for compiled in compile_modes:
        if compiled:
            notes.append(f"ESM-2 torch.compile warm-up: {esm.compile_layers(model, device):.1f} s")
        label = "ours (bf16, SDPA" + (", compiled)" if compiled else ")")
        for name, fasta in fastas.items():
            add(f"ESM-2 {label} | {name}", fasta, lambda: our_esm_recipe(model, fasta, workdir / "out.h5", device, args.batch_tokens))
    del model
    notes.extend(esm_bf16_agreement(args, checkpoint_file, workdir, device, rng))
    return results, notes


def esm_bf16_agreement(args, checkpoint_file: Path, workdir: Path, device: torch.device, rng: np.random.Generator) -> list[str]:
    """Our ESM-2 in bf16 against fp32 on the same weights: centred cosine statistics."""
    torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
    checkpoint = esm.open_checkpoint(str(checkpoint_file), None, "off")
    token_ids = {
        length: esm.tokenize([record.sequence for record in read_fasta(write_proteins(workdir / f"agree{length}.faa", [length] * args.agreement_items, rng))])
        for length in (100, 166)
    }
    vectors = {}
    for dtype in (torch.float32, torch.bfloat16):
        embedder = checkpoint.load(device, dtype)
        vectors[dtype] = {length: embed_token_ids(embedder, ids, device, args.batch_tokens) for length, ids in token_ids.items()}
        del embedder
        gc.collect()
    notes = []
    for length in token_ids:
        low, percentile, mean = centred_cosine_stats(vectors[torch.bfloat16][length], vectors[torch.float32][length])
        notes.append(f"ESM-2 bf16 vs fp32, {args.agreement_items} x {length} aa, centred cosine: "
                     f"min {low:.6f}, 1st percentile {percentile:.6f}, mean {mean:.6f} (target: mean >= 0.9995, min >= 0.999)")
    return notes


# --- DNABERT-S -------------------------------------------------------------------------------


def benchmark_dnabert(args, device: torch.device) -> list[Result]:
    config = QUICK_DNABERT if args.quick else DNABertConfig()
    rng = np.random.default_rng(2)
    lengths = rng.integers(100, 115, args.frames)  # BPE tokens of a 499 nt frame, [CLS] and [SEP] included
    token_ids = [np.concatenate(([1], rng.integers(5, config.vocab_size, n - 2), [2])).astype(np.int64) for n in lengths]
    torch.manual_seed(0)
    model = DNABertModel(config).to(device).eval()
    params = linear_params(model)

    def original() -> None:  # extract_DNABERT_S: one frame at a time, mean over all tokens
        with torch.no_grad():
            for ids in token_ids[: args.baseline_items]:
                input_ids = torch.from_numpy(ids)[None].to(device)
                hidden = model(input_ids, torch.ones_like(input_ids))
                hidden.mean(dim=1).squeeze().cpu().tolist()

    ours = dnabert.DNABertEmbedder(copy.deepcopy(model).to(torch.bfloat16), tiny_models.dnabert_tokenizer())  # token ids are given
    results = []
    for recipe, run, count in (
        ("DNABERT-S original (fp32, 1 at a time)", original, min(args.baseline_items, args.frames)),
        ("DNABERT-S ours (bf16, batched)", lambda: embed_token_ids(ours, token_ids, device, args.dnabert_batch_tokens), args.frames),
    ):
        seconds, peak = measure(device, run)
        used = lengths[:count]
        flops = forward_flops(params, config.num_hidden_layers, config.hidden_size, used)
        results.append(Result(f"{recipe} | {args.frames} frames of 499 nt", count, int(used.sum()), seconds, flops, peak))
        print(f"  {recipe}: {count / seconds:.1f} frames/s", file=sys.stderr)
    return results


# --- report ----------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    print(f"{'recipe':<78} {'items':>6} {'items/s':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'peak GiB':>9} {'x orig':>7}")
    originals = {}
    for result in results:
        model, inputs = result.recipe.split(" | ")[0].split()[0], result.recipe.split(" | ")[-1]
        rate = result.items / result.seconds
        originals.setdefault((model, inputs), rate)
        peak = f"{result.peak_bytes / 2**30:.1f}" if result.peak_bytes is not None else "-"
        print(
            f"{result.recipe:<78} {result.items:>6} {rate:>9.1f} {result.tokens / result.seconds:>10.0f} "
            f"{result.flops / result.seconds / 1e12:>8.2f} {peak:>9} {rate / originals[(model, inputs)]:>7.2f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="tiny models and counts: a CPU smoke run of every step")
    parser.add_argument("--proteins", type=int, help="proteins per ESM-2 input set (default 20000; 48 with --quick)")
    parser.add_argument("--frames", type=int, help="DNABERT-S frames (default 20000; 48 with --quick)")
    parser.add_argument("--baseline-items", type=int, help="items timed with the slow original recipes, from the start of "
                        "each set (default 2000; 16 with --quick): their rate is steady, so a subset suffices")
    parser.add_argument("--agreement-items", type=int, help="proteins per length in the bf16-vs-fp32 check (default 512; 16 with --quick)")
    parser.add_argument("--batch-tokens", type=int, default=esm.DEFAULT_BATCH_TOKENS, help="our ESM-2 token budget per batch (embed_esm.py's default)")
    parser.add_argument("--dnabert-batch-tokens", type=int, default=dnabert.DEFAULT_BATCH_TOKENS, help="our DNABERT-S token budget per batch (embed_dnabert.py's default)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU (always timed on CUDA)")
    parser.add_argument("--skip-esm", action="store_true", help="time DNABERT-S only")
    parser.add_argument("--skip-dnabert", action="store_true", help="time ESM-2 only")
    parser.add_argument("--workdir", type=Path, help="directory for the inputs and the ~11 GiB random 3B checkpoint (default: a temporary one)")
    args = parser.parse_args()
    quick = {"proteins": 48, "frames": 48, "baseline_items": 16, "agreement_items": 16}
    full = {"proteins": 20000, "frames": 20000, "baseline_items": 2000, "agreement_items": 512}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}{'; quick (tiny models)' if args.quick else ''}")
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as directory:
        if not args.skip_esm:
            esm_results, notes = benchmark_esm(args, device, Path(directory))
            results.extend(esm_results)
    if not args.skip_dnabert:
        results.extend(benchmark_dnabert(args, device))
    print_table(results)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
