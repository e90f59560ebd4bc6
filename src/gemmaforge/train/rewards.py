"""Rewards for RL: a Python function, a verifiable maths answer (reasoning-gym), a trained reward
model, or a weighted sum of these. Each scores a batch of (prompt, response, meta) and must give
finite numbers; anything else stops the run with a message naming the reward and the sample."""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TrainError

Scorer = Callable[[Sequence[str], Sequence[str], Sequence[dict]], list[float]]


@dataclass(frozen=True)
class RewardSpec:
    kind: str  # "function" | "reasoning_gym" | "reward_model"
    weight: float = 1.0
    target: str = ""  # function: "module:name" or "file.py:name"; reward_model: a run or checkpoint
    name: str = ""  # how the reward is logged (default: kind)


def load_function(target: str) -> Callable[..., float]:
    """`reward(prompt, response, **meta) -> float` named "package.module:function" or "path.py:function"."""
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise TrainError(f"reward function {target!r}: name it as module:function or file.py:function")
    try:
        if where.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(where).stem, where)
            if spec is None or not Path(where).is_file():
                raise TrainError(f"reward function {target!r}: no such file {where}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(where)
        fn = getattr(module, attr)
    except (ImportError, AttributeError, SyntaxError) as e:
        raise TrainError(f"reward function {target!r}: {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise TrainError(f"reward function {target!r} is not callable")
    return fn


def function_scorer(fn: Callable[..., float], label: str) -> Scorer:
    def score(prompts: Sequence[str], responses: Sequence[str], metas: Sequence[dict]) -> list[float]:
        out = []
        for i, (p, r, m) in enumerate(zip(prompts, responses, metas)):
            try:
                value = float(fn(p, r, **m))
            except Exception as e:  # the user's code: any failure is reported, not raised through
                raise TrainError(f"reward {label} failed on sample {i} (prompt {p[:60]!r}): "
                                 f"{type(e).__name__}: {e}") from None
            out.append(value)
        return out
    return score


def reasoning_gym_score(prompt: str, response: str, entry: dict | None = None, dataset: str = "", **_: Any) -> float:
    """reasoning-gym's own checker for the answer in `response` (its `score_answer`, in [0, 1])."""
    import reasoning_gym

    if entry is None or not dataset:
        raise TrainError("a reasoning_gym reward needs prompts made by a reasoning-gym dataset "
                         "(meta 'entry' and 'dataset')")
    return float(reasoning_gym.get_score_answer_fn(dataset)(answer=extract_answer(response), entry=entry))


_TAGGED = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)  # reasoning_gym.utils.extract_answer's
_MARKER = re.compile(r"answer is|answer:", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d+)?|\.\d+)(/\d+)?")


def extract_answer(response: str) -> str:
    """The final answer of a reply, in this order of preference:
    1. the last `<answer>…</answer>` (reasoning-gym's own prompt convention and `extract_answer`);
    2. after the first "answer is" / "Answer:", up to the end of that line (a small model that goes on
       to invent further questions and answers, as base models do after a few-shot prompt);
    3. the first line that is a bare number (a model that states the number and keeps talking);
    4. the last non-empty line.
    A trailing full stop is dropped."""
    tagged = _TAGGED.findall(response)
    if tagged:
        return tagged[-1].strip()
    marker = _MARKER.search(response)
    if marker:
        return _clean(response[marker.end():].lstrip().split("\n", 1)[0])
    lines = [_clean(line) for line in response.splitlines() if _clean(line)]
    return next((line for line in lines if _NUMBER.fullmatch(line)), lines[-1] if lines else "")


def _clean(text: str) -> str:
    return text.strip().rstrip(".").strip()


def build_scorer(spec: RewardSpec, tokenizer: Any) -> Scorer:
    label = spec.name or spec.kind
    if spec.kind == "function":
        return function_scorer(load_function(spec.target), label)
    if spec.kind == "reasoning_gym":
        return function_scorer(reasoning_gym_score, label)
    if spec.kind == "reward_model":
        from .preference_run import load_reward_model, score

        model = load_reward_model(spec.target)
        from ..tokenizer import load_tokenizer

        rm_tok = load_tokenizer(spec.target)
        if rm_tok.serialized_model_proto() != tokenizer.serialized_model_proto():
            raise TrainError(f"reward model {spec.target}: its tokenizer differs from the policy's")
        return lambda prompts, responses, metas: score(model, tokenizer, list(prompts), list(responses))
    raise TrainError(f"rl.rewards: unknown kind {spec.kind!r}; use function, reasoning_gym or reward_model")


def total_rewards(specs: Sequence[RewardSpec], scorers: Sequence[Scorer], prompts: Sequence[str],
                  responses: Sequence[str], metas: Sequence[dict]) -> tuple[list[float], dict[str, float]]:
    """The weighted sum per sample, and each part's mean (for the log). NaN or infinite values stop."""
    total = [0.0] * len(responses)
    parts = {}
    for spec, scorer in zip(specs, scorers):
        values = scorer(prompts, responses, metas)
        label = spec.name or spec.kind
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise TrainError(f"reward {label} returned {values[bad[0]]} for sample {bad[0]} "
                             f"(prompt {prompts[bad[0]][:60]!r}); rewards must be finite numbers")
        total = [t + spec.weight * v for t, v in zip(total, values)]
        parts[f"rollout/reward_{label}"] = sum(values) / len(values)
    return total, parts
