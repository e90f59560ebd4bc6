"""Candidates: who answers the prompts.

    SRC                               any `gemmaforge.load_model` source, greedy
    SRC@temperature=0.7,top_p=0.9     one model with its own sampling settings (several may share SRC)
    input:NAME                        the responses named NAME already in the prompts file

Specs come comma-separated; `key=value` pieces after a `SRC@...` piece belong to it, so
"m@temperature=0.7,top_p=0.9,m@temperature=0" is two candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..errors import CheckpointError, GemmaForgeError, InputError
from ..inference.sampling import Sampling
from ..weights.sources import resolve
from .inputs import PromptRecord

SAMPLING_KEYS = {"temperature": float, "top_k": int, "top_p": float, "repetition_penalty": float, "seed": int}
INPUT_PREFIX = "input:"


@dataclass(frozen=True)
class Candidate:
    name: str  # the spec as written: how outputs and the summary name it
    source: str | None  # model source, or None for responses from the input file
    sampling: dict = field(default_factory=dict, hash=False)
    input_name: str | None = None


def parse_candidates(specs: Iterable[str]) -> list[Candidate]:
    """Candidates from one or more comma-separated spec strings; names must be distinct."""
    pieces: list[str] = []
    for spec in specs:
        for piece in (p.strip() for p in spec.split(",")):
            if not piece:
                raise InputError(f"--candidates {spec!r}: an empty entry")
            if "=" in piece and "@" not in piece and pieces and "@" in pieces[-1]:
                pieces[-1] += "," + piece  # another setting of the previous model
            else:
                pieces.append(piece)
    out = [_candidate(p) for p in pieces]
    names = [c.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"--candidates: {', '.join(dupes)} given twice")
    if len(out) < 2:
        raise InputError(f"--candidates: need at least two candidates to compare, got {len(out)}")
    return out


def _candidate(spec: str) -> Candidate:
    if spec.startswith(INPUT_PREFIX):
        name = spec[len(INPUT_PREFIX):]
        if not name:
            raise InputError(f"--candidates {spec!r}: name the responses (input:NAME)")
        return Candidate(spec, None, input_name=name)
    source, _, settings = spec.partition("@")
    sampling: dict = {}
    for kv in filter(None, settings.split(",")):
        key, eq, value = kv.partition("=")
        if not eq or key not in SAMPLING_KEYS:
            raise InputError(f"--candidates {spec!r}: {kv!r} is not a sampling setting "
                             f"({', '.join(k + '=...' for k in SAMPLING_KEYS)})")
        try:
            sampling[key] = SAMPLING_KEYS[key](value)
        except ValueError:
            raise InputError(f"--candidates {spec!r}: {key} must be a number, got {value!r}") from None
    Sampling(**sampling)  # bad values fail here, not mid-run
    try:
        resolve(source)  # an unknown source fails before any model loads
    except CheckpointError as e:
        raise InputError(f"--candidates {spec!r}: unknown candidate source: {e}") from None
    return Candidate(spec, source, sampling)


def check_inputs(candidates: list[Candidate], records: list[PromptRecord]) -> None:
    """Every `input:NAME` candidate has a response in every record."""
    for c in candidates:
        if c.input_name is None:
            continue
        for r in records:
            if c.input_name not in r.responses:
                raise InputError(f"{r.where}: no response named {c.input_name!r} (candidate {c.name}); "
                                 f"this record has {sorted(r.responses) or 'none'}")


def generate_missing(candidates: list[Candidate], records: list[PromptRecord], done: set[tuple[str, str]],
                     save: Callable[[list[dict]], None], *, max_new_tokens: int, batch_size: int,
                     dtype: torch.dtype = torch.float32, progress: bool = True) -> None:
    """Generate every (record, model candidate) response not in `done`, a batch at a time through
    `gemmaforge.generate`, calling `save` with each batch's records as soon as it is made. Each
    model loads once for all candidates that sample from it."""
    import gemmaforge as gf

    index = {r.id: i for i, r in enumerate(records)}
    by_source: dict[str, list[Candidate]] = {}
    for c in candidates:
        if c.source is not None:
            by_source.setdefault(c.source, []).append(c)
    for source, group in by_source.items():
        todo = [(c, r) for c in group for r in records if (r.id, c.name) not in done]
        if not todo:
            continue
        try:
            model, tok = gf.load_model(source, dtype=dtype), gf.load_tokenizer(source)
        except GemmaForgeError as e:
            raise InputError(f"candidate source {source!r}: {e}") from None
        for c in group:
            rows = [r for cc, r in todo if cc is c]
            rows.sort(key=lambda r: -sum(len(m["content"]) for m in r.messages))  # similar lengths batch together
            batches = [rows[k:k + batch_size] for k in range(0, len(rows), batch_size)]
            for batch in tqdm(batches, desc=f"generate {c.name}", unit="batch", disable=not progress):
                prompts = [tok.apply_chat_template(list(r.messages), add_generation_prompt=True, system="fold")
                           for r in batch]
                # each prompt samples from the stream of (seed, its index in the file): the same
                # response whatever batch it lands in, so a resumed run matches an uninterrupted one
                texts = gf.generate(model, tok, prompts, max_new_tokens=max_new_tokens, truncate=True,
                                    sampling=Sampling(**c.sampling), sample_ids=[index[r.id] for r in batch])
                save([{"id": r.id, "candidate": c.name, "response": t.strip()} for r, t in zip(batch, texts)])
