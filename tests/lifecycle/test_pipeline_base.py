"""`gemmaforge pipeline --base gemma3-270m --quick` with `[rlhf] method = "dpo"`, end to end: the
shipped model is post-trained with LoRA (SFT, a reward model, DPO) under its own quick settings,
the report has every stage, and the tuned models' greedy replies are not degenerate repetitions
(what the tiny model's learning rates made of the 270M)."""

import json
import zlib
from pathlib import Path

import pytest

from gemmaforge.cli import main

pytestmark = pytest.mark.real


def repetitive(text: str) -> bool:
    """A reply that compresses to under 40% of its bytes is a loop ("bottlebottlebottle…")."""
    raw = text.encode()
    return len(raw) >= 40 and len(zlib.compress(raw, 9)) < 0.4 * len(raw)


def test_repetitive_tells_loops_from_prose():
    assert repetitive("bottle" * 12) and repetitive("The capital. " * 8)
    assert not repetitive("The capital of France is Paris, a city on the Seine known for its museums.")


def test_base_track_with_dpo(tmp_path: Path):
    (tmp_path / "dpo.toml").write_text('[rlhf]\nmethod = "dpo"\n')
    out = tmp_path / "run"
    assert main(["pipeline", "--base", "gemma3-270m", "--quick", "--no-progress", "--output", str(out),
                 "--config", str(tmp_path / "dpo.toml")]) == 0
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
    for stage in ("sft", "dpo"):
        assert not any(repetitive(t) for t in ev["samples"][stage]), ev["samples"]
    assert (out / "model").resolve() == (out / st["dpo"]["dir"] / "model").resolve()
    html = (out / "report.html").read_text()
    assert "<h2>dpo</h2>" in html and "Evaluation across stages" in html
