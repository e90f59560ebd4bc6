"""Parity with TRL: RewardTrainer's Bradley–Terry loss and DPOTrainer's DPO loss and metrics on the
same tiny model (exported with gf.export_hf), the same pairs, the same padding: equal within 1e-5
in float32. Needs the dev extra (trl, transformers, datasets)."""

from __future__ import annotations

import pytest
import torch
from sft_helpers import small_tokenizer, tiny_model
from test_preference import toy_pairs

import gemmaforge as gf
from gemmaforge.train.modules import ModelWithHead
from gemmaforge.train.preference import DpoObjective, RewardObjective, reference_logprobs
from gemmaforge.train.preference_data import build_items, to_pair

pytestmark = pytest.mark.oracle
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402

N = 6


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return small_tokenizer(tmp_path_factory.mktemp("tok"))


def pair_items(tok, n: int = N) -> torch.Tensor:
    pairs = [to_pair(r, f"row {i}") for i, r in enumerate(toy_pairs(n, seed=3))]
    return build_items(tok, pairs, 64)[0]


def sides(items: torch.Tensor, s: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for item in items:
        n = int(item[s, 1].sum())
        out.append((item[s, 0, :n].tolist(), item[s, 2, :n].tolist()))
    return out


def trl_args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path / "trl"), per_device_eval_batch_size=N, report_to=[], use_cpu=True,
               bf16=False, fp16=False, dataloader_num_workers=0, **kw)


def test_reward_loss_and_metrics_match_trl(tok, tmp_path):
    torch.manual_seed(0)
    rm = ModelWithHead(tiny_model(), 1, "last").eval()
    torch.nn.init.normal_(rm.head.weight, 0, 0.5)
    torch.nn.init.zeros_(rm.head.bias)  # transformers' score head has no bias
    items = pair_items(tok)
    with torch.no_grad():
        ours, metrics = RewardObjective().loss(rm, items)

    hf_dir = gf.export_hf(rm.gemma, tmp_path / "hf", tokenizer=tok)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(hf_dir, num_labels=1, dtype=torch.float32)
    hf.score.weight.data.copy_(rm.head.weight)
    hf.config.pad_token_id = tok.pad_id
    data = datasets.Dataset.from_list([{"chosen_ids": c, "rejected_ids": r}
                                       for (c, _), (r, _) in zip(sides(items, 0), sides(items, 1))])
    trainer = trl.RewardTrainer(model=hf, args=trl_args(trl.RewardConfig, tmp_path), train_dataset=data,
                                eval_dataset=data, processing_class=transformers.AutoTokenizer.from_pretrained(hf_dir))
    batch = next(iter(trainer.get_eval_dataloader()))
    hf.eval()
    with torch.no_grad():
        theirs = trainer.compute_loss(hf, batch)
    assert abs(ours.item() - theirs.item()) < 1e-5
    assert metrics["accuracy"] == pytest.approx(trainer._metrics["eval"]["accuracy"][-1], abs=1e-6)
    assert metrics["margin"] == pytest.approx(trainer._metrics["eval"]["margin"][-1], abs=1e-5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "robust"])
def test_dpo_loss_and_metrics_match_trl(tok, tmp_path, loss_type):
    reference, policy = tiny_model(seed=0).eval(), tiny_model(seed=1).eval()
    items = pair_items(tok)
    beta, smoothing = 0.3, (0.1 if loss_type == "robust" else 0.0)
    ref = reference_logprobs(reference, items, N)
    with torch.no_grad():
        ours, metrics = DpoObjective(ref, beta, loss_type, smoothing).loss(policy, items)

    rows = []
    for (c_ids, c_mask), (r_ids, r_mask) in zip(sides(items, 0), sides(items, 1)):
        start = c_mask.index(1)  # the prompt (and the model-turn header) precede the completion
        assert c_ids[:start] == r_ids[:start] and r_mask.index(1) == start
        # TRL scores every token after the prompt: give it the completion, without the context-only
        # newline that follows <end_of_turn> (it comes after every scored token, so it changes nothing).
        rows.append({"prompt_ids": c_ids[:start], "chosen_ids": c_ids[start:start + sum(c_mask)],
                     "rejected_ids": r_ids[start:start + sum(r_mask)]})
    text = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                                        "chosen": [{"role": "assistant", "content": r["chosen"]}],
                                        "rejected": [{"role": "assistant", "content": r["rejected"]}]}
                                       for r in toy_pairs(N, seed=3)])
    hf_policy = transformers.AutoModelForCausalLM.from_pretrained(
        gf.export_hf(policy, tmp_path / "policy", tokenizer=tok), dtype=torch.float32)
    hf_ref = transformers.AutoModelForCausalLM.from_pretrained(
        gf.export_hf(reference, tmp_path / "ref", tokenizer=tok), dtype=torch.float32)
    args = trl_args(trl.DPOConfig, tmp_path, beta=beta, loss_type=[loss_type], label_smoothing=smoothing)
    trainer = trl.DPOTrainer(model=hf_policy, ref_model=hf_ref, args=args, train_dataset=text, eval_dataset=text,
                             processing_class=transformers.AutoTokenizer.from_pretrained(tmp_path / "policy"))
    # TRL tokenises text itself; the same ids go through its own collator so both sides see one batch.
    batch = DataCollatorForPreference(pad_token_id=tok.pad_id)(rows)
    hf_policy.eval()
    with torch.no_grad():
        theirs = trainer.compute_loss(hf_policy, batch)
    logged = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    assert abs(ours.item() - theirs.item()) < 1e-5, (ours.item(), theirs.item())
    assert metrics["reward_chosen"] == pytest.approx(logged["rewards/chosen"], abs=1e-5)
    assert metrics["reward_rejected"] == pytest.approx(logged["rewards/rejected"], abs=1e-5)
    assert metrics["margin"] == pytest.approx(logged["rewards/margins"], abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(logged["rewards/accuracies"], abs=1e-6)
