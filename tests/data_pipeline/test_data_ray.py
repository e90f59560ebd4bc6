"""The Ray backend (ray.data on a local 2-CPU instance) writes the same bytes as the local run."""

import os
from pathlib import Path

import pytest

from gemmaforge.data import prepare

ray = pytest.importorskip("ray", reason="the Ray backend is the optional extra gemmaforge[ray]")


def test_ray_run_is_byte_identical_to_local(corpus, make_config, spm_tokenizer):
    local = prepare(make_config(corpus, "local", workers=2), tokenizer=spm_tokenizer)
    # Workers unpickle the test tokenizer, whose class lives in data_pipeline.conftest under tests/.
    path = os.pathsep.join(p for p in (str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        remote = prepare(make_config(corpus, "ray", workers=2, backend="ray"), tokenizer=spm_tokenizer)
    finally:
        ray.shutdown()
    assert len(local.shards) > 1
    assert [s["sha256"] for s in remote.shards] == [s["sha256"] for s in local.shards]
    for s in local.shards:
        assert (corpus / "ray" / s["file"]).read_bytes() == (corpus / "local" / s["file"]).read_bytes()
    assert remote.drops == local.drops and remote.contaminated == local.contaminated
