"""Build the embedded default SFT set (src/gemmaforge/train/sft_default/) from offline data.

    pip download --no-deps bigbench==1.0.0 -d /tmp/bb      # the sdist (358 MB); nothing is installed
    python scripts/build_sft_default.py --bigbench /tmp/bb/bigbench-1.0.0.tar.gz

Sources (see docs/sft.md for licenses):
- BIG-bench's natural-instructions tasks (input/target pairs, read straight from the sdist);
  `HELD_OUT` whole tasks never enter training and are written to heldout.jsonl.gz for evaluation;
- the `evals` package's registry: chat prompts with an `ideal` answer (read as files, not imported),
  a few records per dataset file so no single dataset dominates.
Every example is deduplicated (normalised prompt + response) and decontaminated: an example
sharing a 13-word n-gram (or a whole short field) with any item of gemmaforge's evaluation tasks is
dropped (gemmaforge.eval.decontam's n-grams, matched with gemmaforge.data.decontam). The counts of
what was kept and dropped, by reason, go to manifest.json.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import importlib.util
import json
import os
import random
import tarfile
from collections import Counter
from pathlib import Path

from gemmaforge.data.decontam import EvalNgrams
from gemmaforge.data.text import words
from gemmaforge.eval.decontam import DEFAULT_N, export_ngrams
from gemmaforge.eval.tasks import TASKS

OUT = Path(__file__).resolve().parents[1] / "src" / "gemmaforge" / "train" / "sft_default"
# Whole tasks held out for evaluation (never trained on): short, checkable targets of varied kinds.
HELD_OUT_COUNT = 6
PER_TASK = 60  # natural-instructions examples kept per training task
PER_HELD_OUT_TASK = 40
PER_EVALS_FILE = 6
MAX_PROMPT, MAX_RESPONSE = 2000, 400  # characters: a small model, short rows
VAL_SHARE = 0.03


def natural_instructions(sdist: Path) -> dict[str, list[dict]]:
    """{task name: [{"input", "target"}]} from the sdist's natural_instructions/*/task.json; the
    input is the task's instructions (`task_prefix`, its definition and prompt) then the example's."""
    tasks: dict[str, list[dict]] = {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and parts[-1] == "task.json" and "natural_instructions" in parts[:-2]:
                task = json.load(tar.extractfile(member))
                name = parts[parts.index("natural_instructions") + 1]
                prefix = task.get("task_prefix", "").strip()
                tasks[name] = [{"input": f"{prefix}\n\n{e['input'].strip()}".strip(), "target": _first(e["target"])}
                               for e in task.get("examples", []) if _first(e.get("target")) is not None]
    return tasks


def _first(target) -> str | None:
    if isinstance(target, list):
        target = target[0] if target else None
    return target if isinstance(target, str) and target.strip() else None


def evals_chats(rng: random.Random) -> list[dict]:
    """Chats with ideal answers from the evals registry: leading system messages folded into the
    first user turn (so every Gemma family renders them), user/assistant turns alternating."""
    root = Path(importlib.util.find_spec("evals").origin).parent / "registry" / "data"
    out = []
    for path in sorted(glob.glob(str(root / "**" / "*.jsonl"), recursive=True)):
        try:
            records = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        except (OSError, ValueError):
            continue
        usable = [m for r in records if (m := _chat(r)) is not None]
        for messages in rng.sample(usable, min(PER_EVALS_FILE, len(usable))):
            out.append({"messages": messages, "source": "evals/" + os.path.relpath(path, root)})
    return out


def _chat(record) -> list[dict] | None:
    if not isinstance(record, dict) or not isinstance(record.get("input"), list):
        return None
    ideal = _first(record.get("ideal"))
    if ideal is None or len(ideal) > MAX_RESPONSE:
        return None
    system, turns = [], []
    for m in record["input"]:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or set(m) - {"role", "content"}:
            return None
        if m["role"] == "system" and not turns:
            system.append(m["content"].strip())
        elif m["role"] in ("user", "assistant"):
            turns.append({"role": m["role"], "content": m["content"]})
        else:
            return None
    roles = [t["role"] for t in turns]
    if not turns or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2) or \
            roles[-1] != "user" or sum(len(t["content"]) for t in turns) > MAX_PROMPT:
        return None
    if system:
        turns[0] = {"role": "user", "content": "\n\n".join(system + [turns[0]["content"].strip()])}
    return turns + [{"role": "assistant", "content": ideal}]


def pair(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def key(messages: list[dict]) -> str:
    return " ".join(words(" ".join(m["content"] for m in messages)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bigbench", required=True, type=Path, help="bigbench-1.0.0.tar.gz (pip download)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    tasks = natural_instructions(args.bigbench)
    # tasks built from a benchmark gemmaforge evaluates on are left out whole, before any n-gram check
    from_eval_sets = sorted(n for n in tasks if any(t in n for t in TASKS))
    names = sorted(set(tasks) - set(from_eval_sets))
    held_out = sorted(rng.sample(names, HELD_OUT_COUNT))
    examples, heldout = [], []
    for name in names:
        fitting = [e for e in tasks[name] if len(e["input"]) <= MAX_PROMPT and len(e["target"]) <= MAX_RESPONSE]
        if name in held_out:
            heldout += [{"task": name, "prompt": e["input"], "target": e["target"]}
                        for e in rng.sample(fitting, min(PER_HELD_OUT_TASK, len(fitting)))]
        else:
            examples += [{"messages": pair(e["input"], e["target"]), "source": f"natural_instructions/{name}"}
                         for e in rng.sample(fitting, min(PER_TASK, len(fitting)))]
    examples += evals_chats(rng)

    index = export_ngrams(list(TASKS))
    ngrams = EvalNgrams.from_records([{"item": k, "n": DEFAULT_N, "ngrams": sorted(v)} for k, v in index.items()
                                      if v])
    dropped: Counter = Counter()
    contaminated: Counter = Counter()
    seen, kept = set(), []
    for ex in examples:
        k = key(ex["messages"])
        if k in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(k)
        hits, items = ngrams.matches(" \n ".join(m["content"] for m in ex["messages"]))
        if hits:
            dropped["contaminated"] += 1
            contaminated.update(i.split("/")[0] for i in items)
            continue
        kept.append(ex)
    clean_heldout = [h for h in heldout if not ngrams.matches(h["prompt"] + " \n " + h["target"])[0]]
    dropped["heldout_contaminated"] = len(heldout) - len(clean_heldout)

    rng.shuffle(kept)
    n_val = max(1, int(len(kept) * VAL_SHARE))
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "val.jsonl.gz", kept[:n_val])
    write(OUT / "train.jsonl.gz", kept[n_val:])
    write(OUT / "heldout.jsonl.gz", clean_heldout)
    sources = Counter(ex["source"].split("/")[0] for ex in kept)
    trained_tasks = sorted({ex["source"].split("/", 1)[1] for ex in kept if ex["source"].startswith("natural_")})
    manifest = {"built_by": "scripts/build_sft_default.py", "seed": args.seed, "bigbench": args.bigbench.name,
                "train": len(kept) - n_val, "val": n_val, "heldout": len(clean_heldout),
                "heldout_tasks": held_out, "training_tasks": len(trained_tasks),
                "tasks_from_eval_benchmarks_excluded": from_eval_sets,
                "tasks_without_short_examples": sorted(set(names) - set(held_out) - set(trained_tasks)),
                "sources": dict(sources), "dropped": dict(dropped),
                "contaminated_by_eval_task": dict(contaminated), "decontamination_n": DEFAULT_N,
                "limits": {"per_task": PER_TASK, "per_evals_file": PER_EVALS_FILE,
                           "max_prompt_chars": MAX_PROMPT, "max_response_chars": MAX_RESPONSE}}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


def write(path: Path, records: list[dict]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data, mtime=0))


if __name__ == "__main__":
    main()
