"""Reward models and DPO on preference pairs: data errors, learning on a toy preference, resume,
scoring, and the losses against hand-computed values."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from sft_helpers import small_tokenizer, tiny_model, write_jsonl

import gemmaforge as gf
from gemmaforge.cli import main
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.errors import TrainError
from gemmaforge.train.preference import DpoObjective, RewardObjective, policy_logprobs, reference_logprobs
from gemmaforge.train.preference_data import build_items, read_pairs
from gemmaforge.train.preference_run import dpo, load_reward_model, reward_train, score


def toy_pairs(n: int, seed: int = 0) -> list[dict]:
    """Preferred: the correct sum; rejected: a wrong one (a reward model can learn it quickly)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"prompt": f"What is {a} plus {b}?", "chosen": f"It is {a + b}.",
                     "rejected": f"It is {a + b + rng.choice([-3, -2, 2, 3])}, I think."})
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("pref")
    tok = small_tokenizer(d / "tok")
    model = tiny_model()
    gf.save_model(model, d / "base", tokenizer=tok)
    write_jsonl(d / "pairs.jsonl", toy_pairs(48))
    return d, tok


def config(d, out, **sections) -> TrainConfig:
    base = {"out_dir": str(out), "model": {"init_from": str(d / "base")},
            "data": {"train": str(d / "pairs.jsonl"), "seq_len": 64},
            "optim": {"lr": 3e-3, "warmup_steps": 0, "weight_decay": 0.0},
            "train": {"max_steps": 30, "global_batch": 8, "micro_batch": 4},
            "eval": {"interval": 30}, "checkpoint": {"interval": 10, "keep": 2},
            "log": {"progress": False, "peak_tflops": 0.1}, "preference": {"val_fraction": 0.25}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return TrainConfig.from_dict(base)


@pytest.mark.parametrize("line, message", [
    ({"prompt": "p", "chosen": "same", "rejected": "same "}, "'chosen' equals 'rejected'"),
    ({"prompt": "p", "chosen": "a"}, "missing field(s) rejected"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "'prompt' is empty"),
    ("{not json", "not valid JSON"),
])
def test_bad_preference_rows_name_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "p.jsonl", [toy_pairs(1)[0], line])
    with pytest.raises(TrainError, match=rf"p\.jsonl:2: .*{message}".replace("(", r"\(").replace(")", r"\)")):
        read_pairs(path)


def test_items_mark_the_response_and_its_end_of_turn(setup):
    d, tok = setup
    items, stats = build_items(tok, read_pairs(d / "pairs.jsonl")[:2], 64)
    assert items.shape == (2, 2, 4, 64) and stats.too_long == 0
    ids, attention, completion = items[0, 0, 0], items[0, 0, 1], items[0, 0, 2]
    n = int(attention.sum())
    text = tok.decode(ids[:n][completion[:n].bool()].tolist())
    assert text == read_pairs(d / "pairs.jsonl")[0].chosen + "<end_of_turn>"


def test_reward_model_learns_the_preference_and_scores(setup, tmp_path, capsys):
    d, tok = setup
    summary = reward_train(config(d, tmp_path / "rm", train={"max_steps": 40}))
    val = summary["validation"]
    assert val["val_accuracy"] >= 0.9 and val["val_margin"] > 0, val
    rm = load_reward_model(tmp_path / "rm")
    prompts = ["What is 2 plus 3?", "What is 4 plus 4?"]
    good, bad = score(rm, tok, prompts, ["It is 5.", "It is 8."]), score(rm, tok, prompts, ["It is 8, I think."] * 2)
    assert all(g > b for g, b in zip(good, bad))
    empty = score(rm, tok, prompts, ["", "  "])  # a policy's reply may be empty: scored, not refused
    assert len(empty) == 2 and all(math.isfinite(x) for x in empty)
    rows = write_jsonl(tmp_path / "score.jsonl", [{"prompt": p, "response": "It is 5."} for p in prompts])
    capsys.readouterr()
    assert main(["reward", "score", "--model", str(tmp_path / "rm"), "--input", str(rows)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["reward"] for r in printed] == pytest.approx(score(rm, tok, prompts, ["It is 5."] * 2), abs=1e-5)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": p, "chosen": c, "rejected": "It is 8, I think."}
                                                   for p, c in zip(prompts, ["It is 5.", "It is 8."])])
    assert main(["reward", "score", "--model", str(tmp_path / "rm"), "--input", str(pairs)]) == 0
    out = capsys.readouterr()
    printed = [json.loads(line) for line in out.out.splitlines()]
    assert [r["chosen_reward"] for r in printed] == pytest.approx(good, abs=1e-5)
    assert [r["rejected_reward"] for r in printed] == pytest.approx(bad, abs=1e-5)
    assert "chosen above rejected in 2 of 2 pairs (100.0%)" in out.err


def test_dpo_raises_the_chosen_margin_and_exports_a_chat_model(setup, tmp_path):
    d, tok = setup
    summary = dpo(config(d, tmp_path / "dpo", preference={"beta": 0.5}, train={"max_steps": 20}))
    val = summary["validation"]
    assert val["val_accuracy"] >= 0.9 and val["val_margin"] > 0, val
    tuned = gf.load_model(tmp_path / "dpo" / "model")
    reply = gf.generate(tuned, gf.load_tokenizer(tmp_path / "dpo" / "model"),
                        [tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 2?"}])], 6)
    assert isinstance(reply[0], str)


def test_dpo_with_lora_keeps_one_copy_and_its_reference_is_the_base(setup):
    d, tok = setup
    from gemmaforge.train.lora import LoraSettings, apply_lora

    model = gf.load_model(d / "base")
    items, _ = build_items(tok, read_pairs(d / "pairs.jsonl")[:6], 64)
    before = reference_logprobs(model, items, 4)
    apply_lora(model, LoraSettings(("q_proj", "v_proj"), 4, 8.0, 0.0))  # fresh adapters add nothing
    assert torch.allclose(reference_logprobs(model, items, 4), before, atol=1e-5)


def test_losses_against_hand_computed_values(setup):
    d, tok = setup
    model = gf.load_model(d / "base")
    items, _ = build_items(tok, read_pairs(d / "pairs.jsonl")[:4], 64)
    with torch.no_grad():
        logps = policy_logprobs(model, items)
    ref = logps + torch.tensor([[-0.3, 0.2]])  # the policy moved towards chosen by 0.3 and away from rejected by 0.2
    ref_table = torch.zeros(int(items[:, 0, 3, 0].max()) + 1, 2)
    ref_table[items[:, 0, 3, 0]] = ref
    beta = 0.5
    with torch.no_grad():
        sig, m = DpoObjective(ref_table, beta).loss(model, items)
        assert sig.item() == pytest.approx(-math.log(1 / (1 + math.exp(-beta * 0.5))), abs=1e-5)
        assert m["reward_chosen"] == pytest.approx(0.15, abs=1e-5) and m["accuracy"] == 1.0
        robust, _ = DpoObjective(ref_table, beta, "robust", 0.1).loss(model, items)
        x = beta * 0.5
        expected = (-(0.9) * math.log(1 / (1 + math.exp(-x))) + 0.1 * math.log(1 / (1 + math.exp(x)))) / 0.8
        assert robust.item() == pytest.approx(expected, abs=1e-5)
        ipo, _ = DpoObjective(ref_table, beta, "ipo").loss(model, items)
        lengths = items[:, :, 2].sum(-1).float()
        want = ((0.3 / lengths[:, 0] + 0.2 / lengths[:, 1] - 1 / (2 * beta)) ** 2).mean()
        assert ipo.item() == pytest.approx(want.item(), abs=1e-5)
    # sequence log-probs equal a plain full-vocabulary computation
    ids, attention, completion = items[0, 0, 0], items[0, 0, 1], items[0, 0, 2]
    n = int(attention.sum())
    with torch.no_grad():
        lp = torch.log_softmax(model(ids[None, :n])[0].float(), -1)
    plain = sum(lp[t - 1, ids[t]].item() for t in range(1, n) if completion[t])
    assert logps[0, 0].item() == pytest.approx(plain, abs=1e-4)


def test_reward_objective_is_bradley_terry_with_margin():
    class Fixed(torch.nn.Module):
        def forward(self, ids, mask):
            return ids[:, :1].float()  # the reward is the first token id

    batch = torch.zeros(2, 2, 4, 3, dtype=torch.long)
    batch[:, 0, 0, 0], batch[:, 1, 0, 0] = torch.tensor([3, 1]), torch.tensor([1, 2])  # diffs 2, -1
    loss, m = RewardObjective(margin=0.5).loss(Fixed(), batch)
    want = -(math.log(1 / (1 + math.exp(-1.5))) + math.log(1 / (1 + math.exp(1.5)))) / 2
    assert loss.item() == pytest.approx(want) and m["accuracy"] == 0.5 and m["margin"] == 0.5


def test_preference_config_errors_are_one_line(setup, tmp_path, capsys):
    d, _ = setup
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'out_dir = "{tmp_path / "o"}"\n[preference]\nbeta = -1\n')
    assert main(["dpo", "--config", str(cfg)]) == 2
    assert "preference.beta: must be > 0" in capsys.readouterr().err
    cfg.write_text(f'out_dir = "{tmp_path / "o"}"\n[model]\ninit_from = "{d / "base"}"\n[data]\n'
                   f'train = "{write_jsonl(tmp_path / "x.jsonl", ["[1, 2]"])}"\n')
    assert main(["reward", "train", "--config", str(cfg)]) == 2
    assert "x.jsonl:1:" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_validation_reads_real_reference_log_probs(setup, tmp_path, seed):
    """The held-out pairs have reference log-probabilities too: before any step, every implicit
    reward is zero (policy = reference), whichever pairs the split sends to validation."""
    d, _ = setup
    cfg = config(d, tmp_path / f"v{seed}", data={"seed": seed}, train={"max_steps": 1},
                 optim={"lr": 1e-12}, eval={"interval": 1})
    val = dpo(cfg)["validation"]
    assert abs(val["val_reward_chosen"]) < 1e-3 and abs(val["val_reward_rejected"]) < 1e-3, val
