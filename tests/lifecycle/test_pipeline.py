"""`gemmaforge pipeline --quick` end to end (the suite's longest test: a real tokenizer, data
prepare, pre-training, judge selection with the shipped gemma3-270m, SFT, AI-feedback pairs, a reward
model, RLOO and evaluation), then the cache: a rerun skips everything, --from re-runs the tail,
a hand-deleted output is one clear error. The report opens in headless Chromium."""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from gemmaforge.cli import main
from gemmaforge.lifecycle.config import load_config
from gemmaforge.lifecycle.errors import PipelineError
from gemmaforge.lifecycle.graph import LAYOUT_VERSION, RUN_FILE, stage_keys
from gemmaforge.lifecycle.launch import split_batch
from gemmaforge.lifecycle.stages import policy_stage, stages

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/lib/chromium/chromium-headless-shell"
NAMES = [s.name for s in stages(None)]

pytestmark = pytest.mark.real  # the judge is the shipped gemma3-270m


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["pipeline", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def statuses(out: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split() and line.split()[0] in NAMES}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "run"
    assert main(["pipeline", "--quick", "--no-progress", "--output", str(out)]) == 0
    return out


def test_quick_runs_every_stage_and_reports(quick):
    report = json.loads((quick / "report.json").read_text())
    assert list(report["stages"]) == NAMES
    assert all(s["done"] for s in report["stages"].values())
    st = report["stages"]
    assert st["data"]["summary"]["total_tokens"] > 0 and st["data"]["summary"]["drops"]  # filters dropped some
    assert st["pretrain"]["summary"]["train_loss"] < 7.0 < 1e9 and len(st["pretrain"]["metrics"]) >= 10
    assert st["select"]["summary"]["pairs_judged"] == 4 and st["select"]["summary"]["judge"] == "gemma3-270m"
    safety = st["safety"]["summary"]
    assert safety["kept"] + safety["dropped"] == 4  # every selected example is scored (or passed, when absent)
    assert ("skipped" in safety) == (importlib.util.find_spec("gemmaforge.safety") is None)
    assert st["prefs"]["summary"]["pairs"] >= 1
    assert "accuracy" in st["reward"]["summary"]["validation"] or st["reward"]["summary"]["validation"]
    assert any("rollout/reward" in row for row in st["rlhf"]["metrics"])
    ev = st["eval"]["summary"]
    assert set(ev["results"]) == {"pretrain", "sft", "rlhf"} and ev["results"]["sft"]["arc_easy"]["acc"]["n"] == 10
    assert all(len(v) == 2 for v in ev["samples"].values())
    html = (quick / "report.html").read_text()
    assert "data:image/png;base64," in html and "position-biased" in html
    assert "src=\"http" not in html and "href=\"http" not in html and "<script" not in html
    assert json.loads((quick / RUN_FILE).read_text())["layout"] == LAYOUT_VERSION
    assert (quick / "model").resolve() == (quick / st["rlhf"]["dir"] / "model").resolve()  # what chat loads
    code = main(["generate", "--model", str(quick / "model"), "--max-new-tokens", "2", "Hi"])
    assert code == 0


def test_rerun_skips_finished_stages(quick, capsys):
    code, out, _ = run(capsys, "--quick", "--output", str(quick))
    assert code == 0 and set(statuses(out).values()) == {"cached"}


def test_changing_one_stage_rekeys_it_and_what_follows_only(tmp_path):
    graph = stages(None)
    base = load_config(None, True, {s.name for s in graph if s.trains})
    (tmp_path / "c.toml").write_text("[sft.train]\nmax_steps = 7\n")
    changed = load_config(tmp_path / "c.toml", True, {s.name for s in graph if s.trains})
    a, b = stage_keys(graph, base, None), stage_keys(graph, changed, None)
    same = [n for n in NAMES if a[n] == b[n]]
    assert same == ["tokenizer", "data", "pretrain", "select", "safety"]
    (tmp_path / "e.toml").write_text('[eval]\ntasks = ["arc_easy", "piqa"]\n')  # data decontaminates against them
    c = stage_keys(graph, load_config(tmp_path / "e.toml", True, {s.name for s in graph if s.trains}), None)
    assert [n for n in NAMES if a[n] == c[n]] == ["tokenizer"]


def test_dpo_method_replaces_rlhf_and_reads_the_pairs_not_the_reward_model(tmp_path):
    (tmp_path / "d.toml").write_text('[rlhf]\nmethod = "dpo"\n')
    (tmp_path / "r.toml").write_text('[rlhf]\nmethod = "dpo"\n[reward.train]\nmax_steps = 3\n')
    graph = stages(None, "dpo")
    names = [s.name for s in graph]
    assert names == [n for n in NAMES if n != "rlhf"][:-1] + ["dpo", "eval"]
    assert {s.name: s.inputs for s in graph}["dpo"] == ("sft", "prefs")
    trains = {s.name for s in graph if s.trains}
    a, b = (stage_keys(graph, load_config(tmp_path / f, True, trains), None) for f in ("d.toml", "r.toml"))
    assert [n for n in names if a[n] != b[n]] == ["reward"]  # dpo and eval do not read the reward model
    (tmp_path / "x.toml").write_text('[rlhf]\nmethod = "ppo"\n')
    with pytest.raises(PipelineError, match="rlhf.method: 'ppo' is not one of rl, dpo"):
        policy_stage(load_config(tmp_path / "x.toml", True, trains))


def test_torchrun_micro_batch_divides_each_ranks_share():
    assert [split_batch(g, m, 2, "sft") for g, m in ((4, 4), (2, 2), (12, 4), (16, 16))] == [2, 1, 3, 8]
    with pytest.raises(PipelineError, match=r"\[sft.train\] global_batch = 3 cannot be shared by --nproc 2"):
        split_batch(3, 1, 2, "sft")


def test_from_reruns_the_stage_and_after_keeping_the_old_output(quick, capsys):
    code, out, _ = run(capsys, "--quick", "--output", str(quick), "--from", "rlhf")
    s = statuses(out)
    assert code == 0 and s["rlhf"] == "ran" and s["eval"] == "ran"
    assert {s[n] for n in NAMES[:-2]} == {"cached"}
    assert list((quick / "stages").glob("rlhf-*.previous/run/checkpoints"))


def test_report_opens_in_chromium_without_console_errors(quick):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium-headless-shell)")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto((quick / "report.html").as_uri())
        assert page.locator("h1").inner_text().startswith("gemmaforge pipeline")
        assert page.locator("img").count() >= 4  # curves of pretrain, sft, reward, rlhf
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-artifacts" / "pipeline-report.png"), full_page=True)
        browser.close()
    assert errors == [] and requests == []


def test_hand_deleted_output_is_one_clear_error_and_nothing_is_lost(quick, capsys):
    model = next((quick / "stages").glob("sft-*[!s]/model"))
    aside = quick.parent / "sft-model-aside"
    model.rename(aside)
    before = sorted(p.name for p in (quick / "stages").iterdir())
    try:
        code, _, err = run(capsys, "--quick", "--output", str(quick))
        assert code == 2 and "stage sft" in err and "model is gone" in err and "Traceback" not in err
        assert sorted(p.name for p in (quick / "stages").iterdir()) == before
    finally:
        aside.rename(model)


@pytest.mark.parametrize("args, message", [
    (["--from", "pretraining"], "--from pretraining: no such stage"),
    (["--only", "nope"], "--only nope: no such stage"),
])
def test_unknown_stage_name(tmp_path, capsys, args, message):
    code, _, err = run(capsys, "--output", str(tmp_path / "r"), *args)
    assert code == 2 and message in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("toml, message", [
    ("[sft]\nlearning_rate = 1\n", "config key sft.learning_rate: no stage knows it"),
    ("[rlhf.rl]\nkk = 3\n", "rl.kk"),
    ("[distill]\nx = 1\n", "config key distill: no such stage"),
    ("[run]\nthreds = 1\n", "config key run.threds"),
])
def test_unknown_config_key(tmp_path, capsys, toml, message):
    (tmp_path / "c.toml").write_text(toml)
    code, _, err = run(capsys, "--output", str(tmp_path / "r"), "--config", str(tmp_path / "c.toml"))
    assert code == 2 and message in err and not (tmp_path / "r").exists()


def test_incompatible_run_directory(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / RUN_FILE).write_text(json.dumps({"layout": LAYOUT_VERSION + 1}))
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "--output", str(out))
    assert code == 2 and f"layout {LAYOUT_VERSION + 1}" in err and (out / "keep.txt").read_text() == "mine"
    shutil.rmtree(out)
    out.mkdir()
    (out / "other.txt").write_text("x")
    code, _, err = run(capsys, "--output", str(out))
    assert code == 2 and "is not a pipeline run" in err


def test_human_prefs_wait_for_ratings_on_the_page(quick, capsys):
    """--human --only prefs: the page serves the SFT vs pre-trained pairs and the stage finishes once a
    rater (here a thread speaking the page's HTTP API) has rated them all."""
    port = free_port()
    (quick.parent / "human.toml").write_text(f"[prefs]\nport = {port}\n")
    rated: list[int] = []

    def rater() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/next?rater=tester", timeout=2) as r:
                    pair = json.loads(r.read())["pair"]
            except OSError:
                time.sleep(0.2)
                continue
            if pair is None:
                return
            body = json.dumps({"rater": "tester", "pair_id": pair["pair_id"], "choice": "left"}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/rate", body,
                                         {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=5).read()
            rated.append(pair["pair_id"])

    thread = threading.Thread(target=rater, daemon=True)
    thread.start()
    code, out, err = run(capsys, "--quick", "--output", str(quick), "--human", "--only", "prefs",
                         "--config", str(quick.parent / "human.toml"))
    thread.join(timeout=10)
    assert code == 0 and statuses(out) == {"prefs": "ran"} and f"http://127.0.0.1:{port}/" in err
    prefs = json.loads((quick / "report.json").read_text())["stages"]["prefs"]  # the report of this config
    assert prefs["summary"]["judge"] == "human (rating page)" and prefs["summary"]["pairs"] == len(rated) >= 1
    assert len((quick / prefs["dir"] / "pairs.jsonl").read_text().splitlines()) == len(rated)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "done.json").read_text())["summary"]


def test_data_stage_on_ray_writes_the_same_shards(quick, capsys):
    """--data-backend ray (a local Ray instance) re-runs `data` under the same key and writes the
    local run's shards byte for byte, so the stages after it stay valid."""
    pytest.importorskip("ray", reason="the Ray backend is the optional extra gemmaforge[ray]")
    code, out, _ = run(capsys, "--quick", "--output", str(quick), "--data-backend", "ray", "--only", "data")
    assert code == 0 and statuses(out) == {"data": "ran"}
    new = next(p for p in (quick / "stages").glob("data-*") if not p.name.endswith(".previous"))
    old = new.with_name(new.name + ".previous")
    shards = json.loads((new / "shards" / "manifest.json").read_text())["shards"]
    assert shards and shards == json.loads((old / "shards" / "manifest.json").read_text())["shards"]
    assert _summary(new)["drops"] == _summary(old)["drops"]
    code, out, _ = run(capsys, "--quick", "--output", str(quick))
    assert code == 0 and set(statuses(out).values()) == {"cached"}


def test_quick_run_on_ray_and_two_gloo_ranks_trains_what_one_process_does(quick, tmp_path, capsys):
    """The whole `--quick` pipeline with the data stage on a local Ray instance and every training
    stage under torchrun (`gemmaforge VERB --config STAGE_DIR/train.json`, 2 gloo ranks, DDP): the
    same stage keys as the single-process run, and each training stage reaches its loss."""
    pytest.importorskip("ray", reason="the Ray backend is the optional extra gemmaforge[ray]")
    out = tmp_path / "scaled"
    code, printed, _ = run(capsys, "--quick", "--output", str(out), "--data-backend", "ray", "--nproc", "2")
    assert code == 0 and set(statuses(printed).values()) == {"ran"}
    def keys(run_dir: Path) -> list[str]:
        return sorted(p.name for p in (run_dir / "stages").iterdir() if not p.name.endswith(".previous"))

    assert keys(out) and set(keys(out)) <= set(keys(quick))  # quick may hold more (other tests' variants)
    for stage in ("pretrain", "sft", "reward", "rlhf"):
        new = next((out / "stages").glob(f"{stage}-*"))
        one, two = _summary(quick / "stages" / new.name), _summary(new)
        assert json.loads((new / "train.json").read_text())["out_dir"] == str(new / "run")
        newest = sorted((new / "run" / "checkpoints").iterdir())[-1]
        assert json.loads((newest / "trainer.json").read_text())["world_size"] == 2, stage
        assert two["steps"] == one["steps"], stage
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4, abs=1e-5), stage
    data = next((out / "stages").glob("data-*"))
    assert json.loads((data / "shards" / "manifest.json").read_text())["shards"] == \
        json.loads((quick / "stages" / data.name / "shards" / "manifest.json").read_text())["shards"]


def test_killed_training_stage_resumes_at_its_checkpoint(quick, tmp_path, capsys):
    """kill -9 of the pipeline in the middle of `pretrain` (a longer run of it, under its own key),
    then the same command again: the stage resumes from its newest checkpoint, not from step 0."""
    (tmp_path / "long.toml").write_text("[pretrain.train]\nmax_steps = 12\n[pretrain.checkpoint]\ninterval = 3\n")
    command = ["pipeline", "--quick", "--no-progress", "--output", str(quick), "--config", str(tmp_path / "long.toml"),
               "--only", "pretrain"]
    proc = subprocess.Popen([sys.executable, "-m", "gemmaforge", *command], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    graph = stages(None)
    key = stage_keys(graph, load_config(tmp_path / "long.toml", True, {g.name for g in graph if g.trains}), None)
    stage = quick / "stages" / f"pretrain-{key['pretrain']}"
    deadline = time.monotonic() + 300
    try:
        while not list(stage.glob("run/checkpoints/step-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage finished before its first checkpoint was seen"
    killed_at = max(int(d.name.split("-")[-1]) for d in (stage / "run" / "checkpoints").glob("step-*"))
    assert not (stage / "done.json").exists() and 3 <= killed_at < 12
    code, out, _ = run(capsys, *command[1:])
    assert code == 0 and statuses(out) == {"pretrain": "resumed"}
    summary = _summary(stage)
    assert summary["resumed_from"] == killed_at and summary["steps"] == 12
