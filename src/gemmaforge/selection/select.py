"""`sft select`: answer every prompt with every candidate, judge all pairs side by side in both
orders, keep each prompt's best response as a chat example.

Everything is resumable: responses (responses.jsonl) and judgements (judgements.jsonl) are appended
and flushed as they are made, and a rerun with the same --output skips whatever is already there.
Outputs in the output directory:
  selected.jsonl   {"messages": [... the prompt ..., {"role": "assistant", "content": best}]}
  choices.jsonl    per prompt: the chosen candidate, every candidate's score, any filter drops
  judgements.jsonl every judgement: prompt, both responses, both orders' probabilities, verdict
  summary.json / summary.md  win rates with intervals, tie and position-flip rates
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import InputError
from ..judge import Judge, JudgeItem, Judgement, judge_name
from ..util.paths import writable_dir, write_atomic
from .candidates import Candidate, check_inputs, generate_missing, parse_candidates
from .inputs import PromptRecord, read_prompts
from .log import AppendLog
from .summary import markdown, summarise

# A filter sees (prompt, response) pairs and returns, per pair, None to keep it or a reason code to
# drop it (e.g. gemmaforge.safety's classifier: "safety/unsafe" above a threshold).
FilterFn = Callable[[list[tuple[str, str]]], list[str | None]]


@dataclass(frozen=True)
class SelectOptions:
    max_new_tokens: int = 256
    batch_size: int = 8  # prompts per generation batch
    judge_chunk: int = 8  # pairs per judge call; each call's judgements are saved before the next
    limit: int | None = None  # only the first N prompts
    dtype: torch.dtype = torch.float32
    progress: bool = True


def run_select(prompts: str | Path, candidates: Sequence[str] | None, judge: Judge | Callable[[], Judge],
               output: str | Path, options: SelectOptions = SelectOptions(),
               filter_fn: FilterFn | None = None) -> dict[str, Any]:
    """The whole selection; returns the summary (also written to `output`). `judge` may be a
    function that loads it, called once the inputs are checked (bad input fails before a load)."""
    records = read_prompts(prompts, options.limit)
    cands = parse_candidates(candidates) if candidates else _input_candidates(records, prompts)
    check_inputs(cands, records)
    out = writable_dir(output, InputError, "--output")
    if not isinstance(judge, Judge):  # a loader
        judge = judge()
    _check_run(out / "run.json", {"prompts": str(Path(prompts).resolve()), "candidates": [c.name for c in cands],
                                  "judge": judge_name(judge), "judge_prompt": _prompt_id(judge)})
    with AppendLog(out / "responses.jsonl") as log:
        done = {(r["id"], r["candidate"]) for r in log.records}
        generate_missing(cands, records, done, log.append, max_new_tokens=options.max_new_tokens,
                         batch_size=options.batch_size, dtype=options.dtype, progress=options.progress)
        responses = {(r["id"], r["candidate"]): r["response"] for r in log.records}
    for c in cands:
        if c.input_name is not None:
            responses.update({(r.id, c.name): r.responses[c.input_name] for r in records})
    with AppendLog(out / "judgements.jsonl") as log:
        _judge_missing(records, cands, responses, judge, log, options)
        wanted = {r.id for r in records}
        names = {c.name for c in cands}
        judgements = [j for j in log.records if j["id"] in wanted and {j["candidate_a"], j["candidate_b"]} <= names]
    return _finish(out, records, cands, responses, judgements, judge_name(judge), filter_fn)


def _input_candidates(records: list[PromptRecord], prompts: str | Path) -> list[Candidate]:
    """Without --candidates: the response names every record has."""
    common = set(records[0].responses)
    for r in records[1:]:
        common &= set(r.responses)
    if len(common) < 2:
        raise InputError(f"{prompts}: no --candidates given, and the records do not all share two or more "
                         f"\"responses\" to compare (shared: {sorted(common) or 'none'})")
    return parse_candidates([",".join(f"input:{n}" for n in sorted(common))])


def _prompt_id(judge: Judge) -> str | None:
    prompt = getattr(judge, "prompt", None)
    return getattr(prompt, "fingerprint", None)


def _check_run(path: Path, settings: dict[str, Any]) -> None:
    """A resumed run must have the same prompts, candidates and judge, or its files would mix runs."""
    if path.exists():
        try:
            before = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: unreadable run record ({e}); use a new --output") from None
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            raise InputError(f"{path.parent} holds a run with other {', '.join(changed)} "
                             f"({', '.join(f'{k}={before.get(k)!r}' for k in changed)}); use a new --output "
                             "or the same settings to resume it")
        return
    write_atomic(path, (json.dumps(settings, indent=2) + "\n").encode())


def _judge_missing(records: list[PromptRecord], cands: list[Candidate], responses: dict[tuple[str, str], str],
                   judge: Judge, log: AppendLog, options: SelectOptions) -> None:
    done = {(j["id"], j["candidate_a"], j["candidate_b"]) for j in log.records}
    todo: list[tuple[PromptRecord, str, str]] = []
    for r in records:
        for a, b in combinations([c.name for c in cands], 2):
            if (r.id, a, b) in done:
                continue
            if responses[(r.id, a)] == responses[(r.id, b)]:  # nothing to judge: a tie by definition
                item = JudgeItem(r.question, responses[(r.id, a)], responses[(r.id, b)], r.reference)
                log.append([_record(r, a, b, Judgement(item, 0.5, 0.5, "tie"), identical=True)])
            else:
                todo.append((r, a, b))
    chunks = [todo[k:k + options.judge_chunk] for k in range(0, len(todo), options.judge_chunk)]
    for chunk in tqdm(chunks, desc="judge pairs", unit="chunk", disable=not options.progress):
        items = [JudgeItem(r.question, responses[(r.id, a)], responses[(r.id, b)], r.reference) for r, a, b in chunk]
        results = judge.judge(items)
        log.append([_record(r, a, b, j) for (r, a, b), j in zip(chunk, results)])


def _record(r: PromptRecord, a: str, b: str, j: Judgement, identical: bool = False) -> dict[str, Any]:
    rec = {"id": r.id, "prompt": j.item.prompt, "reference": j.item.reference, "candidate_a": a, "candidate_b": b,
           "response_a": j.item.response_a, "response_b": j.item.response_b, "p_a_first": j.p_a_first,
           "p_a_second": j.p_a_second, "verdict": j.verdict, "flipped": j.flipped,
           "mass_first": j.mass_first, "mass_second": j.mass_second}
    if j.raw_first is not None or j.raw_second is not None:
        rec |= {"raw_first": j.raw_first, "raw_second": j.raw_second}
    if identical:
        rec["identical"] = True
    return rec


def rank(judgements: Sequence[dict[str, Any]], names: Sequence[str]) -> list[tuple[str, float, float]]:
    """Candidates of one prompt, best first, as (name, score, mean probability of winning).
    Score = wins + ties / 2; equal scores go to the higher mean probability, then to the earlier
    candidate in --candidates order, so the choice is deterministic."""
    score = {n: 0.0 for n in names}
    prob: dict[str, list[float]] = {n: [] for n in names}
    for j in judgements:
        a, b, v = j["candidate_a"], j["candidate_b"], j["verdict"]
        score[a] += 1.0 if v == "a" else 0.5 if v == "tie" else 0.0
        score[b] += 1.0 if v == "b" else 0.5 if v == "tie" else 0.0
        p_a = (j["p_a_first"] + j["p_a_second"]) / 2
        prob[a].append(p_a)
        prob[b].append(1 - p_a)
    mean = {n: sum(p) / len(p) if p else 0.5 for n, p in prob.items()}
    order = sorted(range(len(names)), key=lambda i: (-score[names[i]], -mean[names[i]], i))
    return [(names[i], score[names[i]], mean[names[i]]) for i in order]


def _finish(out: Path, records: list[PromptRecord], cands: list[Candidate], responses: dict[tuple[str, str], str],
            judgements: list[dict[str, Any]], judge_label: str, filter_fn: FilterFn | None) -> dict[str, Any]:
    names = [c.name for c in cands]
    keys = [(r, n) for r in records for n in names]
    reasons: list[str | None] = ["input/empty_response" if not responses[(r.id, n)].strip() else None for r, n in keys]
    if filter_fn is not None:
        verdicts = list(filter_fn([(r.question, responses[(r.id, n)]) for r, n in keys]))
        if len(verdicts) != len(keys):
            raise ValueError(f"filter_fn returned {len(verdicts)} verdicts for {len(keys)} pairs")
        reasons = [mine or theirs for mine, theirs in zip(reasons, verdicts)]
    drop = {(r.id, n): why for (r, n), why in zip(keys, reasons) if why}
    by_id: dict[str, list[dict[str, Any]]] = {}
    for j in judgements:
        by_id.setdefault(j["id"], []).append(j)
    selected_lines, choice_lines = [], []
    selected: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for r in records:
        ranking = rank(by_id.get(r.id, []), names)
        best = next((n for n, _, _ in ranking if (r.id, n) not in drop), None)
        choice = {"id": r.id, "chosen": best, "ranking": [{"candidate": n, "score": s, "mean_p_win": p}
                                                         for n, s, p in ranking],
                  "dropped": {n: drop[(r.id, n)] for n in names if (r.id, n) in drop}}
        choice_lines.append(json.dumps(choice, ensure_ascii=False))
        for why in choice["dropped"].values():
            dropped[why] = dropped.get(why, 0) + 1
        if best is None:
            continue
        selected[best] = selected.get(best, 0) + 1
        messages = [*r.messages, {"role": "assistant", "content": responses[(r.id, best)]}]
        selected_lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    summary = summarise(judgements, names, selected, dropped, len(records), judge_label)
    write_atomic(out / "selected.jsonl", "".join(line + "\n" for line in selected_lines).encode())
    write_atomic(out / "choices.jsonl", "".join(line + "\n" for line in choice_lines).encode())
    write_atomic(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    write_atomic(out / "summary.md", markdown(summary).encode())
    return summary
