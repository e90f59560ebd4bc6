"""Checkpoint formats in and out: our own, Hugging Face directories, gemma_pytorch, GGUF."""

import os
import stat

import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from gguf_fixture import write_gguf
from model_helpers import hf_twin, random_gemma
from small_disk import small_disk

import gemmaforge as gf
from gemmaforge.weights import export_hf, gemma_pytorch, load_model, save_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMAFORGE_CACHE", str(tmp_path / "cache"))


def same_state(a, b, atol=0.0) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and (torch.equal(sa[k], sb[k]) if atol == 0 else
                                        torch.allclose(sa[k], sb[k], atol=atol, rtol=0)) for k in sa)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_load_is_bit_identical(tiny_name, tmp_path, dtype):
    model = random_gemma(tiny_name).to(dtype)
    save_model(model, tmp_path / "ckpt")
    back = load_model(tmp_path / "ckpt", dtype=None)
    assert back.config == model.config and same_state(model, back)


@pytest.mark.oracle
def test_export_loads_in_transformers_with_same_logits(tiny_name, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = random_gemma(tiny_name)
    export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager")
    ids = torch.randint(0, model.config.vocab_size, (1, 20))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max() <= 1e-4


@pytest.mark.oracle
def test_loads_sharded_transformers_checkpoint(tiny_name, tmp_path):
    model = random_gemma(tiny_name)
    hf_twin(model).save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    back = load_model(tmp_path / "hf")
    assert back.config.replace(name="") == model.config.replace(name="") and same_state(model, back)


def test_gemma_pytorch_checkpoint(tiny_name, tmp_path):
    model = random_gemma(tiny_name)
    state = gemma_pytorch.from_ours(model)
    state["freqs_cis"] = torch.zeros(4, 4)  # a derived buffer the official files carry
    torch.save({"model_state_dict": state}, tmp_path / "model.ckpt")
    back = load_model(tmp_path / "model.ckpt")  # config inferred from the tensors
    assert back.config == model.config and same_state(model, back)
    assert same_state(model, load_model(tmp_path))  # a directory holding one .ckpt


def test_gguf_float32_and_norm_offset(tiny_name, tmp_path):
    model = random_gemma(tiny_name)
    back = load_model(write_gguf(model, tmp_path / "m.gguf"))
    assert back.config.replace(name="") == model.config.replace(name="")
    # Norms were stored as 1 + w in float32: undoing it costs at most one rounding step.
    assert same_state(model, back, atol=1e-6)
    ids = torch.randint(0, model.config.vocab_size, (1, 16))
    with torch.no_grad():
        assert (model(ids) - back(ids)).abs().max() <= 1e-4


# Variants matching no preset, so nothing read back can come from a preset by accident: every
# field GGUF stores differs from the tiny presets' and from the published models'.
VARIANTS = {
    "tiny-gemma-mha": dict(d_model=48, n_heads=3, n_kv_heads=3, head_dim=20, ffn_dim=72, max_seq_len=96,
                           norm_eps=1e-5, rope_base=5000.0),
    "tiny-gemma2": dict(n_layers=3, layer_types="LGL", sliding_window=6, attn_softcap=40.0, final_softcap=20.0,
                        rope_base=20000.0, max_seq_len=80, query_pre_attn_scalar=32),
    "tiny-gemma3": dict(n_layers=6, layer_types="LLLLLG", sliding_window=5, rope_base=500000.0,
                        rope_scaling=8.0, ffn_dim=96, max_seq_len=72, query_pre_attn_scalar=32),
}


@pytest.mark.parametrize("preset", sorted(VARIANTS))
def test_gguf_config_round_trip_of_non_preset_variants(preset, tmp_path):
    cfg = gf.GemmaConfig.preset(preset).replace(**VARIANTS[preset], name="variant")
    presets = [gf.GemmaConfig.preset(p).replace(name="") for p in gf.GemmaConfig.presets()]
    assert cfg.replace(name="") not in presets
    torch.manual_seed(0)
    model = gf.Gemma(cfg)
    back = load_model(write_gguf(model, tmp_path / "v.gguf"))
    assert back.config.replace(name="") == cfg.replace(name="")
    ids = torch.randint(0, cfg.vocab_size, (1, 24))
    with torch.no_grad():
        assert (model(ids) - back(ids)).abs().max() <= 1e-4


def test_gguf_quantised_tensors_are_dequantised_exactly(tmp_path):
    model = random_gemma("tiny-gemma3")
    back = load_model(write_gguf(model, tmp_path / "q.gguf", GGMLQuantizationType.Q8_0))
    w = model.layers[0].mlp.gate_proj.weight.detach().numpy()
    expected = dequantize(quantize(w, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0)
    assert torch.equal(back.layers[0].mlp.gate_proj.weight, torch.from_numpy(expected))


def test_gguf_cache_gives_identical_weights(tmp_path):
    path = write_gguf(random_gemma("tiny-gemma2"), tmp_path / "m.gguf")
    first, second = load_model(path), load_model(path)
    assert any((tmp_path / "cache" / "gguf").iterdir()) and same_state(first, second)


def test_bfloat16_load(tmp_path):
    model = random_gemma("tiny-gemma3")
    save_model(model, tmp_path / "c")
    back = load_model(tmp_path / "c", dtype=torch.bfloat16)
    assert back.dtype == torch.bfloat16
    with pytest.raises(gf.ConfigError, match="float16"):
        load_model(tmp_path / "c", dtype=torch.float16)


def test_atomic_save_keeps_old_checkpoint_on_failure(tmp_path, monkeypatch):
    model = random_gemma("tiny-gemma-mqa")
    save_model(model, tmp_path / "c")
    before = (tmp_path / "c" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("gemmaforge.weights.native.save_file", boom)
    with pytest.raises(gf.CheckpointError, match=r"c: cannot write here: disk full; nothing there was changed"):
        save_model(random_gemma("tiny-gemma-mqa", seed=1), tmp_path / "c", overwrite=True)
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "cache"] or sorted(
        p.name for p in tmp_path.iterdir()) == ["c"]


def test_save_refuses_to_replace_files_without_overwrite(tmp_path):
    model = random_gemma("tiny-gemma-mqa")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("my thesis")
    (tmp_path / "afile.txt").write_text("data")
    with pytest.raises(gf.CheckpointError, match=f"{tmp_path / 'mine'}: directory is not empty; .*overwrite=True"):
        save_model(model, tmp_path / "mine")
    with pytest.raises(gf.CheckpointError, match=f"{tmp_path / 'afile.txt'}: is a file"):
        export_hf(model, tmp_path / "afile.txt")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "my thesis"
    assert (tmp_path / "afile.txt").read_text() == "data"
    save_model(model, tmp_path / "empty")  # new
    save_model(model, tmp_path / "empty", overwrite=True)  # a checkpoint replaced on request
    export_hf(model, tmp_path / "afile.txt", overwrite=True)
    assert (tmp_path / "afile.txt" / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["afile.txt", "empty", "mine"]


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(random_gemma("tiny-gemma-mqa"), tmp_path / "c")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "c").iterdir()} == {0o644}


def test_unwritable_output_names_the_path(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(gf.CheckpointError, match=f"{tmp_path / 'f' / 'out'}: cannot write here"):
        save_model(random_gemma("tiny-gemma-mqa"), tmp_path / "f" / "out")


def test_gguf_cache_is_keyed_by_content_and_drops_old_versions(tmp_path):
    path = write_gguf(random_gemma("tiny-gemma2"), tmp_path / "m.gguf")
    cache = tmp_path / "cache" / "gguf"
    cache.mkdir(parents=True)
    (cache / "m-0123456789abcdef.safetensors").write_bytes(b"an entry of the old path-keyed scheme")
    first = load_model(path)
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / "other-name.gguf"
    copy.write_bytes(path.read_bytes())
    assert same_state(first, load_model(copy))
    assert len(list(cache.iterdir())) == 1  # the copy shares the entry; the old one is gone


def test_gguf_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMAFORGE_CACHE", "off")
    monkeypatch.chdir(tmp_path)  # where a cache in a directory named "off" would land
    load_model(write_gguf(random_gemma("tiny-gemma2"), tmp_path / "m.gguf"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_a_full_disk_is_one_clear_error(tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        with pytest.raises(gf.CheckpointError, match=r"out: cannot write here: No space left on device"):
            save_model(random_gemma("tiny-gemma-mqa"), disk / "out")
        assert list(disk.iterdir()) == []
