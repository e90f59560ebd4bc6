"""Responses generated ahead of time, in batches, so raters never wait for a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tqdm import tqdm

from ..inference.sampling import Sampling
from .errors import RateError
from .prompts import Prompt
from .store import RatingStore


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    batch_size: int = 8
    temperature: float = 0.0
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise RateError(f"--max-new-tokens and --batch-size must be >= 1, got {self.max_new_tokens} and "
                            f"{self.batch_size}")
        self.sampling()  # bad sampling settings fail here, before any model loads

    def sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature, top_p=self.top_p, seed=self.seed)


def prompt_ids(tok, prompt: Prompt) -> list[int]:
    """Token ids to continue: chat prompts through the model's chat template, plain ones as text."""
    turns = prompt.turns
    return tok.encode(tok.apply_chat_template(turns) if turns is not None else prompt.text)


def generate_responses(store: RatingStore, prompts: list[Prompt], models: list[str],
                       settings: GenerationSettings = GenerationSettings(), progress: bool = True,
                       names: Sequence[str] | None = None) -> int:
    """Stores each model's response to each prompt; prompts a model already answered are skipped
    (an interrupted run resumes), and each batch is committed as it finishes. Returns responses added.
    `names` (one per model, default the sources) is what the responses are stored under: one source
    sampled twice with two seeds under two names gives two sides to pair (AI-feedback pairs)."""
    import gemmaforge as gf

    names = list(models) if names is None else list(names)
    if len(names) != len(models):
        raise RateError(f"generate_responses: {len(names)} names for {len(models)} models; give one name a model")

    # each prompt samples from its own stream (seed, prompt id): the same text whatever the batch
    sampling = settings.sampling()
    with store.transaction() as c:
        ids = [store.add_prompt(c, p) for p in prompts]
    added = 0
    for source, name in zip(models, names):
        done = store.answered(name)
        todo = [(i, p) for i, p in zip(ids, prompts) if i not in done]
        if not todo:
            continue
        model, tok = gf.load_model(source), gf.load_tokenizer(source)
        bar = tqdm(total=len(todo), desc=f"generating {name}", unit="prompt", disable=not progress)
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start:start + settings.batch_size]
            texts = gf.generate(model, tok, [prompt_ids(tok, p) for _, p in batch],
                                max_new_tokens=settings.max_new_tokens, sampling=sampling,
                                sample_ids=[prompt_id for prompt_id, _ in batch])
            with store.transaction() as c:
                for (prompt_id, _), text in zip(batch, texts):
                    store.add_response(c, prompt_id, name, text, {"generation": asdict(settings)})
            added += len(batch)
            bar.update(len(batch))
        bar.close()
    return added
