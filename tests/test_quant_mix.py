"""int4's "q4_k_m" mix (its default): llama.cpp's Q4_K_M choice of layers (v_proj and down_proj of
the layers its use_more_bits picks) stored in int8 per row, everywhere a scheme is built: quantize, a
saved checkpoint, a GGUF quantised while streaming, the CLI; and mix "none", every layer int4."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import random_gemma
from test_quantize import float_twin

import gemmaforge as gf
from gemmaforge.errors import CheckpointError, InputError
from gemmaforge.model import Gemma
from gemmaforge.quant import checkpoint, kernels, layer_schemes, scheme_of
from gemmaforge.quant.modules import QuantLinear, QuantWeight
from gemmaforge.quant.schemes import Scheme, use_more_bits
from gemmaforge.weights.gguf_export import export_gguf

MIX = Scheme.make("int4", mix="q4_k_m")
PLAIN = Scheme.make("int4", mix="none")
INT8 = Scheme.make("int8")  # per row
# written out by hand from llama.cpp's rule (n/8 and 7n/8 in integer division)
MORE_BITS_18 = [0, 1, 4, 7, 10, 13, 15, 16, 17]  # gemma3-270m: 18/8 = 2, 7*18/8 = 15
MORE_BITS_32 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]  # 32/8 = 4, 7*32/8 = 28
MORE_BITS_TINY = [2, 5, 6]  # tiny-gemma3's 7 layers: 7/8 = 0, 7*7/8 = 6


@pytest.fixture(autouse=True)
def eager_kernels():
    kernels.set_kernel("eager")
    yield
    kernels.set_kernel("auto")


def int8_layers(layers: list[int]) -> set[str]:
    return {f"layers.{i}.{role}" for i in layers for role in ("attn.v_proj", "mlp.down_proj")}


def test_the_rule_picks_llama_cpps_layers():
    assert [i for i in range(18) if use_more_bits(i, 18)] == MORE_BITS_18
    assert [i for i in range(32) if use_more_bits(i, 32)] == MORE_BITS_32
    with torch.device("meta"):
        model = Gemma(gf.GemmaConfig.preset("gemma3-270m"))
    assert model.config.n_layers == 18
    chosen = {name: s for name, _, s in layer_schemes(model, MIX)}
    assert chosen.pop("embed") == INT8  # the table: int8 per row, as without the mix
    assert len(chosen) == 18 * 7
    assert {name for name, s in chosen.items() if s == INT8} == int8_layers(MORE_BITS_18)
    assert {s for name, s in chosen.items() if name not in int8_layers(MORE_BITS_18)} == {MIX}
    # without the mix every layer is int4
    assert {s for name, _, s in layer_schemes(model, PLAIN) if name != "embed"} == {PLAIN}


def test_int4_has_the_mix_unless_told_none():
    assert Scheme.make("int4") == MIX and PLAIN.mix is None and Scheme.make("int8").mix is None
    assert Scheme.make("int8", mix="none") == INT8
    assert Scheme.from_dict(MIX.to_dict()) == MIX and Scheme.from_dict(PLAIN.to_dict()) == PLAIN
    assert str(PLAIN) == "int4 (group 16, mse rounding, embedding int8)"
    model = gf.quantize(random_gemma("tiny-gemma3", std=0.05), "int4")
    assert scheme_of(model) == MIX
    assert {n for n, m in model.named_modules() if isinstance(m, QuantLinear) and m.scheme == INT8} == \
        int8_layers(MORE_BITS_TINY)


def test_a_mixed_model_is_int8_exactly_where_the_rule_says():
    model = random_gemma("tiny-gemma3", std=0.05)
    assert model.config.n_layers == 7
    ids = torch.randint(0, 512, (2, 9))
    gf.quantize(model, "int4", mix="q4_k_m")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear)}
    assert len(linears) == 7 * 7
    int8 = {name for name, m in linears.items() if m.scheme.name == "int8"}
    assert int8 == int8_layers(MORE_BITS_TINY)
    for name, m in linears.items():
        assert m.scheme == (INT8 if name in int8 else MIX), name
        assert m.weight.dtype == (torch.int8 if name in int8 else torch.uint8), name  # int4: two codes a byte
    assert scheme_of(model) == MIX and model.embed.scheme == INT8
    assert "mix q4_k_m" in str(scheme_of(model))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), float_twin(model)(ids), atol=2e-5, rtol=1e-5)


def test_a_mixed_checkpoint_round_trips(tmp_path, monkeypatch):
    model = gf.quantize(random_gemma("tiny-gemma3", std=0.05), "int4", mix="q4_k_m")
    gf.save_model(model, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization"]["mix"] == "q4_k_m" and config["quantization"] == MIX.to_dict()

    def no_quantising(*a, **k):
        raise AssertionError("a quantised checkpoint must load its codes, not quantise floats")
    monkeypatch.setattr(QuantWeight, "from_float", no_quantising)
    loaded = gf.load_model(tmp_path / "q")
    assert scheme_of(loaded) == MIX
    assert {n: m.scheme for n, m in loaded.named_modules() if isinstance(m, QuantWeight)} == {
        n: m.scheme for n, m in model.named_modules() if isinstance(m, QuantWeight)}
    want = model.state_dict()
    assert set(loaded.state_dict()) == set(want)
    for k, v in loaded.state_dict().items():
        assert v.dtype == want[k].dtype and torch.equal(v, want[k]), k
    ids = torch.tensor([[2, 5, 9, 200, 31]])
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    # asking for the stored scheme, by name or in full (a request without a mix takes the stored one), is fine;
    # another mix is not
    assert scheme_of(gf.load_model(tmp_path / "q", quantize="int4")) == MIX
    assert scheme_of(gf.load_model(tmp_path / "q", quantize="int4", group_size=16)) == MIX
    assert scheme_of(gf.load_model(tmp_path / "q", quantize="int4", mix="q4_k_m")) == MIX
    with pytest.raises(InputError, match=r"mix q4_k_m, embedding int8\); it cannot be loaded as int4 \(group 16, "
                                         r"mse rounding, embedding int8\)"):
        gf.load_model(tmp_path / "q", quantize="int4", mix="none")


def test_plain_int4_checkpoints_without_a_recorded_mix_still_load(tmp_path):
    model = gf.quantize(random_gemma("tiny-gemma3", std=0.05), "int4", mix="none")
    gf.save_model(model, tmp_path / "q")
    path = tmp_path / "q" / "config.json"
    config = json.loads(path.read_text())
    del config["quantization"]["mix"], config["quantization"]["embedding"]["mix"]
    path.write_text(json.dumps(config))
    loaded = gf.load_model(tmp_path / "q")
    assert scheme_of(loaded) == PLAIN
    assert all(m.scheme.name == "int4" for m in loaded.modules() if isinstance(m, QuantLinear))
    assert scheme_of(gf.load_model(tmp_path / "q", quantize="int4")) == PLAIN  # no mix asked: the stored one
    assert scheme_of(gf.load_model(tmp_path / "q", quantize="int4", mix="none")) == PLAIN
    with pytest.raises(InputError, match="stored quantised as int4 .*cannot be loaded as int4 .*mix q4_k_m"):
        gf.load_model(tmp_path / "q", quantize="int4", mix="q4_k_m")


def test_a_gguf_quantised_while_streaming_gets_the_same_mix(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMAFORGE_CACHE", "off")
    path = export_gguf(random_gemma("tiny-gemma3", std=0.05), tmp_path / "m.gguf", "F32")
    monkeypatch.setattr(checkpoint, "ROWS", 100)
    streamed = gf.load_model(path, quantize="int4", mix="q4_k_m")
    whole = gf.quantize(gf.load_model(path), "int4", mix="q4_k_m")
    assert scheme_of(streamed) == MIX
    assert {n for n, m in streamed.named_modules() if isinstance(m, QuantLinear) and m.scheme == INT8} == \
        int8_layers(MORE_BITS_TINY)
    for k, v in whole.state_dict().items():
        assert torch.equal(streamed.state_dict()[k], v), k


def test_bad_mixes_are_one_clear_error(tmp_path):
    model = random_gemma("tiny-gemma3")
    with pytest.raises(InputError, match="the mix 'q4_k_m' .* needs the int4 scheme, not int8"):
        gf.quantize(model, "int8", mix="q4_k_m")
    with pytest.raises(InputError, match="unknown int4 mix 'q5_k_m'; use one of: q4_k_m, none"):
        gf.quantize(model, "int4", mix="q5_k_m")
    assert scheme_of(model) is None
    with pytest.raises(InputError, match="pass quantize='int4'"):
        gf.load_model(tmp_path / "does-not-matter", mix="q4_k_m")  # before looking at the source
    with pytest.raises(InputError, match="needs the int4 scheme, not int8"):
        gf.load_model(tmp_path / "does-not-matter", quantize="int8", mix="q4_k_m")
    gf.save_model(gf.quantize(model, "int4", mix="q4_k_m"), tmp_path / "q")
    path = tmp_path / "q" / "config.json"
    path.write_text(path.read_text().replace('"q4_k_m"', '"q3_k_m"'))
    with pytest.raises(CheckpointError, match="config.json: unknown int4 mix 'q3_k_m'"):
        gf.load_model(tmp_path / "q")


def test_cli_mix_reaches_the_scheme(tmp_path, monkeypatch, capsys):
    from gemmaforge.cli import main

    monkeypatch.setenv("GEMMAFORGE_CACHE", "off")
    gf.save_model(random_gemma("tiny-gemma3", std=0.05), tmp_path / "f")
    assert main(["convert", str(tmp_path / "f"), str(tmp_path / "q"), "--quantize", "int4", "--mix", "q4_k_m"]) == 0
    assert json.loads((tmp_path / "q" / "config.json").read_text())["quantization"]["mix"] == "q4_k_m"
    assert scheme_of(gf.load_model(tmp_path / "q")) == MIX
    capsys.readouterr()
    assert main(["info", str(tmp_path / "q"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["quantization"]
    assert report == "int4 (group 16, mse rounding, mix q4_k_m, embedding int8)"
    assert main(["info", str(tmp_path / "f"), "--quantize", "int8", "--mix", "q4_k_m"]) == 2
    assert "needs the int4 scheme, not int8" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "f"), "--mix", "q4_k_m"]) == 2
    assert "pass quantize='int4' (--quantize int4)" in capsys.readouterr().err
