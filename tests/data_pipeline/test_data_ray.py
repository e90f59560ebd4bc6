"""The Ray backend (ray.data on a local 2-CPU instance) writes the same bytes as the local run."""

import pytest

from gemmaforge.data import prepare
from gemmaforge.tokenizer import load_tokenizer

ray = pytest.importorskip("ray", reason="the Ray backend is the optional extra gemmaforge[ray]")


def test_ray_run_is_byte_identical_to_local(corpus, make_config, gemma_tokenizer_dir):
    tok = load_tokenizer(gemma_tokenizer_dir)  # the real Tokenizer travels to the Ray actors
    local = prepare(make_config(corpus, "local", workers=2), tokenizer=tok)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = prepare(make_config(corpus, "ray", workers=2, backend="ray"), tokenizer=tok)
    finally:
        ray.shutdown()
    assert len(local.shards) > 1
    assert [s["sha256"] for s in remote.shards] == [s["sha256"] for s in local.shards]
    for s in local.shards:
        assert (corpus / "ray" / s["file"]).read_bytes() == (corpus / "local" / s["file"]).read_bytes()
    assert remote.drops == local.drops and remote.contaminated == local.contaminated
