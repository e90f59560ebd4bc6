import json

import pytest
import torch

import gemmaforge as gf
from gemmaforge.config import GemmaConfig
from gemmaforge.model import Gemma


def meta_params(cfg: GemmaConfig) -> int:
    with torch.device("meta"):
        return Gemma(cfg).num_parameters()


@pytest.mark.parametrize("name,vocab,expected", [
    ("gemma-2b", 256000, 2_506_172_416),
    ("gemma-7b", 256000, 8_537_680_896),
    ("gemma-2b", 256128, 2_506_434_560),  # the paper's embedding rows
    ("gemma-7b", 256128, 8_538_074_112),
])
def test_published_parameter_counts(name, vocab, expected):
    assert meta_params(GemmaConfig.preset(name, vocab_size=vocab)) == expected


@pytest.mark.parametrize("name,approx", [
    ("gemma2-2b", 2.61e9), ("gemma2-9b", 9.24e9), ("gemma2-27b", 27.2e9),
    ("gemma3-270m", 268e6), ("gemma3-1b", 1.0e9), ("gemma3-4b", 3.88e9),
    ("gemma3-12b", 11.77e9), ("gemma3-27b", 27.0e9),
])
def test_later_family_sizes(name, approx):
    # Text-only parameter counts as published (vision towers excluded), within 2%.
    assert meta_params(GemmaConfig.preset(name)) == pytest.approx(approx, rel=0.02)


def test_published_table_values():
    b2, b7 = GemmaConfig.preset("gemma-2b"), GemmaConfig.preset("gemma-7b")
    assert (b2.d_model, b2.n_layers, b2.n_heads, b2.n_kv_heads, b2.head_dim, b2.ffn_dim) == (
        2048, 18, 8, 1, 256, 16384)
    assert (b7.d_model, b7.n_layers, b7.n_heads, b7.n_kv_heads, b7.head_dim, b7.ffn_dim) == (
        3072, 28, 16, 16, 256, 24576)
    assert b7.head_dim != b7.d_model // b7.n_heads  # 7B's head size is 256, not 3072/16


def test_layer_patterns():
    g3 = GemmaConfig.preset("gemma3-1b")
    assert [i for i in range(g3.n_layers) if not g3.is_local(i)] == [5, 11, 17, 23]
    g2 = GemmaConfig.preset("gemma2-9b")
    assert g2.is_local(0) and not g2.is_local(1)
    assert GemmaConfig.preset("gemma3-270m").sliding_window == 512
    assert GemmaConfig.preset("gemma3-4b").sliding_window == 1024
    assert GemmaConfig.preset("gemma3-4b").rope_scaling == 8.0
    assert GemmaConfig.preset("gemma3-270m").rope_scaling == 1.0


def test_attention_scale():
    assert GemmaConfig.preset("gemma-7b").attn_scale == 256 ** -0.5
    assert GemmaConfig.preset("gemma2-27b").attn_scale == 144 ** -0.5
    assert GemmaConfig.preset("gemma3-27b").attn_scale == 168 ** -0.5


def test_presets_listed_and_unknown_rejected():
    names = GemmaConfig.presets()
    for n in ["gemma-2b", "gemma-7b", "gemma2-2b", "gemma2-9b", "gemma2-27b", "gemma3-270m", "gemma3-1b",
              "gemma3-4b", "gemma3-12b", "gemma3-27b", "tiny-gemma3"]:
        assert n in names
    with pytest.raises(gf.ConfigError, match="unknown preset 'gemma-3b'.*gemma-2b"):
        GemmaConfig.preset("gemma-3b")


@pytest.mark.parametrize("change,message", [
    (dict(n_heads=6, n_kv_heads=4), "multiple of n_kv_heads"),
    (dict(head_dim=255), "even"),
    (dict(d_model=0), "d_model must be a positive integer"),
    (dict(layer_types="GGL"), "layer_types"),
    (dict(layer_types="L" * 18, sliding_window=None), "sliding_window"),
    (dict(family=4), "family"),
    (dict(attn_softcap=-1.0), "attn_softcap"),
])
def test_validation_names_the_problem(change, message):
    with pytest.raises(gf.ConfigError, match=message):
        GemmaConfig.preset("gemma-2b", **change)


def test_json_round_trip(tmp_path):
    for name in GemmaConfig.presets():
        cfg = GemmaConfig.preset(name)
        assert GemmaConfig.from_json(cfg.to_json()) == cfg
    p = tmp_path / "c.json"
    p.write_text(GemmaConfig.preset("gemma2-9b").to_json())
    assert GemmaConfig.from_json(p) == GemmaConfig.preset("gemma2-9b")
    with pytest.raises(gf.ConfigError, match="unknown GemmaConfig fields: hidden"):
        GemmaConfig.from_dict({**json.loads(p.read_text()), "hidden": 3})
