"""Token blocks, the batches of each step, and data paths that cannot be used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sft_helpers import tiny_model

from gemmaforge.train.data import Padding, StepBatches, TokenFile, eval_batches, open_blocks, unigram_entropy
from gemmaforge.train.errors import TrainError
from gemmaforge.train.objective import NextTokenObjective
from gemmaforge.train.validation import LossValidation


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(101, dtype="<u4").tofile(path)
    return path


def test_blocks_overlap_by_one_token(token_file):
    ds = TokenFile(token_file, seq_len=10)
    assert len(ds) == 10
    assert ds[0].tolist() == list(range(11)) and ds[9].tolist() == list(range(90, 101))
    assert ds[3].dtype == np.int64
    with pytest.raises(IndexError):
        ds[10]


def test_every_step_is_a_pure_function_of_the_step(token_file):
    ds = TokenFile(token_file, seq_len=4)  # 25 blocks
    one = StepBatches(ds, global_batch=8, micro_batch=2, seed=3)
    again = StepBatches(ds, global_batch=8, micro_batch=2, seed=3)
    for step in (5, 0, 7, 5):  # any order: nothing depends on what came before
        assert all(torch.equal(a, b) for a, b in zip(one.micro_batches(step), again.micro_batches(step)))
    assert one.accumulation == 4 and one.position(3) == 24


def test_each_epoch_visits_every_block_once(token_file):
    ds = TokenFile(token_file, seq_len=4)  # 25 blocks; 5 steps of 5 = one epoch
    steps = StepBatches(ds, global_batch=5, micro_batch=5, seed=0)
    firsts = [b[0].item() for s in range(5) for b in steps.micro_batches(s)[0]]
    assert sorted(firsts) == [4 * i for i in range(25)]
    nxt = [b[0].item() for s in range(5, 10) for b in steps.micro_batches(s)[0]]
    assert sorted(nxt) == sorted(firsts) and nxt != firsts  # a fresh permutation per epoch


def test_ranks_split_each_global_batch_without_overlap(token_file):
    ds = TokenFile(token_file, seq_len=4)
    single = torch.cat(StepBatches(ds, 8, 2, seed=1).micro_batches(2))
    ranks = [torch.cat(StepBatches(ds, 8, 2, seed=1, rank=r, world_size=2).micro_batches(2)) for r in range(2)]
    assert torch.equal(torch.cat(ranks), single)
    with pytest.raises(TrainError, match="global_batch"):
        StepBatches(ds, 8, 3, seed=1, world_size=2)


def test_validation_share_and_unigram_entropy(token_file):
    ds = TokenFile(token_file, seq_len=10)
    shares = [eval_batches(ds, blocks=7, micro_batch=2, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shares] == [2, 2]  # 4 + 3 blocks: both ranks run as many passes
    assert not any(isinstance(b, Padding) for s in shares for b in s)
    seen = sorted(b[0].item() for s in shares for batch in s for b in batch)
    assert seen == [0, 20, 30, 40, 60, 80, 90]  # 7 blocks spread over all 10, each scored once
    # every target token of those blocks is distinct: entropy = log(count)
    assert unigram_entropy(ds, blocks=6) == pytest.approx(np.log(60))


@pytest.mark.parametrize("blocks, world, micro", [(1, 2, 1), (5, 2, 2), (3, 4, 1), (2, 2, 4)])
def test_validation_pads_short_shares_and_scores_each_block_once(token_file, blocks, world, micro):
    ds = TokenFile(token_file, seq_len=10)
    shares = [eval_batches(ds, blocks, micro, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1  # as many forward passes on every rank (FSDP)
    scored = sorted(b[0].item() for s in shares for batch in s if not isinstance(batch, Padding) for b in batch)
    alone = sorted(b[0].item() for batch in eval_batches(ds, blocks, micro) for b in batch)
    assert scored == alone and len(scored) == blocks


def test_padding_weighs_nothing_in_the_validation_loss(token_file):
    ds = TokenFile(token_file, seq_len=10)
    model = tiny_model(vocab=128).eval()
    objective = NextTokenObjective()
    alone = LossValidation(objective, eval_batches(ds, 3, 2), torch.device("cpu")).evaluate(model)
    ranks = [eval_batches(ds, 3, 1, rank=r, world_size=2) for r in range(2)]
    assert isinstance(ranks[1][-1], Padding)  # 2 blocks, then 1 + a padding batch
    padded = LossValidation(objective, ranks[0] + ranks[1], torch.device("cpu")).evaluate(model)
    assert padded["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-6)  # as if the ranks' sums were summed


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope.bin", "does not exist"),
    (lambda d: (d / "odd.bin").write_bytes(b"\0" * 10) and d / "odd.bin", "not a whole number of uint32"),
    (lambda d: np.arange(5, dtype="<u4").tofile(d / "short.bin") or d / "short.bin", "too short"),
    (lambda d: np.array([1, 2, 999] * 20, dtype="<u4").tofile(d / "big.bin") or d / "big.bin",
     "token id 999, outside the model's vocabulary of 512"),
    (lambda d: d, "not a prepared data directory"),
])
def test_unusable_data_paths_stop_with_the_field_named(tmp_path, make, message):
    with pytest.raises(TrainError, match=f"^data.train: .*{message}"):
        open_blocks(make(tmp_path), seq_len=8, vocab_size=512, field="data.train")


class ByteTokenizer:
    """The smallest tokenizer the data pipeline accepts: bytes + 4 specials (ids below 260)."""

    bos_id, eos_id, vocab_size = 2, 1, 260

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return [self.bos_id] * add_bos + [b + 4 for b in text.encode()]


def prepared_dir(tmp_path):
    from gemmaforge.data import DataConfig, DedupConfig, SourceConfig, prepare

    (tmp_path / "docs").mkdir()
    for i in range(30):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document {i}: " + "the quick brown fox " * (5 + i))
    prepare(DataConfig(output=str(tmp_path / "prepared"), tokenizer="unused", seq_len=32, workers=1,
                       progress=False, dedup=DedupConfig(minhash=False),
                       sources=[SourceConfig(name="docs", kind="web", paths=[str(tmp_path / "docs")])]),
            tokenizer=ByteTokenizer())
    return tmp_path / "prepared"


def test_reads_a_directory_prepared_by_the_data_pipeline(tmp_path):
    pytest.importorskip("gemmaforge.data")
    path = prepared_dir(tmp_path)
    ds = open_blocks(path, seq_len=16, vocab_size=512, field="data.train")  # re-windowed from 32
    assert len(ds) > 10 and ds[0].shape == (17,) and ds[0][0] == ByteTokenizer.bos_id
    batches = StepBatches(ds, global_batch=4, micro_batch=2, seed=0).micro_batches(0)
    assert [b.shape for b in batches] == [(2, 17), (2, 17)] and batches[0].dtype == torch.long
    with pytest.raises(TrainError, match=r"^data.train: .*260-piece vocabulary, larger than the model's 256"):
        open_blocks(path, seq_len=16, vocab_size=256, field="data.train")
