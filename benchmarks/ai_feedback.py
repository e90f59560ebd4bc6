"""AI-feedback preference pairs for preference_demo.py, made the way `gemmaforge rate` makes them.

Prompts that are not hhh_alignment's: single-turn user prompts of gemmaforge's own SFT set
(`gemmaforge/train/sft_default/train.jsonl.gz`) short enough that prompt and response fit the
training length. The base model answers each twice (sampled, two seeds, stored as two "models"),
the judge compares the two answers in both orders (`label_with_judge`), and the exported
preferences (`preference_rows`) keep only decided pairs: a verdict that flips with the order is a
tie and is dropped, like any other tie.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from gemmaforge.judge import Judge, JudgeItem, Judgement, judge_name
from gemmaforge.rate import GenerationSettings, RateError, RatingStore, generate_responses, label_with_judge
from gemmaforge.rate.prefs import preference_rows
from gemmaforge.rate.prompts import Prompt, chat_prompt
from gemmaforge.rate.responses import prompt_ids
from gemmaforge.train.sft import DEFAULT_SET
from gemmaforge.util.jsonl import read_jsonl

PROMPTS = DEFAULT_SET / "train.jsonl.gz"
SAMPLES = ("sample 1", "sample 2")


@dataclass
class Recording:
    """The judge, keeping its judgements (label_with_judge stores only verdicts and probabilities)."""

    inner: Judge
    seen: list[Judgement] = field(default_factory=list)

    @property
    def name(self) -> str:
        return judge_name(self.inner)

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        out = self.inner.judge(items)
        self.seen += out
        return out


def sft_prompts(tok, n: int, room: int, seed: int, path: Path = PROMPTS) -> list[Prompt]:
    """`n` seeded picks among the set's single-turn user prompts that take at most `room` tokens in
    the chat format (the set's rows are a user turn and the model's answer; the answer is dropped)."""
    turns = [chat_prompt(r["messages"][:1], f"{path}:{line}") for line, r in read_jsonl(path, RateError)
             if len(r["messages"]) == 2]
    fit = [p for p in dict.fromkeys(turns) if len(prompt_ids(tok, p)) <= room]
    if len(fit) < n:
        raise RateError(f"{path}: only {len(fit)} single-turn prompts fit {room} tokens, {n} asked for")
    return random.Random(seed).sample(fit, n)


def ai_pairs(store_path: Path, source: str, judge: Judge, tok, n: int, seq: int, max_new: int, seed: int,
             batch: int, temperature: float = 1.0) -> tuple[list[dict], dict]:
    """Decided pairs {"prompt", "chosen", "rejected"} and what happened on the way (counts)."""
    store = RatingStore(store_path)
    prompts = sft_prompts(tok, n, seq - max_new - 4, seed)  # 4: the model turn's markers around the reply
    for k, name in enumerate(SAMPLES, 1):
        settings = GenerationSettings(max_new, batch, temperature, seed=seed + k)
        generate_responses(store, prompts, [source], settings, names=[name])
    _, identical = store.pair_models(list(SAMPLES))
    recorded = Recording(judge)
    labelled = label_with_judge(store, recorded, batch_size=batch)
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in preference_rows(store.ratings())]
    return rows, {"prompts": len(prompts), "source": str(PROMPTS.relative_to(DEFAULT_SET.parents[2])),
                  "responses": 2 * len(prompts), "identical_skipped": identical, "judged": labelled["labelled"],
                  "decided": len(rows), "ties": labelled["verdicts"]["tie"],
                  "position_flipped": sum(j.flipped for j in recorded.seen), "max_new_tokens": max_new,
                  "temperature": temperature}
