"""A toy reward-model-style run for the tests: a Gemma (from `model.init_from`) plus a 2-way head
learns whether a sequence's last token (one of 16 ids) is even. `python head_run.py CONFIG [--resume]`."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from gemmaforge.train.config import TrainConfig
from gemmaforge.train.distributed import init_distributed
from gemmaforge.train.loop import Trainer
from gemmaforge.train.modules import ModelWithHead, freeze
from gemmaforge.train.objective import TOKENS
from gemmaforge.train.pretrain import initial_model

SEQ = 12
IDS = 16


def parity_batch(seed: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, IDS, (rows, SEQ), generator=torch.Generator().manual_seed(seed))
    return ids, ids[:, -1] % 2


class HeadObjective:
    def loss(self, model, batch):
        ids, labels = batch
        return F.cross_entropy(model(ids), labels), {TOKENS: float(len(ids))}

    def tokens(self, batch):
        return len(batch[0])


class ParitySteps:
    """Step s's micro-batches: a pure function of s."""

    def __init__(self, global_batch: int, micro_batch: int) -> None:
        self.global_batch, self.micro_batch = global_batch, micro_batch

    def micro_batches(self, step):
        ids, labels = parity_batch(step, self.global_batch)
        return [(ids[i:i + self.micro_batch], labels[i:i + self.micro_batch])
                for i in range(0, self.global_batch, self.micro_batch)]

    def position(self, step):
        return step * self.global_batch

    def identity(self):
        return {"task": "parity", "global_batch": self.global_batch}


def build(config: TrainConfig, head_freeze: list[str]) -> ModelWithHead:
    gemma = initial_model(config, init_distributed("cpu"))
    torch.manual_seed(config.train.seed)
    model = ModelWithHead(gemma, n_out=2)
    freeze(model, head_freeze)
    return model


def main(argv: list[str]) -> int:
    config = TrainConfig.load(argv[0])
    t = config.train
    model = build(config, ["gemma.layers.0.*"])
    trainer = Trainer(model, HeadObjective(), ParitySteps(t.global_batch, t.micro_batch), config,
                      init_distributed("cpu"))
    trainer.fit(resume="--resume" in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
