"""RL on rollouts from the engine: advantages and KL estimators against hand/closed-form values,
engine log-probs equal a training forward, zero KL at the start, a tiny end-to-end run that resumes
to the same curve, and bad input in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from sft_helpers import small_tokenizer, tiny_model

import gemmaforge as gf
from gemmaforge.inference.generate import Decoder
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.errors import TrainError
from gemmaforge.train.lora import LoraSettings, apply_lora
from gemmaforge.train.preference import token_logprobs
from gemmaforge.train.rewards import RewardSpec, build_scorer
from gemmaforge.train.rl import rlhf
from gemmaforge.train.rl_objective import (
    PolicyGradientObjective,
    gae,
    grpo_advantages,
    kl_estimate,
    rloo_advantages,
)
from gemmaforge.train.rollouts import Prompt, Rollouts, RolloutSettings

REWARD = '''
def reward(prompt, response, **meta):
    return float(response.count("e")) / (1 + len(response))   # prefers replies rich in "e"
def broken(prompt, response, **meta):
    raise ValueError("no")
def nan(prompt, response, **meta):
    return float("nan")
CALLS = [0]
def flaky(prompt, response, **meta):   # fails in the third step's rollouts
    CALLS[0] += 1
    if CALLS[0] > 9:  # 1 held-out reply, then 4 samples a step
        raise RuntimeError("the grader went away")
    return 1.0
'''


def test_rloo_and_grpo_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 5.0]])
    assert torch.allclose(rloo_advantages(r), torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [-1.0, -1.0, -1.0, 3.0]]))
    g = grpo_advantages(r, eps=0.0)
    std = math.sqrt(((0.5 ** 2) * 4) / 3)
    assert torch.allclose(g[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / std)
    assert torch.allclose(g.sum(-1), torch.zeros(2), atol=1e-6)


def test_kl_estimators_match_the_closed_form():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(6) * 1.5, -1)
    q = torch.softmax(torch.randn(6), -1)
    exact = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 400_000, replacement=True)
    for est in ("k1", "k3"):
        value = kl_estimate(p.log()[x], q.log()[x], est).mean().item()
        assert abs(value - exact) < 0.01, (est, value, exact)
    assert (kl_estimate(p.log()[x], q.log()[x], "k3") >= 0).all()  # k3 never negative


def test_surrogate_by_hand():
    batch = {"ids": torch.tensor([[2, 5, 6]]), "attention": torch.ones(1, 3, dtype=torch.long),
             "completion": torch.tensor([[0, 1, 1]]), "advantage": torch.tensor([2.0])}

    class Fixed(torch.nn.Module):  # an object that returns the hidden states the test chooses
        def __init__(self):
            super().__init__()
            self.gemma = tiny_model()

        def forward(self, ids, attention_mask=None, logits_at="none"):
            return self.gemma(ids, attention_mask=attention_mask, logits_at=logits_at)

    model = Fixed()
    with torch.no_grad():
        hidden = model(batch["ids"])
        logp, _ = token_logprobs(model.gemma, hidden, batch["ids"], batch["completion"])
    batch["old_logp"] = logp - torch.tensor([[0.0, 0.5, -0.1]])  # ratios e^0.5 (clipped to 1.2) and e^-0.1
    batch["ref_logp"] = logp.clone()
    loss, m = PolicyGradientObjective(clip=0.2).loss(model, batch)
    expected = -(min(math.exp(0.5), 1.2) * 2 + math.exp(-0.1) * 2) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert m["clip_fraction"] == pytest.approx(0.5) and m["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return small_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_engine_log_probs_equal_a_training_forward(tok, temperature):
    model = tiny_model(seed=2).eval()
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Say something."}]))
    dec = Decoder(model, [prompt, prompt], 12, gf.Sampling(temperature=temperature, seed=4), logprobs=True)
    samples = [[], []]
    for step in dec:
        for row, t in enumerate(step):
            if t is not None:
                samples[row].append(t)
    for row in range(2):
        ids = torch.tensor([prompt + samples[row]])
        completion = torch.zeros_like(ids)
        completion[0, len(prompt):] = 1
        with torch.no_grad():
            lp, _ = token_logprobs(model, model(ids, logits_at="none"), ids, completion, temperature=temperature)
        assert torch.allclose(lp[0, len(prompt):], torch.tensor(dec.logprobs[row]), atol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kl_is_zero_and_the_ratio_one_while_the_policy_is_the_reference(tok, tmp_path, temperature):
    """Engine (π_old), reference (π_ref) and training forward (π) all at the sampling temperature."""
    model = tiny_model(seed=3)
    apply_lora(model, LoraSettings(("q_proj", "v_proj"), 4, 8.0, 0.0))
    (tmp_path / "r.py").write_text(REWARD)
    spec = RewardSpec("function", target=f"{tmp_path / 'r.py'}:reward")
    data = Rollouts([Prompt("Tell me about trees.", {}), Prompt("Count to three.", {})], tok, [spec],
                    [build_scorer(spec, tok)], RolloutSettings("rloo", 2, 3, 10, temperature, 3))
    batches = data.micro_batches(0, model)
    assert sum(len(b["ids"]) for b in batches) == 6
    # a clip of 1e-4 counts every token whose first-pass ratio π/π_old is off 1 by more than that
    objective = PolicyGradientObjective(clip=1e-4, kl_estimator="k1", temperature=temperature)
    for b in batches:
        assert torch.allclose(b["old_logp"], b["ref_logp"], atol=1e-4)
        assert abs(float(b["rollout/kl"])) < 1e-4
        loss, m = objective.loss(model, {**b, "advantage": torch.ones(len(b["ids"]))})
        assert m["clip_fraction"] == 0.0 and abs(m["kl"]) < 1e-4
        assert loss.item() == pytest.approx(-1.0, abs=1e-4)  # −mean ρ·A with A = 1


def test_plain_prompts_and_stop_strings_end_replies(tok, tmp_path):
    model = tiny_model(seed=3)
    apply_lora(model, LoraSettings(("q_proj", "v_proj"), 4, 8.0, 0.0))
    (tmp_path / "r.py").write_text(REWARD)
    spec = RewardSpec("function", target=f"{tmp_path / 'r.py'}:reward")
    settings = RolloutSettings("rloo", 2, 4, 12, 1.0, 8, prompt_format="plain", stop=("e",))
    data = Rollouts([Prompt("Tell me about trees.", {}), Prompt("Count to three.", {})], tok, [spec],
                    [build_scorer(spec, tok)], settings)
    batch = data.micro_batches(0, model)[0]
    assert batch["ids"][0, 0] == tok.bos_id and tok.decode(batch["ids"][0, 1:6].tolist()).startswith("Tell me")
    assert float(batch["rollout/finished"]) > 0  # some replies ended at a token holding "e" ...
    assert all("e" not in text for text in data.last["texts"])  # ... and none went on past one


def rl_config(tmp_path, out, **rl) -> TrainConfig:
    (tmp_path / "r.py").write_text(REWARD)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about topic {i}."}) + "\n" for i in range(10)))
    return TrainConfig.from_dict({
        "out_dir": str(out), "model": {"init_from": str(tmp_path / "base")},
        "lora": {"targets": ["q_proj", "v_proj"], "rank": 4, "alpha": 8.0},
        "optim": {"lr": 5e-3, "warmup_steps": 0, "weight_decay": 0.0, "min_lr_ratio": 1.0},  # max_steps-free lr
        "train": {"max_steps": 4, "global_batch": 4, "micro_batch": 4},
        "checkpoint": {"interval": 2, "keep": 3}, "eval": {"interval": 100},
        "log": {"progress": False, "peak_tflops": 0.1},
        "rl": {"algorithm": "grpo", "prompts": str(prompts), "held_out": 2, "k": 2, "prompts_per_step": 2,
               "max_new_tokens": 8, "epochs": 2, "kl_coef": 0.1, "kl_in_loss": True, "kl_estimator": "k3",
               "rewards": [{"kind": "function", "target": f"{tmp_path / 'r.py'}:reward", "name": "e"}], **rl}})


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("kl", [{}, {"kl_target": 0.01, "kl_horizon": 8.0, "kl_in_loss": False, "epochs": 1}],
                         ids=["fixed-kl", "adaptive-kl"])
def test_rl_runs_logs_and_resumes_to_the_same_curve(tok, tmp_path, kl):
    gf.save_model(tiny_model(seed=5), tmp_path / "base", tokenizer=tok)
    whole = rlhf(rl_config(tmp_path, tmp_path / "a", **kl))
    assert whole["steps"] == 4 and whole["held_out_after"]["n"] == 2 and Path(whole["plot"]).is_file()
    rows = [r for r in metrics(tmp_path / "a") if "loss" in r]
    assert {"rollout/reward", "rollout/reward_e", "kl", "entropy", "clip_fraction", "rollout/tok_s",
            "rollout/kl_coef"} <= set(rows[0])
    coefs = [round(r["rollout/kl_coef"], 6) for r in rows]  # (logged through float32)
    assert coefs[0] == 0.1 and (len(set(coefs)) == 4 if kl else set(coefs) == {0.1})  # adapted every step
    half = rl_config(tmp_path, tmp_path / "b", **kl)
    rlhf(half.replace(train={"max_steps": 2}))
    rlhf(half, resume=True)  # a fresh process's view: β comes back from the checkpoint
    again = [r for r in metrics(tmp_path / "b") if "loss" in r]
    for key in ("loss", "rollout/kl_coef"):
        steps_a = {r["step"]: r[key] for r in rows}
        steps_b = {r["step"]: r[key] for r in again}
        assert steps_a.keys() == steps_b.keys() and all(abs(steps_a[s] - steps_b[s]) < 1e-6 for s in steps_a), key
    assert gf.load_model(tmp_path / "a" / "model").config.vocab_size == tok.vocab_size


@pytest.mark.parametrize("change, message", [
    ({"k": 1}, "rl.k: must be >= 2"),
    ({"rewards": [{"kind": "function", "target": "REWARDS:broken"}]}, "reward function failed|failed on sample 0"),
    ({"rewards": [{"kind": "function", "target": "REWARDS:nan"}]}, "returned nan for sample 0"),
    ({"max_new_tokens": 100000}, "leaves no room"),
])
def test_bad_rl_settings_are_one_clear_line(tok, tmp_path, change, message):
    gf.save_model(tiny_model(seed=5), tmp_path / "base", tokenizer=tok)
    if "rewards" in change:
        change = {"rewards": [{**r, "target": r["target"].replace("REWARDS", str(tmp_path / "r.py"))}
                              for r in change["rewards"]]}
    with pytest.raises(TrainError, match=message):
        rlhf(rl_config(tmp_path, tmp_path / "o", **change))


def test_a_reward_failing_mid_run_stops_after_a_checkpoint(tok, tmp_path):
    gf.save_model(tiny_model(seed=5), tmp_path / "base", tokenizer=tok)
    cfg = rl_config(tmp_path, tmp_path / "o", held_out=0, epochs=1,
                    rewards=[{"kind": "function", "target": f"{tmp_path / 'r.py'}:flaky"}])
    cfg = cfg.replace(rl={"held_out": 1})
    with pytest.raises(TrainError, match="reward function failed on sample 0 .*the grader went away"):
        rlhf(cfg)  # in step 3: steps 1-2 were checkpointed at step 2 (checkpoint.interval)
    assert (tmp_path / "o" / "checkpoints" / "step-00000002").is_dir()
    cfg = cfg.replace(checkpoint={"interval": 10})
    with pytest.raises(TrainError, match="the grader went away .*the 2 steps before it are saved"):
        rlhf(cfg.replace(out_dir=str(tmp_path / "o2")))  # no checkpoint due: one is written before stopping
    assert (tmp_path / "o2" / "checkpoints" / "step-00000002").is_dir()


def test_reasoning_gym_reward_uses_the_generators_own_checker():
    pytest.importorskip("reasoning_gym")
    import reasoning_gym

    from gemmaforge.train.rewards import extract_answer, reasoning_gym_score

    entry = dict(reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=3)[0])
    meta = {"entry": entry, "dataset": "basic_arithmetic"}
    assert reasoning_gym_score("q", f"Let me see. The answer is {entry['answer']}.", **meta) == 1.0
    assert reasoning_gym_score("q", "The answer is 123456789.", **meta) == 0.0
    assert extract_answer("work\nwork\n42") == "42" and extract_answer("Answer: -4.") == "-4"


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0, 2.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.2, 9.0, 0.4, 9.0]])
    mask = torch.tensor([[False, True, True, False, True, False]])  # completion at 1, 2 and 4 (padding between)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d4 = 2.0 - 0.4
    d2 = 1.0 + 0.9 * 0.4 - 0.2
    d1 = 0.0 + 0.9 * 0.2 - 0.5
    a4, a2 = d4, d2 + 0.45 * d4
    a1 = d1 + 0.45 * a2
    assert torch.allclose(adv, torch.tensor([[0.0, a1, a2, 0.0, a4, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.0, a1 + 0.5, a2 + 0.2, 0.0, a4 + 0.4, 0.0]]))


def test_ppo_trains_a_value_head_and_exports_a_plain_policy(tok, tmp_path):
    gf.save_model(tiny_model(seed=5), tmp_path / "base", tokenizer=tok)
    summary = rlhf(rl_config(tmp_path, tmp_path / "ppo", algorithm="ppo", kl_in_loss=False, epochs=1))
    rows = [r for r in metrics(tmp_path / "ppo") if "loss" in r]
    assert summary["steps"] == 4 and all("value_loss" in r for r in rows)
    from gemmaforge.train.trained import load_trained

    module = load_trained(tmp_path / "ppo" / "checkpoints" / "step-00000004")
    assert type(module).__name__ == "PolicyWithValue" and module.value_head.weight.abs().sum() > 0  # it learned
    assert gf.load_model(tmp_path / "ppo" / "model").config.vocab_size == tok.vocab_size
