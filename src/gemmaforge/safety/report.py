"""What `sft filter` writes: kept rows, drops (each with its reason), and a report in JSON and markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..util.paths import write_atomic
from .filter import FilterResult

KEPT, DROPS, REPORT_JSON, REPORT_MD = OUTPUTS = ("kept.jsonl", "drops.jsonl", "report.json", "report.md")
EXAMPLES_PER_REASON, EXAMPLE_CHARS = 3, 240


def _preview(row: dict[str, Any]) -> str:
    if "messages" in row:
        text = " | ".join(f"{m['role']}: {m['content']}" for m in row["messages"])
    else:
        text = f"prompt: {row.get('prompt', '')} | response: {row.get('response', row.get('completion', ''))}"
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def build_report(result: FilterResult, source: str, pii: str) -> dict[str, Any]:
    reasons = result.reasons()
    examples: dict[str, list[dict]] = {}
    for d in result.dropped:
        group = examples.setdefault(d["reason"], [])
        if len(group) < EXAMPLES_PER_REASON:
            group.append({"line": d["line"], "detail": d["detail"], "text": _preview(d["row"])})
    total = len(result.kept) + len(result.dropped)
    return {"input": source, "rows": total, "kept": len(result.kept), "dropped": len(result.dropped),
            "threshold": result.threshold, "pii": pii, "drops_by_reason": dict(sorted(reasons.items())),
            "masked_rows_by_rule": dict(sorted(result.masked.items())), "examples": examples}


def report_markdown(r: dict[str, Any]) -> str:
    lines = [f"# SFT filter report: {r['input']}", "",
             f"{r['rows']} rows: {r['kept']} kept, {r['dropped']} dropped (safety threshold {r['threshold']:.3f}, "
             f"personal data: {r['pii']}).", "", "| reason | rows |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in r["drops_by_reason"].items()] or ["| (none) | 0 |"]
    if r["masked_rows_by_rule"]:
        lines += ["", "Kept rows with personal data masked: "
                  + ", ".join(f"{k} {v}" for k, v in r["masked_rows_by_rule"].items()) + "."]
    for reason, group in r["examples"].items():
        lines += ["", f"## `{reason}` (examples)", ""]
        lines += [f"- line {e['line']} ({e['detail']}): {e['text']}" for e in group]
    return "\n".join(lines) + "\n"


def write_outputs(result: FilterResult, out: Path, source: str, pii: str) -> dict[str, Any]:
    """Write the four files atomically; returns the report."""
    def jsonl(rows):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    report = build_report(result, source, pii)
    write_atomic(out / KEPT, jsonl(result.kept))
    write_atomic(out / DROPS, jsonl(result.dropped))
    write_atomic(out / REPORT_JSON, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    write_atomic(out / REPORT_MD, report_markdown(report).encode())
    return report
