"""The adaptive KL coefficient: Ziegler et al.'s controller by hand and against OpenRLHF's published
`AdaptiveKLController` (the lm-human-preferences / old-TRL code; TRL 1.16 no longer ships one),
and answer extraction for the verifiable reward."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from gemmaforge.train.config import TrainConfig
from gemmaforge.train.errors import TrainError
from gemmaforge.train.kl_control import KLController, adaptive_kl_update
from gemmaforge.train.rewards import extract_answer


def test_adaptive_update_by_hand():
    # KL 9 against a target of 6: error 0.5, clipped to 0.2; 16 rollouts over a horizon of 10000
    assert adaptive_kl_update(0.1, 9.0, 6.0, 16, 10000) == pytest.approx(0.1 * (1 + 0.2 * 16 / 10000), rel=1e-15)
    # KL 5.4: error -0.1, inside the clip; 100 rollouts
    assert adaptive_kl_update(0.1, 5.4, 6.0, 100, 10000) == pytest.approx(0.1 * (1 - 0.1 * 100 / 10000), rel=1e-12)
    # KL 0 (policy = reference): error -1 clipped to -0.2
    assert adaptive_kl_update(0.5, 0.0, 2.0, 50, 100) == pytest.approx(0.5 * 0.9, rel=1e-15)
    fixed = KLController(0.05)
    fixed.update(100.0, 16)
    assert fixed.value == 0.05


def openrlhf_controller():
    """OpenRLHF's kl_controller.py, loaded from its file (the package's __init__ needs deepspeed)."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None:
        pytest.skip("openrlhf is not installed (data-packages.txt installs it --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / "trainer" / "ppo_utils" / "kl_controller.py"
    module_spec = importlib.util.spec_from_file_location("openrlhf_kl_controller", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.AdaptiveKLController


def test_adaptive_controller_follows_openrlhfs_over_a_run():
    Oracle = openrlhf_controller()
    rng = random.Random(0)
    for target, horizon in ((6.0, 10000), (0.5, 40), (2.0, 7)):
        ours, theirs = KLController(0.2, target, horizon), Oracle(0.2, target, horizon)
        for _ in range(200):
            kl, n = rng.uniform(0, 3 * target), rng.randint(1, 64)
            ours.update(kl, n)
            theirs.update(kl, n)
            assert ours.value == pytest.approx(float(theirs.value), rel=1e-12)
        assert ours.value != 0.2


@pytest.mark.parametrize("change, message", [
    ({"kl_target": 0.0}, "rl.kl_target: must be > 0"),
    ({"kl_target": 1.0, "kl_horizon": 0}, "rl.kl_horizon: must be > 0"),
    ({"kl_target": 1.0, "kl_coef": 0.0}, "rl.kl_coef: must be > 0 with rl.kl_target"),
])
def test_bad_adaptive_settings_are_one_line(change, message):
    with pytest.raises(TrainError, match=message):
        TrainConfig.from_dict({"rl": change})


@pytest.mark.parametrize("reply, answer", [
    ("<think>7 + 5 is 12</think>\n<answer> 12 </answer>\nAnything after.", "12"),  # the tag wins
    ("<answer>3</answer> no, <answer>4</answer>", "4"),  # the last tag, as reasoning-gym's extract_answer
    ("The answer is 17.\n12 + 5 = 17\nThe answer is 9", "17"),  # the first marker, to its line's end
    ("Answer: -4.", "-4"),
    (" 17\n12 + 5 = 17\n3 +", "17"),  # a base model going on after its number
    ("Let me add them\n3/4\nand more words", "3/4"),  # the first bare-number line
    ("work\nwork\n42", "42"),
    ("no number at all\nstill none", "still none"),  # else the last line
    ("", ""),
])
def test_extract_answer(reply, answer):
    assert extract_answer(reply) == answer


def test_extract_answer_agrees_with_reasoning_gyms_on_tags():
    utils = pytest.importorskip("reasoning_gym.utils")
    replies = ("<answer>12</answer>", "x <answer> 5 </answer> y <answer>-3</answer>\nz", "a\n<answer>\n7\n</answer>")
    for reply in replies:
        assert extract_answer(reply) == utils.extract_answer(reply)
