"""`gemmaforge pipeline --base gemma3-270m --quick` with `[rlhf] method = "dpo"`, end to end: the
shipped model is post-trained with LoRA (SFT, a reward model, DPO) under its own quick settings,
the report has every stage, and the tuned models' greedy replies are no more repetitive than the
base model's own (the tiny model's learning rates turned them into loops: "bottlebottlebottle…")."""

import json
import zlib
from pathlib import Path

import pytest

from gemmaforge.cli import main

pytestmark = pytest.mark.real


def compressibility(text: str) -> float:
    """zlib size over raw size: a loop ("bottlebottlebottle…") compresses far below prose."""
    raw = text.encode()
    return len(zlib.compress(raw, 9)) / max(len(raw), 1)


def test_compressibility_tells_loops_from_prose():
    prose = "The capital of France is Paris, a city on the Seine known for its museums."
    assert compressibility("bottle" * 12) < 0.4 * compressibility(prose)


def test_base_track_with_dpo(tmp_path: Path):
    (tmp_path / "dpo.toml").write_text('[rlhf]\nmethod = "dpo"\n')
    out = tmp_path / "run"
    assert main(["pipeline", "--base", "gemma3-270m", "--quick", "--no-progress", "--output", str(out),
                 "--config", str(tmp_path / "dpo.toml")]) == 0
    check_base_report(out)


def check_base_report(out: Path) -> None:
    report = json.loads((out / "report.json").read_text())
    st = report["stages"]
    assert list(st) == ["select", "safety", "sft", "prefs", "reward", "dpo", "eval"] and report["base"] == "gemma3-270m"
    assert all(s["done"] for s in st.values())
    assert st["sft"]["summary"]["trainable_parameters"] < st["sft"]["summary"]["parameters"] / 10  # LoRA
    assert st["dpo"]["summary"]["kind"] == "dpo" and st["dpo"]["metrics"]
    config = json.loads((out / st["sft"]["dir"] / "train.json").read_text())
    assert config["optim"]["lr"] == 2e-4 and config["model"]["init_from"] == "gemma3-270m"  # base.toml's rate
    ev = st["eval"]["summary"]
    assert set(ev["results"]) == {"pretrain", "sft", "dpo"}
    assert all("acc" in ev["results"][m]["arc_easy"] for m in ev["results"])
    for stage in ("sft", "dpo"):  # the shipped model is pre-trained only: its own greedy replies repeat already
        for tuned, base in zip(ev["samples"][stage], ev["samples"]["pretrain"]):
            assert compressibility(tuned) >= 0.8 * compressibility(base), ev["samples"]
    assert (out / "model").resolve() == (out / st["dpo"]["dir"] / "model").resolve()
    html = (out / "report.html").read_text()
    assert "<h2>dpo</h2>" in html and "Evaluation across stages" in html
