"""Mixture selection, shard writing and the PackedDataset reader the trainer uses."""

import json

import numpy as np
import pytest

from gemmaforge.data import DataError, PackedDataset, mix
from gemmaforge.data.pack import MANIFEST, ShardWriter


def test_mixture_natural_keeps_every_document_once():
    kinds = ["web"] * 5 + ["code"] * 3
    order, stats = mix(kinds, [10, 20, 30, 40, 50, 5, 5, 5], {}, None, seed=0)
    assert sorted(order) == list(range(8))
    assert stats["web"].epochs == 1.0 and stats["code"].selected_tokens == 15
    assert order == mix(kinds, [10, 20, 30, 40, 50, 5, 5, 5], {}, None, seed=0)[0]
    assert order != mix(kinds, [10, 20, 30, 40, 50, 5, 5, 5], {}, None, seed=1)[0]


def test_mixture_weights_downsample_and_upsample():
    kinds = ["web"] * 100 + ["maths"] * 10
    tokens = [10] * 110  # web 1000 tokens, maths 100
    order, stats = mix(kinds, tokens, {"web": 0.5, "maths": 0.5}, None, seed=0)
    assert stats["maths"].selected_tokens == 100 and stats["web"].selected_tokens == 100  # maths limits
    order, stats = mix(kinds, tokens, {"web": 0.5, "maths": 0.5}, 600, seed=0)
    assert stats["maths"].epochs == 3.0 and stats["web"].selected_tokens == 300
    assert sum(1 for i in order if i >= 100) == 30 and len({i for i in order if i >= 100}) == 10
    order, stats = mix(kinds, tokens, {"web": 1.0, "maths": 0.0}, None, seed=0)
    assert all(i < 100 for i in order) and stats["maths"].selected_tokens == 0


def _write(tmp_path, docs, shard_tokens, seq_len):
    w = ShardWriter(tmp_path, shard_tokens)
    for d in docs:
        w.write(np.asarray(d, dtype=np.uint32))
    w.close()
    total = sum(s["tokens"] for s in w.shards)
    (tmp_path / MANIFEST).write_text(json.dumps({"seq_len": seq_len, "total_tokens": total, "shards": w.shards}))
    return w.shards


def test_packed_dataset_blocks_cross_shards(tmp_path):
    stream = np.arange(1000, dtype=np.uint32) * 7 + 300_000  # ids above 2**16 survive
    shards = _write(tmp_path, [stream[:333], stream[333:900], stream[900:]], shard_tokens=128, seq_len=64)
    assert [s["tokens"] for s in shards] == [128] * 7 + [104] and all(len(s["sha256"]) == 64 for s in shards)
    ds = PackedDataset(tmp_path)
    assert len(ds) == (1000 - 1) // 64
    for i in (0, 1, 7, len(ds) - 1, -1):
        j = i % len(ds)
        np.testing.assert_array_equal(ds[i], stream[j * 64: j * 64 + 65].astype(np.int64))
    assert ds[3].dtype == np.int64 and ds[3].shape == (65,)
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert len(PackedDataset(tmp_path, seq_len=10)) == 99  # the same stream re-windowed


def test_order_is_deterministic_and_resumable(tmp_path):
    _write(tmp_path, [np.arange(2000)], shard_tokens=500, seq_len=16)
    ds = PackedDataset(tmp_path)
    n = len(ds)
    assert sorted(ds.order(0, 0)) == list(range(n))
    it = ds.iterate(seed=3)
    first = [next(it) for _ in range(n + 10)]  # into the second epoch
    assert [p for p, _ in first] == list(range(n + 10))
    assert {tuple(b[:2]) for _, b in first[:n]} == {tuple(ds[i][:2]) for i in range(n)}  # an epoch covers all
    resumed = ds.iterate(seed=3, start=first[50][0])
    for p, b in first[50:]:
        q, c = next(resumed)
        assert q == p and np.array_equal(b, c)
    ranks = [ds.iterate(seed=3, rank=r, world_size=2) for r in (0, 1)]
    got = [next(ranks[r])[0] for _ in range(5) for r in (0, 1)]
    assert sorted(got) == list(range(10))
    pos, batch = next(ds.batches(4, seed=3))
    assert batch.shape == (4, 17) and pos == 4
    _, batch2 = next(ds.batches(4, seed=3, start=pos))
    np.testing.assert_array_equal(batch2, np.stack([b for _, b in first[4:8]]))


def test_reader_rejects_damaged_output(tmp_path):
    with pytest.raises(DataError, match="not a prepared data directory"):
        PackedDataset(tmp_path)
    shards = _write(tmp_path, [np.arange(300)], shard_tokens=100, seq_len=16)
    (tmp_path / shards[1]["file"]).write_bytes(b"\0" * 12)
    with pytest.raises(DataError, match="tokens-00001.bin"):
        PackedDataset(tmp_path)
