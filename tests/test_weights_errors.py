"""Bad checkpoints get one clear error naming the file and the problem."""

import json

import pytest
import torch
from gguf_fixture import write_gguf
from model_helpers import random_gemma

import gemmaforge as gf
from gemmaforge.weights import load_model, save_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMAFORGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def saved(tmp_path):
    return save_model(random_gemma("tiny-gemma3"), tmp_path / "ckpt")


def test_missing_path(tmp_path):
    with pytest.raises(gf.CheckpointError, match="nope: no such file"):
        load_model(tmp_path / "nope")
    with pytest.raises(gf.CheckpointError, match="shipped models: gemma3-270m"):
        load_model("gemma3-27m")


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(gf.CheckpointError, match="holds no checkpoint"):
        load_model(tmp_path)
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.ckpt").write_bytes(b"")
    with pytest.raises(gf.CheckpointError, match=r"holds several checkpoints \(b.ckpt, a.gguf\); name the file"):
        load_model(tmp_path)


def test_truncated_safetensors(saved):
    f = saved / "model.safetensors"
    f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(gf.CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_model(saved)


def test_corrupt_safetensors_header(saved):
    f = saved / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:20] = b"\xff" * 12
    f.write_bytes(bytes(data))
    with pytest.raises(gf.CheckpointError, match="model.safetensors"):
        load_model(saved)


def test_tensor_of_wrong_shape(tmp_path):
    from safetensors.torch import load_file, save_file

    d = save_model(random_gemma("tiny-gemma-mqa"), tmp_path / "c")
    state = load_file(d / "model.safetensors")
    state["layers.1.attn.k_proj.weight"] = torch.zeros(16, 64)
    save_file(state, d / "model.safetensors")
    with pytest.raises(gf.CheckpointError, match=r"layers\.1\.attn\.k_proj\.weight has shape \(16, 64\)"):
        load_model(d)


def test_missing_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    d = save_model(random_gemma("tiny-gemma-mqa"), tmp_path / "c")
    state = load_file(d / "model.safetensors")
    del state["final_norm.weight"]
    save_file(state, d / "model.safetensors")
    with pytest.raises(gf.CheckpointError, match="missing 1 tensors.*final_norm.weight"):
        load_model(d)


def test_invalid_config(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["n_kv_heads"] = 3
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(gf.CheckpointError, match="config.json.*multiple of n_kv_heads"):
        load_model(saved)


def test_hf_config_of_another_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(gf.ConfigError, match="config.json: model_type 'llama' is not a Gemma"):
        load_model(tmp_path)


def test_truncated_gguf(tmp_path):
    path = write_gguf(random_gemma("tiny-gemma2"), tmp_path / "m.gguf")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(gf.CheckpointError, match=r"m\.gguf: not a readable GGUF file"):
        load_model(path)


def test_gguf_of_unknown_architecture(tmp_path):
    path = write_gguf(random_gemma("tiny-gemma-mqa"), tmp_path / "m.gguf", arch="llama")
    with pytest.raises(gf.CheckpointError, match="architecture 'llama' is not a Gemma"):
        load_model(path)


def test_gguf_of_unknown_tensor_type(tmp_path, monkeypatch):
    path = write_gguf(random_gemma("tiny-gemma-mqa"), tmp_path / "m.gguf")

    def unsupported(data, qtype):
        raise NotImplementedError(qtype)

    monkeypatch.setattr("gguf.quants.dequantize", unsupported)
    with pytest.raises(gf.CheckpointError, match="has type F32, which cannot be dequantised"):
        load_model(path)
