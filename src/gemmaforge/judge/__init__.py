"""Side-by-side judges: a local model read from its answer-token probabilities, or an
OpenAI-compatible endpoint. Every pair is judged in both orders (see `types`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GemmaForgeError
from .endpoint import EndpointJudge, api_key_from
from .local import LocalJudge
from .prompt import JudgePrompt, load_prompt
from .types import Judge, JudgeError, JudgeItem, Judgement, Verdict, combine, judge_name, order_winner

__all__ = ["EndpointJudge", "Judge", "JudgeError", "JudgeItem", "JudgePrompt", "Judgement", "LocalJudge",
           "Verdict", "combine", "judge_name", "load_judge", "load_prompt", "order_winner"]


def is_endpoint(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def load_judge(source: str, *, model_name: str | None = None, template: str | Path | None = None,
               api_key_env: str = "OPENAI_API_KEY", batch_size: int = 4, dtype: torch.dtype = torch.float32,
               progress: bool = False, retries: int = 4, timeout_s: float = 60.0) -> Judge:
    """A judge from `source`: an endpoint URL ("http://host:port/v1", with `model_name`; the key, if
    any, from the environment variable `api_key_env`) or anything `gemmaforge.load_model` takes.
    An endpoint is contacted once here, so a server that is down fails before any work starts;
    `retries` and `timeout_s` apply to each of its requests."""
    prompt = load_prompt(template)
    if is_endpoint(source):
        if not model_name:
            raise JudgeError(f"judge endpoint {source}: name the model to ask for (--judge-model NAME)")
        judge = EndpointJudge(source, model_name, prompt, api_key=api_key_from(api_key_env), retries=retries,
                              timeout_s=timeout_s)
        judge.check()
        return judge
    if model_name:
        raise JudgeError(f"--judge-model names an endpoint's model; the local judge {source} needs none")
    import gemmaforge as gf  # loads torch weights: import lazily

    try:
        model = gf.load_model(source, dtype=dtype)
        tok = gf.load_tokenizer(source)
    except GemmaForgeError as e:
        raise JudgeError(f"judge {source}: {e}") from None
    return LocalJudge(model, tok, prompt, batch_size=batch_size, name=source, progress=progress)
