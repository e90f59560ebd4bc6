"""The lifecycle's stages, each a thin call into the library that does the work. A stage reads
its inputs' directories and writes only under its own; what it returns is its summary."""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from ..tokenizer.tokenizer import TOKENIZER_FILE
from ..train.sft import DEFAULT_SET
from ..util.paths import write_atomic
from .errors import PipelineError
from .graph import Context, Stage
from .launch import train

EXAMPLES = 3  # examples kept per reason in the report


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return path


def chat_examples(start: int, n: int, max_chars: int = 300) -> list[dict[str, Any]]:
    """`n` one-turn conversations of the embedded SFT set from position `start` (short ones first
    would bias; the set is already shuffled)."""
    rows = []
    with gzip.open(DEFAULT_SET / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            msgs = json.loads(line)["messages"]
            if [m["role"] for m in msgs] == ["user", "assistant"] and len(msgs[0]["content"]) < max_chars:
                rows.append(msgs)
            if len(rows) >= start + n:
                break
    return rows[start:start + n]


def model_of(ctx: Context, stage: str) -> str:
    """The model a stage produced (a directory with its tokenizer), or --base for `pretrain`."""
    if stage == "pretrain" and ctx.base is not None:
        return ctx.base
    return str(ctx.inputs[stage] / "model")


def train_config(ctx: Context, run_dir: Path, init_from: str | None, **data: Any):
    """The stage's TrainConfig: its own sections plus what the pipeline wires in."""
    from ..train.config import TrainConfig

    table = {k: dict(v) for k, v in ctx.section.items() if isinstance(v, dict)}
    table.setdefault("train", {}).setdefault("seed", ctx.config["run"]["seed"])
    table.setdefault("train", {}).setdefault("device", "cpu")
    table["data"] = {**data, **table.get("data", {})}  # the stage's own [STAGE.data] keys win
    table.setdefault("log", {}).setdefault("progress", True)
    if init_from is not None:
        table.setdefault("model", {})["init_from"] = init_from
    if ctx.base is not None and ctx.stage.name != "pretrain":
        table.setdefault("lora", {}).setdefault("targets", ["q_proj", "k_proj", "v_proj", "o_proj"])
    table["out_dir"] = str(run_dir)
    return TrainConfig.from_dict(table)


# -- tokenizer -------------------------------------------------------------------------------
def corpus_texts(max_docs: int, max_chars: int | None = None):
    """Documents of every default-corpus part in turn, at most `max_docs` a part, `max_chars` in all."""
    from ..data.default_corpus import PARTS

    total = 0
    for part in PARTS.values():
        for _, text in part.documents(max_docs):
            if max_chars is not None and total >= max_chars:
                return
            total += len(text)
            yield text


def run_tokenizer(ctx: Context) -> dict[str, Any]:
    from ..tokenizer.train import train_tokenizer

    s = ctx.section
    tok = train_tokenizer(corpus_texts(ctx.config["data"]["max_docs"], s["max_bytes"]), s["vocab_size"],
                          ctx.out, family=3, num_threads=ctx.config["run"]["threads"])
    return {"vocab_size": tok.vocab_size, "start_of_turn": tok.start_of_turn_id, "end_of_turn": tok.end_of_turn_id,
            "example": {"text": "def add(a, b):\n    return a + b",
                        "pieces": [tok.id_to_piece(i) for i in tok.encode("def add(a, b):\n    return a + b",
                                                                          add_bos=False)]}}


# -- data ------------------------------------------------------------------------------------
def run_data(ctx: Context) -> dict[str, Any]:
    from ..data.config import default_config
    from ..data.pipeline import prepare
    from ..eval.decontam import export_ngrams, write_ngrams
    from ..eval.harness import load_tasks

    s = ctx.section
    ngrams = write_ngrams(export_ngrams(load_tasks(ctx.config["eval"]["tasks"])), ctx.out / "eval-ngrams.jsonl")
    base = default_config(str(ctx.out / "shards"), str(ctx.inputs["tokenizer"]))
    sources = [{"name": x.name, "kind": x.kind, "builtin": x.builtin, "max_docs": s["max_docs"]} for x in base.sources]
    config = default_config(str(ctx.out / "shards"), str(ctx.inputs["tokenizer"]), sources=sources,
                            decontam={"ngrams": str(ngrams)}, seq_len=s["seq_len"], backend=ctx.data_backend,
                            workers=ctx.config["run"]["threads"],
                            seed=ctx.config["run"]["seed"], overwrite=True, mixture={})
    m = prepare(config)
    return {"total_tokens": m.total_tokens, "blocks": m.num_blocks, "seq_len": m.seq_len,
            "sources": {k: vars(v) for k, v in m.sources.items()}, "drops": m.drops,
            "contaminated": len(m.contaminated), "contaminated_examples": m.contaminated[:EXAMPLES],
            "timings_s": m.timings_s}


# -- pre-training ----------------------------------------------------------------------------
def run_pretrain(ctx: Context) -> dict[str, Any]:
    from ..tokenizer import load_tokenizer
    from ..train.pretrain import pretrain
    from ..train.sft import export

    tok = load_tokenizer(str(ctx.inputs["tokenizer"]))
    section = dict(ctx.section)
    section["model"] = {**section.get("model", {}), "vocab_size": tok.vocab_size}
    ctx_model = dataclasses.replace(ctx, config={**ctx.config, "pretrain": section})
    config = train_config(ctx_model, ctx.out / "run", None, train=str(ctx.inputs["data"] / "shards"),
                          seq_len=ctx.config["data"]["seq_len"])
    summary = train(config, "pretrain", ["pretrain"], pretrain, ctx.resume, ctx.out, ctx.launch)
    export(Path(summary["checkpoint"]), ctx.out / "model", tok)
    return summary


# -- SFT data selection ----------------------------------------------------------------------
def _candidates(ctx: Context, specs: list[str]) -> list[str]:
    """`STAGE@settings` names a stage's model (`pretrain`, `sft`); other specs pass through."""
    out = []
    for spec in specs:
        head, at, rest = spec.partition("@")
        if head in ("pretrain", "sft"):
            spec = model_of(ctx, head) + at + rest
        out.append(spec)
    return out


def _judged(ctx: Context, prompts: Path, candidates: list[str], output: Path) -> dict[str, Any]:
    from ..judge import load_judge
    from ..selection.select import SelectOptions, run_select

    s, run = ctx.section, ctx.config["run"]
    return run_select(prompts, _candidates(ctx, candidates),
                      lambda: load_judge(s["judge"], batch_size=s.get("judge_batch", 4)),
                      output, SelectOptions(max_new_tokens=run["max_new_tokens"], batch_size=8))


def run_select_stage(ctx: Context) -> dict[str, Any]:
    convs = chat_examples(0, ctx.config["run"]["prompts"])
    prompts = _write_jsonl(ctx.out / "prompts.jsonl", [{"id": f"p{i}", "messages": c[:1], "responses": {
        "dataset": c[1]["content"]}} for i, c in enumerate(convs)])
    summary = _judged(ctx, prompts, ctx.section["candidates"], ctx.out)
    choices = [json.loads(x) for x in (ctx.out / "choices.jsonl").read_text().splitlines()]
    summary["examples"] = [{"prompt": c[0]["content"], "chosen": ch["chosen"]} for c, ch in
                           zip(convs, choices)][:EXAMPLES]
    return summary


# -- safety ----------------------------------------------------------------------------------
SAFETY_MODULE = "gemmaforge.safety"


def run_safety(ctx: Context) -> dict[str, Any]:
    """Drop selected (prompt, response) pairs `gemmaforge.safety.score` rates unsafe; without that
    module (a later version) the examples pass through and the report says so."""
    rows = [json.loads(x) for x in (ctx.inputs["select"] / "selected.jsonl").read_text().splitlines() if x]
    if importlib.util.find_spec(SAFETY_MODULE) is None:
        _write_jsonl(ctx.out / "train.jsonl", rows)
        return {"skipped": f"{SAFETY_MODULE} is not installed in this version: nothing was filtered",
                "kept": len(rows), "dropped": 0}
    safety = importlib.import_module(SAFETY_MODULE)
    pairs = [(r["messages"][-2]["content"], r["messages"][-1]["content"]) for r in rows]
    scores = safety.score(pairs)
    threshold = ctx.section["threshold"]
    if threshold == "shipped":  # the shipped head's own calibrated threshold
        threshold = importlib.import_module(f"{SAFETY_MODULE}.classifier").default_threshold()
    kept = [r for r, x in zip(rows, scores) if x < threshold]
    dropped = [{"prompt": p, "response": a, "score": x} for (p, a), x in zip(pairs, scores) if x >= threshold]
    _write_jsonl(ctx.out / "train.jsonl", kept)
    return {"kept": len(kept), "dropped": len(dropped), "threshold": threshold, "examples": dropped[:EXAMPLES]}


# -- SFT -------------------------------------------------------------------------------------
def run_sft(ctx: Context) -> dict[str, Any]:
    from ..train.sft import sft

    start = model_of(ctx, "pretrain")
    config = train_config(ctx, ctx.out / "run", start, train=str(ctx.inputs["safety"] / "train.jsonl"),
                          tokenizer=start, seq_len=ctx.config["data"]["seq_len"], pack=False)
    summary = train(config, "sft", ["sft"], sft, ctx.resume, ctx.out, ctx.launch)
    shutil.copytree(Path(summary["model"]), ctx.out / "model", dirs_exist_ok=True)
    return summary


# -- preference pairs (AI feedback) ----------------------------------------------------------
def run_prefs(ctx: Context) -> dict[str, Any]:
    """Two samples of the SFT model per prompt, judged side by side in both orders; the winner is
    `chosen`. A pair the two orders disagree on (a position flip) is decided by the mean of both
    orders' probabilities, and counted."""
    run = ctx.config["run"]
    convs = chat_examples(run["prompts"], run["prompts"])
    if ctx.section["human"]:
        return _human_prefs(ctx, convs)
    prompts = _write_jsonl(ctx.out / "prompts.jsonl", [{"id": f"q{i}", "messages": c[:1]} for i, c in enumerate(convs)])
    summary = _judged(ctx, prompts, ctx.section["samples"], ctx.out / "judged")
    pairs, by_mean = [], 0
    for line in (ctx.out / "judged" / "judgements.jsonl").read_text().splitlines():
        j = json.loads(line)
        p_a = (j["p_a_first"] + j["p_a_second"]) / 2
        if j.get("identical") or (j["verdict"] == "tie" and p_a == 0.5):
            continue
        a_wins = j["verdict"] == "a" if j["verdict"] != "tie" else p_a > 0.5
        by_mean += j["verdict"] == "tie"
        chosen, rejected = (j["response_a"], j["response_b"]) if a_wins else (j["response_b"], j["response_a"])
        if chosen.strip() and rejected.strip():
            pairs.append({"prompt": j["prompt"], "chosen": chosen, "rejected": rejected})
    if not pairs:
        raise PipelineError("prefs: the judge preferred neither sample of any prompt; raise run.prompts")
    _write_jsonl(ctx.out / "pairs.jsonl", pairs)
    return {**summary, "pairs": len(pairs), "decided_by_mean_probability": by_mean, "examples": pairs[:EXAMPLES]}


def _human_prefs(ctx: Context, convs: list[list[dict]]) -> dict[str, Any]:
    """`--human`: people rate the SFT model against the pre-trained one on the rating page."""
    from .human import collect

    run = ctx.config["run"]
    models = [model_of(ctx, "sft"), model_of(ctx, "pretrain")]
    rows = collect(ctx.out, convs, models, ctx.section["port"], run["max_new_tokens"], run["seed"])
    _write_jsonl(ctx.out / "pairs.jsonl", [{"prompt": r["messages"] if "messages" in r else r["prompt"],
                                            "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    wins = sum(r["chosen_model"] == models[0] for r in rows)
    return {"judge": "human (rating page)", "pairs": len(rows), "decided_by_mean_probability": 0,
            "sft_win_rate": wins / len(rows), "raters": sorted({r["rater"] for r in rows}),
            "examples": [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                         for r in rows[:EXAMPLES]]}


# -- reward model ----------------------------------------------------------------------------
def run_reward(ctx: Context) -> dict[str, Any]:
    from ..train.preference_run import reward_train

    start = model_of(ctx, "sft")
    config = train_config(ctx, ctx.out / "run", start, train=str(ctx.inputs["prefs"] / "pairs.jsonl"),
                          tokenizer=start, seq_len=ctx.config["data"]["seq_len"])
    return train(config, "reward", ["reward", "train"], reward_train, ctx.resume, ctx.out, ctx.launch)


# -- RLHF ------------------------------------------------------------------------------------
def run_rlhf(ctx: Context) -> dict[str, Any]:
    from ..train.rl import rlhf

    run = ctx.config["run"]
    convs = chat_examples(2 * run["prompts"], max(run["prompts"], 4), max_chars=120)
    prompts = _write_jsonl(ctx.out / "prompts.jsonl", [{"prompt": c[0]["content"]} for c in convs])
    section = dict(ctx.section)
    rl = dict(section.get("rl", {}))
    rl.setdefault("prompts", str(prompts))
    rl.setdefault("rewards", [{"kind": "reward_model", "target": str(ctx.inputs["reward"] / "run"), "name": "rm"}])
    section["rl"] = rl
    start = model_of(ctx, "sft")
    rctx = dataclasses.replace(ctx, config={**ctx.config, "rlhf": section})
    summary = train(train_config(rctx, ctx.out / "run", start, tokenizer=start), "rlhf", ["rlhf"], rlhf,
                    ctx.resume, ctx.out, ctx.launch)
    shutil.copytree(Path(summary["model"]), ctx.out / "model", dirs_exist_ok=True)
    return summary


# -- DPO (`[rlhf] method = "dpo"`: instead of RL against the reward model) ----------------------
def run_dpo(ctx: Context) -> dict[str, Any]:
    from ..train.preference_run import dpo

    start = model_of(ctx, "sft")
    config = train_config(ctx, ctx.out / "run", start, train=str(ctx.inputs["prefs"] / "pairs.jsonl"),
                          tokenizer=start, seq_len=ctx.config["data"]["seq_len"])
    summary = train(config, "dpo", ["dpo"], dpo, ctx.resume, ctx.out, ctx.launch)
    shutil.copytree(Path(summary["model"]), ctx.out / "model", dirs_exist_ok=True)
    return summary


# -- evaluation ------------------------------------------------------------------------------
POLICY_STAGES = {"rl": "rlhf", "dpo": "dpo"}  # [rlhf] method -> the stage that tunes the policy last


def policy_stage(config: dict[str, Any]) -> str:
    method = config["rlhf"]["method"]
    if method not in POLICY_STAGES:
        raise PipelineError(f"config key rlhf.method: {method!r} is not one of {', '.join(POLICY_STAGES)}")
    return POLICY_STAGES[method]


def run_eval_stage(ctx: Context) -> dict[str, Any]:
    """Every stage's model on the same tasks, and greedy replies to the same prompts."""
    import gemmaforge as gf

    from ..eval import run_eval

    s, run = ctx.section, ctx.config["run"]
    results: dict[str, Any] = {}
    samples: dict[str, list[str]] = {}
    for stage in ("pretrain", "sft", policy_stage(ctx.config)):
        source = model_of(ctx, stage)
        res = run_eval(source, s["tasks"], limit=s["limit"], output_dir=str(ctx.out / stage),
                       threads=run["threads"], batch_size=8)
        results[stage] = {r.task: {name: {"value": m.value, "stderr": m.stderr, "n": r.n}
                                   for name, m in r.metrics.items()} for r in res.tasks}
        model, tok = gf.load_model(source), gf.load_tokenizer(source)
        prompts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
                   for p in run["sample_prompts"]]
        samples[stage] = [t.strip() for t in gf.generate(model, tok, prompts, max_new_tokens=run["max_new_tokens"],
                                                         add_bos=False)]
    return {"results": results, "samples": samples, "prompts": run["sample_prompts"]}


def stages(base: str | None, policy: str = "rlhf") -> list[Stage]:
    """The graph; with --base the tokenizer and pre-training come from the shipped model. `policy`
    (`policy_stage(config)`) is the last training stage: `rlhf`, or `dpo` on the preference pairs."""
    trained = ("run",)
    graph = [
        Stage("tokenizer", (), run_tokenizer, (TOKENIZER_FILE,), reads=("data.max_docs",)),
        Stage("data", ("tokenizer",), run_data, ("shards/manifest.json",), reads=("eval.tasks",)),
        Stage("pretrain", ("tokenizer", "data"), run_pretrain, ("model", *trained), trains=True),
        Stage("select", ("pretrain",), run_select_stage, ("selected.jsonl",)),
        Stage("safety", ("select",), run_safety, ("train.jsonl",)),
        Stage("sft", ("pretrain", "safety"), run_sft, ("model", *trained), trains=True),
        Stage("prefs", ("pretrain", "sft"), run_prefs, ("pairs.jsonl",)),
        Stage("reward", ("sft", "prefs"), run_reward, trained, trains=True),
        Stage("rlhf", ("sft", "reward"), run_rlhf, ("model", *trained), trains=True),
        Stage("dpo", ("sft", "prefs"), run_dpo, ("model", *trained), trains=True),
        Stage("eval", ("pretrain", "sft", policy), run_eval_stage, ()),
    ]
    drop = {"rlhf", "dpo"} - {policy} | ({"tokenizer", "data", "pretrain"} if base is not None else set())
    return [dataclasses.replace(s, inputs=tuple(i for i in s.inputs if i not in drop))
            for s in graph if s.name not in drop]
