"""The native ESM-2 forward against fair-esm's own model, which the original runs."""

from __future__ import annotations

import argparse

import esm as fair_esm
import numpy as np
import pytest
import torch

from virnucpro import esm
from virnucpro.embedding import embed_token_ids
from virnucpro.modeling_esm2 import ESM2Config, ESM2Model

CPU = torch.device("cpu")
# lengths that are not multiples of 8, so every batch below is padded
PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ", "GVLSEEDKSNIKAAWGKIGGHGAEYGAEALERMFLSFPTTK", "ACDEFGHIKLMNPQRSTVWYXBUZO", "MEEPQSDPSV"]


def fair_esm_model(path) -> torch.nn.Module:
    with torch.serialization.safe_globals([argparse.Namespace]):
        model, _ = fair_esm.pretrained.load_model_and_alphabet_local(str(path))
    return model.eval()


def fair_esm_tokens(proteins: list[str]) -> torch.Tensor:
    converter = fair_esm.data.Alphabet.from_architecture("ESM-1b").get_batch_converter()
    return converter([(str(i), protein) for i, protein in enumerate(proteins)])[2]


def random_checkpoint(tmp_path, config: ESM2Config, seed: int = 0):
    """A fair-esm ESM2 of ``config`` with random weights (LayerNorms perturbed too), saved as a
    fair-esm checkpoint; returns the fair-esm model and the file."""
    torch.manual_seed(seed)
    model = fair_esm.model.esm2.ESM2(config.num_layers, config.embed_dim, config.attention_heads, token_dropout=config.token_dropout)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    path = tmp_path / "esm2_random.pt"
    settings = argparse.Namespace(
        encoder_layers=config.num_layers, encoder_embed_dim=config.embed_dim,
        encoder_attention_heads=config.attention_heads, token_dropout=config.token_dropout,
    )
    state = {f"encoder.{key}": value for key, value in model.state_dict().items()}
    torch.save({"cfg": {"model": settings}, "model": state}, path)
    return model.eval(), path


def native_model(path, layer=None, dtype=torch.float32) -> ESM2Model:
    return esm.open_checkpoint(str(path), layer, "off").load(CPU, dtype).module


def native_tokens(proteins: list[str]) -> torch.Tensor:
    tokens, _ = esm.padded_batch(esm.tokenize(proteins), CPU)
    return tokens


def embed(model: ESM2Model, proteins: list[str], batch_tokens: int) -> np.ndarray:
    return embed_token_ids(esm.ESMEmbedder(model, "off"), esm.tokenize(proteins), CPU, batch_tokens)


def test_tokens_match_fair_esm_batch_converter():
    assert torch.equal(native_tokens(PROTEINS), fair_esm_tokens(PROTEINS))


def test_tiny_checkpoint_matches_fair_esm_at_every_position(reference):
    path = reference / "models" / "esm2_t36_tiny_UR50D.pt"
    tokens = fair_esm_tokens(PROTEINS)
    with torch.no_grad():
        expected = fair_esm_model(path)(tokens, repr_layers=[36])["representations"][36]
        actual = native_model(path)(tokens, tokens != esm.PAD_ID)
    real = tokens != esm.PAD_ID
    torch.testing.assert_close(actual[real], expected[real], rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_random_model_matches_fair_esm_at_each_layer(tmp_path, layer):
    config = ESM2Config(num_layers=3, embed_dim=40, attention_heads=5)  # head_dim 8
    reference_model, path = random_checkpoint(tmp_path, config)
    tokens = fair_esm_tokens(PROTEINS)
    with torch.no_grad():
        expected = reference_model(tokens, repr_layers=[layer])["representations"][layer]
        actual = native_model(path, layer)(tokens, tokens != esm.PAD_ID)
    real = tokens != esm.PAD_ID
    torch.testing.assert_close(actual[real], expected[real], rtol=0, atol=1e-5)


def test_unpadded_batch_needs_no_mask(tmp_path):
    _, path = random_checkpoint(tmp_path, ESM2Config(num_layers=2, embed_dim=24, attention_heads=3))
    model = native_model(path)
    tokens = native_tokens(["MKTAYIAKQR", "GVLSEEDKSN"])
    with torch.no_grad():
        # two attention kernels (with and without a mask) may round differently on some CPUs
        torch.testing.assert_close(model(tokens, None), model(tokens, tokens != esm.PAD_ID), rtol=0, atol=1e-6)


def test_padding_does_not_change_a_protein(tmp_path):
    _, path = random_checkpoint(tmp_path, ESM2Config(num_layers=2, embed_dim=24, attention_heads=3))
    model = native_model(path)
    with torch.no_grad():
        alone = model(native_tokens(PROTEINS[3:]))
        batch = native_tokens(PROTEINS)
        padded = model(batch, batch != esm.PAD_ID)
    length = len(PROTEINS[3]) + 2
    torch.testing.assert_close(padded[3, :length], alone[0], rtol=0, atol=1e-5)


def centred_cosines(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of each row with its reference row after subtracting the reference's mean row."""
    centre = reference.mean(axis=0)
    a, b = values - centre, reference - centre
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bf16_weights_stay_close_to_fp32(tmp_path):
    _, path = random_checkpoint(tmp_path, ESM2Config(num_layers=4, embed_dim=64, attention_heads=4))
    rng = np.random.default_rng(1)
    letters = np.array(list("LAGVSERTIDPKQNFYMHWC"))
    proteins = ["".join(rng.choice(letters, size=int(rng.integers(40, 120)))) for _ in range(24)]
    fp32 = embed(native_model(path), proteins, batch_tokens=1024)
    bf16_model = native_model(path, dtype=torch.bfloat16)
    assert bf16_model.layers[0].fc1.weight.dtype == torch.bfloat16
    assert bf16_model.layers[0].final_layer_norm.weight.dtype == torch.float32
    bf16 = embed(bf16_model, proteins, batch_tokens=1024)
    assert bf16.dtype == np.float32
    assert centred_cosines(bf16, fp32).min() > 0.99


def test_compiled_layers_match_eager(tmp_path):
    _, path = random_checkpoint(tmp_path, ESM2Config(num_layers=2, embed_dim=24, attention_heads=3))
    eager = embed(native_model(path), PROTEINS, batch_tokens=80)
    model = native_model(path)
    assert esm.compile_layers(model, CPU) > 0
    compiled = embed(model, PROTEINS, batch_tokens=80)
    np.testing.assert_allclose(compiled, eager, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sizes, refusal", [
    ({"num_layers": 0}, "num_layers must be at least 1"),
    ({"embed_dim": 30, "attention_heads": 4}, "embed_dim 30 is not an even head size times attention_heads 4"),
    ({"embed_dim": 12, "attention_heads": 4}, "embed_dim 12 is not an even head size"),  # heads of 3: rotary needs pairs
])
def test_config_refuses_sizes_no_model_has(sizes, refusal):
    with pytest.raises(ValueError, match=refusal):
        ESM2Config(**sizes)
