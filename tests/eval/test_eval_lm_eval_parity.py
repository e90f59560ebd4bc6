"""Item-by-item agreement with lm-eval 0.4.13 (dev extra, the oracle): for a handful of items of
every multiple-choice task, lm-eval's own task configs, fed the same offline documents (no
download), build exactly the prompts and continuations gemmaforge builds, and turn the same
log-likelihoods into the same acc / acc_norm. No model runs.

The deliberate differences (docs/eval.md, "Agreement with lm-eval"), encoded here exactly:
outside MMLU, lm-eval samples exemplars from a train split the offline data does not have;
gemmaforge samples them from the evaluation split, so lm-eval is handed gemmaforge's exemplars for
each item (first-n sampler) and must then render the identical prompt. With the chat template
(Gemma's real one), the template's newline after `<start_of_turn>model` stays in gemmaforge's
context, and MMLU's subject line is not a separate system message.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

import gemmaforge
from gemmaforge.eval import get_task
from gemmaforge.eval.gemma_lm import GemmaLM
from gemmaforge.eval.harness import select
from gemmaforge.eval.lm import LoglikRequest, LoglikResult
from gemmaforge.eval.tasks import Item, MultipleChoiceTask

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is the oracle (pip install -e '.[dev]')")
datasets = pytest.importorskip("datasets")
from lm_eval.api.samplers import FirstNSampler  # noqa: E402
from lm_eval.api.task import ConfigurableTask  # noqa: E402
from lm_eval.tasks._yaml_loader import load_yaml  # noqa: E402

TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"
#: gemmaforge task -> lm-eval's config for it
CONFIGS = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "winogrande": "winogrande/default.yaml",
}
ITEMS = 4


def as_lm_eval_doc(name: str, doc: dict) -> dict:
    """The document in the schema lm-eval's config reads. Only BoolQ differs: the offline data is
    the `boolq` dataset (`answer`: bool), lm-eval reads SuperGLUE's copy (`label`: 0/1) of the same
    passages and questions."""
    return {**doc, "label": int(doc["answer"])} if name == "boolq" else doc


def lm_eval_task(config: str, eval_docs: list[dict], fewshot_docs: list[dict]) -> ConfigurableTask:
    """lm-eval's task from its own YAML, its dataset replaced by these documents (no network)."""
    cfg = load_yaml(TASKS_DIR / config)
    cfg.pop("tag", None)
    splits = {"train": fewshot_docs, "validation": eval_docs, "test": eval_docs, "dev": fewshot_docs}
    data = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})
    cfg["custom_dataset"] = lambda **kwargs: data
    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    return ConfigurableTask(config=cfg)


def use_exemplars(task: ConfigurableTask, docs: list[dict]) -> None:
    """Make lm-eval take exactly these exemplars, in this order (its own processing applied)."""
    ds = datasets.Dataset.from_list(docs) if docs else []
    if docs and task.config.process_docs is not None:
        ds = task.config.process_docs(ds)
    task.sampler = FirstNSampler(list(ds), rnd=None)


def lm_eval_pairs(task: ConfigurableTask, doc: dict, shots: int, chat_template=None) -> list[tuple[str, str]]:
    chat = {"apply_chat_template": True, "chat_template": chat_template} if chat_template else {}
    context = task.fewshot_context(doc, shots, **chat)
    requests = task.construct_requests(doc, context, metadata=("t", 0, 1), apply_chat_template=bool(chat))
    return [tuple(r.arguments) for r in requests]


def lm_eval_verdict(task: ConfigurableTask, doc: dict, lls: list[float]) -> dict[str, float]:
    out = task.process_results(doc, [(ll, False) for ll in lls])
    return {k: float(v) for k, v in out.items() if k in ("acc", "acc_norm")}


def our_verdict(task: MultipleChoiceTask, item: Item, lls: list[float]) -> dict[str, float]:
    reqs = task.requests(item, 0)
    return task.score(item, reqs, [LoglikResult(ll, False, 1) for ll in lls]).verdict


def _whitespace_item(task: MultipleChoiceTask) -> Item:
    """An item with a choice that starts or ends with a space (where stripping changes acc_norm)."""
    return next(it for it in task.load() if any(c != c.strip() for c in task.choices(it.doc)))


def _length_scaled_lls(choices: list[str], rng: random.Random) -> list[float]:
    """Log-likelihoods near -(length of each choice): acc_norm decided by a few per cent."""
    return [-len(c) * rng.uniform(0.9, 1.1) for c in choices]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prompts_continuations_and_metrics_equal_lm_evals(name):
    ours = get_task(name)
    items = select(ours.load(), ITEMS)
    if name == "hellaswag":
        items.append(_whitespace_item(ours))
    theirs = lm_eval_task(CONFIGS[name], [as_lm_eval_doc(name, it.doc) for it in items],
                          [as_lm_eval_doc(name, items[0].doc)])
    docs = list(theirs.eval_docs)
    rng = random.Random(0)
    for item, doc in zip(items, docs):
        for shots in (0, 2):
            exemplars = ours.exemplars(item, shots)
            use_exemplars(theirs, [as_lm_eval_doc(name, x.doc) for x in exemplars])
            mine = [(r.context, r.continuation) for r in ours.requests(item, shots)]
            assert mine == lm_eval_pairs(theirs, doc, shots), (name, item.id, shots)
        for _ in range(20):
            lls = _length_scaled_lls(ours.choices(item.doc), rng)
            assert our_verdict(ours, item, lls) == lm_eval_verdict(theirs, doc, lls), (name, item.id, lls)


def test_acc_norm_divides_by_the_unstripped_choice_like_lm_eval():
    """The sensitivity of the comparison above: on a HellaSwag item whose ending has a leading or
    trailing space, dividing by the stripped length picks another answer for some scores, and
    lm-eval agrees with the unstripped division."""
    ours = get_task("hellaswag")
    item = _whitespace_item(ours)
    theirs = lm_eval_task(CONFIGS["hellaswag"], [item.doc], [item.doc])
    doc = next(iter(theirs.eval_docs))
    choices = ours.choices(item.doc)
    rng = random.Random(1)
    flips = 0
    for _ in range(200):
        lls = _length_scaled_lls(choices, rng)
        stripped = max(range(len(lls)), key=lambda i: lls[i] / len(choices[i].strip()))
        unstripped = max(range(len(lls)), key=lambda i: lls[i] / len(choices[i]))
        assert our_verdict(ours, item, lls) == lm_eval_verdict(theirs, doc, lls)
        flips += stripped != unstripped
    assert flips > 0


def test_mmlu_prompts_with_five_dev_exemplars_equal_lm_evals():
    """lm-eval's per-subject config (description line, first five of the dev split, options
    rendered verbatim) builds gemmaforge's prompt, on items from several subjects, including one
    whose options carry surrounding spaces."""
    ours = get_task("mmlu")
    items = select(ours.load(), ITEMS)
    items.append(next(it for it in ours.load() if any(c != c.strip() for c in it.doc["choices"])))
    assert len({it.group for it in items}) > 2
    rng = random.Random(0)
    for item in items:
        dev = [x.doc for x in ours.fewshot_pool(item)]
        theirs = lm_eval_task(f"mmlu/default/mmlu_{item.group}.yaml", [item.doc], dev)
        doc = next(iter(theirs.eval_docs))
        for shots in (0, 5):
            mine = [(r.context, r.continuation) for r in ours.requests(item, shots)]
            assert mine == lm_eval_pairs(theirs, doc, shots), (item.id, shots)
        lls = [rng.uniform(-5, 0) for _ in range(4)]
        assert our_verdict(ours, item, lls) == lm_eval_verdict(theirs, doc, lls)


class _NoModel:
    """GemmaLM needs a model only to score; building the chat tokens needs none."""

    config = type("Config", (), {"max_seq_len": 1 << 20})()

    def eval(self):
        return self


@pytest.fixture(scope="module")
def chat_lm():
    tok = gemmaforge.load_tokenizer("gemma3-270m")
    return GemmaLM(_NoModel(), tok, chat=True)


def _template(tok):
    return lambda messages, add_generation_prompt=True: tok.apply_chat_template(messages, add_generation_prompt)


def _chat_tokens(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's chat-mode strings as token ids, the template's trailing newline kept in the context
    (lm-eval's HF backend would move it into the continuation: the documented difference)."""
    ctx = tok.encode(context)
    return ctx, tok.encode(context + continuation)[len(ctx):]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_chat_mode_tokens_equal_lm_evals_chat_prompts(name, chat_lm):
    """With Gemma's real chat template, lm-eval's chat prompt (exemplars folded into one user turn,
    no target delimiter) tokenises to exactly what GemmaLM scores."""
    ours, tok = get_task(name), chat_lm.tok
    items = select(ours.load(), 2)
    theirs = lm_eval_task(CONFIGS[name], [as_lm_eval_doc(name, it.doc) for it in items],
                          [as_lm_eval_doc(name, items[0].doc)])
    for item, doc in zip(items, theirs.eval_docs):
        use_exemplars(theirs, [as_lm_eval_doc(name, x.doc) for x in ours.exemplars(item, 2)])
        pairs = lm_eval_pairs(theirs, doc, 2, _template(tok))
        assert all(c.endswith("<start_of_turn>model\n") for c, _ in pairs)
        mine = [chat_lm._encode_pair(r) for r in ours.requests(item, 2)]
        assert mine == [_chat_tokens(tok, c, t) for c, t in pairs], (name, item.id)


def test_chat_mode_mmlu_differs_from_lm_eval_only_by_its_system_message(chat_lm):
    """lm-eval makes MMLU's subject line a system message, which Gemma's template folds into the
    user turn with a blank line of its own: two blank lines before the first question. gemmaforge
    keeps the prompt exactly as without the template."""
    ours, tok = get_task("mmlu"), chat_lm.tok
    for item in select(ours.load(), 2):
        theirs = lm_eval_task(f"mmlu/default/mmlu_{item.group}.yaml", [item.doc],
                              [x.doc for x in ours.fewshot_pool(item)])
        header = ours.header(item)
        for c, t in lm_eval_pairs(theirs, next(iter(theirs.eval_docs)), 5, _template(tok)):
            assert header + "\n\n" in c
            mine = chat_lm._encode_pair(LoglikRequest(ours.requests(item, 5)[0].context, " " + t))
            assert mine == _chat_tokens(tok, c.replace(header + "\n\n", header, 1), t)
