"""report.json and report.html: one self-contained page (inline CSS, curves as base64 PNGs, no
external resource) saying what each stage took in and gave out, the curves, the evaluation across
stages with standard errors, side-by-side samples, wall times, versions and the exact config."""

from __future__ import annotations

import base64
import html
import io
import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

from ..util.paths import write_atomic
from .graph import DONE

CURVES = ("loss", "val_loss", "reward", "kl", "accuracy", "margin")
JUDGE_NOTE = ("The judge is the shipped gemma3-270m, a small pre-trained model: it is strongly position-biased "
              "(benchmarks/results/judge_270m.md), so its verdicts here show the mechanism, not quality. "
              "Bring a larger judge (select.judge / prefs.judge: any model source or an OpenAI-compatible endpoint).")


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "run" / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _curve_png(rows: list[dict[str, Any]], title: str) -> str | None:
    """The stage's curves (one panel per metric it logged), base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in sorted({k for r in rows for k in r}) if any(c in n for c in CURVES)
             and any(isinstance(r.get(n), (int, float)) for r in rows)][:6]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = [(r["step"], r[name]) for r in rows if isinstance(r.get(name), (int, float)) and "step" in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _versions() -> dict[str, str]:
    import torch

    from .. import __version__ as gf_version

    return {"gemmaforge": gf_version, "python": sys.version.split()[0], "torch": torch.__version__,
            "platform": platform.platform()}


def build(run: Path, graph, dirs: dict[str, Path], config: dict[str, Any], opts) -> dict[str, Any]:
    stages = {}
    for s in graph:
        d = dirs[s.name]
        done = d / DONE
        record = json.loads(done.read_text()) if done.exists() else None
        stages[s.name] = {"dir": str(d.relative_to(run)), "inputs": list(s.inputs), "done": record is not None,
                          "wall_s": record["wall_s"] if record else None,
                          "summary": record["summary"] if record else None,
                          "metrics": _metrics(d) if s.trains else []}
    return {"stages": stages, "config": config, "versions": _versions(), "quick": opts.quick, "base": opts.base,
            "notes": [JUDGE_NOTE]}


def write_report(run: Path, graph, dirs, config, opts) -> dict[str, Any]:
    report = build(run, graph, dirs, config, opts)
    write_atomic(run / "report.json", (json.dumps(report, indent=2, default=str) + "\n").encode())
    write_atomic(run / "report.html", render(report).encode())
    return report


# -- HTML ------------------------------------------------------------------------------------
CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top;overflow-wrap:anywhere}th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.5em 1em}.skip{color:#a60}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.5em;max-height:12em;overflow:auto;font-size:12px}
img{max-width:100%}details{margin:.4em 0}.sample{max-width:28em;white-space:pre-wrap;font-size:12px}"""


_STAGE_MODEL = re.compile(r"\S*/stages/(\w+)-[0-9a-f]+/model")


def _short(name: str) -> str:
    """A candidate named by its stage ("sft@temperature=1.0"), not by its directory."""
    return _STAGE_MODEL.sub(r"\1", name)


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else _e(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _stage_html(name: str, st: dict[str, Any]) -> str:
    s = st["summary"]
    if s is None:
        return "<p class=skip>not run</p>"
    parts = []
    if name == "tokenizer":
        parts.append(f"<p>{s['vocab_size']} pieces; <code>&lt;start_of_turn&gt;</code>={s['start_of_turn']}, "
                     f"<code>&lt;end_of_turn&gt;</code>={s['end_of_turn']}.</p><pre>{_e(s['example']['pieces'])}</pre>")
    elif name == "data":
        rows = [[_e(k), _num(v["documents_read"]), _num(v["documents_kept"]), _num(v["tokens_kept"])]
                for k, v in s["sources"].items()]
        parts.append(f"<p>{s['total_tokens']:,} tokens in {s['blocks']} blocks of {s['seq_len']}; "
                     f"{s['contaminated']} documents dropped as contaminated with the eval tasks.</p>")
        parts.append(_table(["source", "documents read", "kept", "tokens kept"], rows))
        drops = [[_e(stage), _e(reason), e["count"], "".join(f"<pre>{_e(x['text'])}</pre>" for x in e["examples"][:1])]
                 for stage, reasons in s["drops"].items() for reason, e in reasons.items()]
        if drops:
            parts.append("<h3>Dropped, by reason (one example each)</h3>" +
                         _table(["stage", "reason", "documents", "example"], drops))
    elif name in ("select", "prefs"):
        rows = [[_e(_short(c)), v["games"], _num(v["win_rate"]), _e([round(x, 2) for x in v["win_rate_ci95"]]),
                 v["selected"]] for c, v in s.get("candidates", {}).items()]
        if "pairs_judged" not in s:  # --human: people rated the pairs
            parts.append(f"<p>rated by {_e(s.get('raters'))} on the rating page; the SFT model won "
                         f"{_num(s.get('sft_win_rate'))} of the decided pairs.</p>")
        else:
            parts.append(f"<p>judge {_e(s.get('judge'))}: {s.get('pairs_judged')} pairs judged in both orders; "
                         f"tie rate {_num(s.get('tie_rate'))}, position-flip rate "
                         f"{_num(s.get('position_flip_rate'))}, first-position win rate "
                         f"{_num(s.get('first_position_win_rate'))}.</p>")
        if rows:
            parts.append(_table(["candidate", "games", "win rate", "95% CI", "selected"], rows))
        if name == "prefs":
            parts.append(f"<p>{s['pairs']} preference pairs ({s['decided_by_mean_probability']} decided by the mean "
                         "of both orders' probabilities after a position flip).</p>")
        parts.append("<details><summary>examples</summary><pre>" +
                     _e(json.dumps(s.get("examples", []), indent=1, ensure_ascii=False)) + "</pre></details>")
    elif name == "safety":
        if "skipped" in s:
            parts.append(f"<p class=skip>Skipped: {_e(s['skipped'])} ({s['kept']} examples passed through).</p>")
        else:
            parts.append(f"<p>kept {s['kept']}, dropped {s['dropped']} at score ≥ {s['threshold']}.</p><pre>"
                         + _e(json.dumps(s["examples"], indent=1, ensure_ascii=False)) + "</pre>")
    elif name == "eval":
        return ""
    else:
        keys = ("parameters", "trainable_parameters", "steps", "train_loss", "val_loss", "tokens_trained")
        rows = [[k, _num(s[k])] for k in keys if s.get(k) is not None]
        if name in ("reward", "dpo") and s.get("validation"):
            rows += [[f"validation {k}", _num(v)] for k, v in s["validation"].items()]
        for label in ("held_out_before", "held_out_after"):
            if s.get(label):
                rows.append([f"{label} mean reward", f"{s[label]['mean_reward']:.3f} ± {s[label]['stderr']:.3f} "
                             f"(n={s[label]['n']})"])
        parts.append(_table(["", "value"], rows))
    png = _curve_png(st["metrics"], name) if st["metrics"] else None
    if png:
        parts.append(f'<img alt="{_e(name)} curves" src="data:image/png;base64,{png}">')
    return "".join(parts)


def _eval_html(s: dict[str, Any] | None) -> str:
    if not s:
        return "<p class=skip>evaluation not run</p>"
    models = list(s["results"])
    metrics = sorted({(t, m) for r in s["results"].values() for t, ms in r.items() for m in ms})
    rows = [[_e(f"{t} {m}")] + [f"{v['value']:.3f} ± {v['stderr']:.3f}" if isinstance(v.get("stderr"), float)
                                 else _num(v["value"]) for v in (s["results"][x][t][m] for x in models)]
            for t, m in metrics]
    out = _table(["metric (± standard error)", *models], rows)
    empty = "<i>(empty reply)</i>"
    srows = [[f"<div class=sample>{_e(p)}</div>"] +
             [f"<div class=sample>{_e(s['samples'][x][i]) or empty}</div>" for x in models]
             for i, p in enumerate(s["prompts"])]
    return out + "<h3>Samples (greedy, same prompts)</h3>" + _table(["prompt", *models], srows)


def render(report: dict[str, Any]) -> str:
    st = report["stages"]
    times = [[_e(n), _num(v["wall_s"], 1) if v["wall_s"] is not None else "–", "done" if v["done"] else "not run"]
             for n, v in st.items()]
    body = [f"<h1>gemmaforge pipeline{' --quick' if report['quick'] else ''}"
            f"{' --base ' + _e(report['base']) if report['base'] else ''}</h1>",
            "".join(f"<p class=note>{_e(n)}</p>" for n in report["notes"]),
            "<h2>Stages</h2>", _table(["stage", "wall time (s)", "status"], times + [[
                "<b>total</b>", _num(sum(v["wall_s"] or 0 for v in st.values()), 1), ""]]),
            "<h2>Evaluation across stages</h2>", _eval_html(st.get("eval", {}).get("summary"))]
    for name, v in st.items():
        if name != "eval":
            body.append(f"<h2>{_e(name)}</h2>{_stage_html(name, v)}")
    versions = [[_e(k), _e(v)] for k, v in report["versions"].items()]
    body.append("<h2>Versions</h2>" + _table(["package", "version"], versions))
    body.append("<h2>Config</h2><pre>" + _e(json.dumps(report["config"], indent=1)) + "</pre>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>gemmaforge pipeline report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
