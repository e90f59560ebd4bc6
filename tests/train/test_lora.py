"""LoRA: the same maths as peft, the base frozen and shared (not copied), merging exact, clear
errors for targets that name nothing."""

from __future__ import annotations

import copy

import pytest
import torch

import gemmaforge as gf
from gemmaforge.model import Gemma
from gemmaforge.train.errors import TrainError
from gemmaforge.train.lora import LoRALinear, LoraSettings, apply_lora, lora_layers, merge_lora

SETTINGS = LoraSettings(("q_proj", "v_proj", "layers.1.mlp.down_proj"), rank=4, alpha=8.0)


def tiny(seed: int = 0) -> Gemma:
    torch.manual_seed(seed)
    model = Gemma(gf.GemmaConfig.preset("tiny-gemma3").replace(n_layers=2, layer_types="LG"))
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    return model


def randomise_adapters(model: Gemma) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def test_targets_base_sharing_and_freezing():
    model = tiny()
    weights = {n: p for n, p in model.named_parameters()}
    adapted = apply_lora(model, SETTINGS)
    assert adapted == ["layers.0.attn.q_proj", "layers.0.attn.v_proj", "layers.1.attn.q_proj", "layers.1.attn.v_proj",
                       "layers.1.mlp.down_proj"]
    after = dict(model.named_parameters())
    for name, p in weights.items():  # the very same Parameter objects: nothing copied, names unchanged
        assert after[name] is p and not p.requires_grad
    assert sorted(n for n, p in after.items() if p.requires_grad) == sorted(
        f"{a}.lora_{x}" for a in adapted for x in "AB")
    ids = torch.randint(0, 512, (2, 10))
    assert torch.equal(model(ids), tiny()(ids))  # B = 0: starts as the base


def test_matches_peft_forward_and_merge():
    peft = pytest.importorskip("peft")
    ours = tiny()
    apply_lora(ours, SETTINGS)
    randomise_adapters(ours)
    theirs = peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(SETTINGS.targets)), tiny())
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            peft_layer = theirs.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    ids = torch.randint(0, 512, (2, 12))
    assert (ours(ids) - theirs(ids)).abs().max() < 1e-5
    merged = merge_lora(copy.deepcopy(ours))
    assert not lora_layers(merged)
    assert (merged(ids) - ours(ids)).abs().max() < 1e-5
    for name, _ in lora_layers(ours):
        peft_layer = theirs.get_submodule(name)
        with torch.no_grad():
            peft_layer.merge()
        assert torch.allclose(merged.get_submodule(name).weight, peft_layer.base_layer.weight, atol=1e-7)
    assert set(merged.state_dict()) == set(tiny().state_dict())  # a plain Gemma again


def test_a_step_moves_only_the_adapters():
    model = tiny()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, LoraSettings(("q_proj",), rank=2, alpha=4.0, dropout=0.1))
    randomise_adapters(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(torch.randint(0, 512, (2, 8))).logsumexp(-1).mean().backward()
    opt.step()
    for k, v in model.state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, base[k]), k
    assert isinstance(model.layers[0].attn.q_proj, LoRALinear)


@pytest.mark.parametrize("targets, message", [
    (("qkv",), r"lora.targets: 'qkv' names no Linear module of the model; its Linear modules are down_proj, "
               r"gate_proj, k_proj, o_proj, q_proj, up_proj"),
    (("embed",), r"'embed' names no Linear module"),
    ((), r"lora.targets: name at least one module"),
])
def test_targets_naming_no_module_are_one_clear_line(targets, message):
    with pytest.raises(TrainError, match=message):
        apply_lora(tiny(), LoraSettings(targets))
