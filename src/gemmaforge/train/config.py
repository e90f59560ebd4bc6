"""TrainConfig: every knob of a training run, loaded from TOML, checked before any work starts.

A TOML file has one table per section ([model], [data], [optim], [train], [eval],
[checkpoint], [log]) plus top-level `out_dir`. Every error names the offending field, e.g.
`optim.lr: must be > 0, got -1`. In [model], `preset` names a GemmaConfig preset and every other
key overrides one of its fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import GemmaConfig
from ..errors import ConfigError
from ..util import configfile
from .errors import TrainError


@dataclass(frozen=True)
class ModelSection:
    preset: str = "tiny-gemma-mqa"
    init_std: float = 0.02  # std of the normal init of every matrix (pre-training from scratch)
    # start from trained weights: any source gf.load_model takes (then preset and overrides are unused)
    init_from: str | None = None
    freeze: list[str] = field(default_factory=list)  # glob patterns of parameter names not to train
    overrides: dict[str, Any] = field(default_factory=dict, metadata={"extras": True})

    def gemma_config(self) -> GemmaConfig:
        """The config a run from scratch builds (with `init_from`, the source's own config rules)."""
        known = [f.name for f in dataclasses.fields(GemmaConfig)]
        for key in self.overrides:
            if key not in known:
                raise TrainError(f"model.{key}: unknown field; [model] takes preset, init_std and the "
                                 f"GemmaConfig fields {', '.join(known)}")
        try:
            overrides = dict(self.overrides)
            if "n_layers" in overrides and "layer_types" not in overrides:
                pattern = GemmaConfig.preset(self.preset).layer_types
                overrides["layer_types"] = _extend_pattern(pattern, overrides["n_layers"])
            return GemmaConfig.preset(self.preset).replace(**overrides)
        except ConfigError as e:
            raise TrainError(f"{'model.preset' if 'unknown preset' in str(e) else 'model'}: {e}") from None


def _extend_pattern(pattern: str, n: int) -> str:
    """A preset's local/global layer pattern at another depth: its shortest period repeated
    (Gemma 2's "LG", Gemma 3's "LLLLLG"), so resizing keeps the family's attention layout."""
    period = next(k for k in range(1, len(pattern) + 1)
                  if all(c == pattern[i % k] for i, c in enumerate(pattern)))
    return (pattern[:period] * (n // period + 1))[:n] if isinstance(n, int) and n > 0 else pattern


@dataclass(frozen=True)
class DataSection:
    train: str = ""  # a flat uint32 token file, or a directory prepared by `gemmaforge data prepare`
    val: str | None = None
    seq_len: int = 256
    seed: int = 0  # fixes the block order of every epoch
    # SFT (chat / prompt-response JSONL; train = "default" is the embedded set):
    tokenizer: str | None = None  # renders the conversations; default: model.init_from
    pack: bool = True  # several conversations per row (attention never crosses them)


@dataclass(frozen=True)
class LoraSection:
    """LoRA adapters (train/lora.py); empty `targets` trains without them."""
    targets: list[str] = field(default_factory=list)  # e.g. ["q_proj", "k_proj", "v_proj", "o_proj"]
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0


@dataclass(frozen=True)
class OptimSection:
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 100
    weight_decay: float = 0.1  # decoupled (AdamW)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    decay_norms: bool = False
    decay_embeddings: bool = False


@dataclass(frozen=True)
class RunSection:
    max_steps: int = 1000
    global_batch: int = 32  # sequences per optimizer step, over all ranks and micro-batches
    micro_batch: int = 8  # sequences per forward/backward on one rank
    seed: int = 0
    precision: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 autocast on CUDA with bf16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    parallel: Literal["ddp", "fsdp"] = "ddp"  # how ranks share the model under torchrun
    activation_checkpointing: bool = False  # recompute each Block in backward
    compile: bool = False  # torch.compile each Block
    loss_chunk: int | None = None  # tokens per cross-entropy chunk (None: ~32M logits per chunk)


@dataclass(frozen=True)
class EvalSection:
    interval: int = 100  # steps between validation passes (and one at the end)
    blocks: int = 64  # validation blocks evaluated each time, spread evenly over the set


@dataclass(frozen=True)
class CheckpointSection:
    interval: int = 100  # steps between checkpoints (and one at the end)
    keep: int = 3  # newest checkpoints kept
    export_hf: bool = False  # SFT: also write the final model (LoRA merged) in Hugging Face layout
    # full: one model.safetensors + optimizer.pt, gathered on rank 0 (any reader can use it);
    # sharded: each rank writes its own shards (torch.distributed.checkpoint), nothing is gathered,
    # and a resume may use another number of ranks. For models too large to gather.
    format: Literal["full", "sharded"] = "full"


@dataclass(frozen=True)
class LogSection:
    interval: int = 1  # steps between metric rows
    progress: bool = True  # tqdm bar on rank 0
    peak_tflops: float | None = None  # per device, for MFU; None measures a float32 matmul


@dataclass(frozen=True)
class PreferenceSection:
    """Reward modelling and DPO on preference pairs (train/preference.py)."""
    margin: float = 0.0  # reward: Bradley–Terry margin the chosen reward must clear
    val_fraction: float = 0.1  # pairs held out for validation when data.val is unset
    beta: float = 0.1  # DPO: strength of the pull towards the reference
    loss: Literal["sigmoid", "ipo", "robust"] = "sigmoid"  # DPO variant
    label_smoothing: float = 0.0  # DPO robust: assumed rate of flipped preference labels, in [0, 0.5)


@dataclass(frozen=True)
class RewardSection:
    """One part of an RL reward (train/rewards.py); the reward is the weighted sum of the parts."""
    kind: Literal["function", "reasoning_gym", "reward_model"] = "function"
    weight: float = 1.0
    target: str = ""  # function: "module:function" or "file.py:function"; reward_model: a run or checkpoint
    name: str = ""


@dataclass(frozen=True)
class RLSection:
    """Policy optimisation against a reward (train/rl.py, docs/rlhf.md)."""
    algorithm: Literal["rloo", "grpo", "ppo"] = "rloo"
    prompts: str = ""  # JSONL of {"prompt": …, meta…}, or "reasoning_gym:NAME" (a generator's questions)
    prompts_size: int = 500  # questions drawn from a reasoning-gym generator
    prompts_options: dict[str, Any] = field(default_factory=dict)  # the generator's own options (difficulty)
    prompt_format: Literal["chat", "plain"] = "chat"  # chat: a user turn; plain: the text as is (base models)
    stop: list[str] = field(default_factory=list)  # a reply also ends at a token holding one of these ("\n")
    held_out: int = 50  # of those, kept for evaluation (never trained on)
    k: int = 4  # samples per prompt
    prompts_per_step: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    epochs: int = 1  # optimisation passes over each batch of rollouts (GRPO: several)
    clip: float = 0.2  # ratio clipping of the surrogate
    kl_coef: float = 0.05  # β; with kl_target set, its starting value
    kl_target: float | None = None  # set: β adapts towards this mean per-reply KL (nats; Ziegler et al. 2019)
    kl_horizon: float = 10000.0  # the adaptive controller's horizon, in rollouts
    kl_estimator: Literal["k1", "k3"] = "k1"
    kl_in_loss: bool = False  # False: -kl_coef * KL joins the reward; True: a loss term (GRPO's way)
    no_eos_penalty: float = 0.0  # subtracted from the reward of a reply that never ends
    vf_coef: float = 0.1  # PPO: weight of the value loss
    rewards: list[RewardSection] = field(default_factory=list)


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "runs/pretrain"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: RunSection = field(default_factory=RunSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    lora: LoraSection = field(default_factory=LoraSection)
    preference: PreferenceSection = field(default_factory=PreferenceSection)
    rl: RLSection = field(default_factory=RLSection)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        table = configfile.read_table(path, TrainError, (".toml", ".json"))  # JSON: what `to_dict` writes
        try:
            return cls.from_dict(table)
        except TrainError as e:
            raise TrainError(f"config {path}: {e}") from None

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> TrainConfig:
        return configfile.build(cls, table, "", TrainError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> TrainConfig:
        """A copy with some fields changed; section values may be dicts of changed fields."""
        changes = {k: dataclasses.replace(getattr(self, k), **v) if isinstance(v, dict) else v
                   for k, v in sections.items()}
        return dataclasses.replace(self, **changes)


def _validate(c: TrainConfig) -> None:
    def need(ok: bool, name: str, msg: str) -> None:
        if not ok:
            raise TrainError(f"{name}: {msg}, got {_get(c, name)!r}")

    c.model.gemma_config()
    need(c.model.init_std > 0, "model.init_std", "must be > 0")
    for name in ("data.seq_len", "optim.lr", "train.max_steps", "train.global_batch", "train.micro_batch",
                 "eval.interval", "eval.blocks", "checkpoint.interval", "checkpoint.keep", "log.interval",
                 "optim.eps"):
        need(_get(c, name) > 0, name, "must be > 0")
    for name in ("optim.warmup_steps", "optim.weight_decay", "optim.grad_clip"):
        need(_get(c, name) >= 0, name, "must be >= 0")
    for name in ("optim.min_lr_ratio", "optim.beta1", "optim.beta2"):
        need(0 <= _get(c, name) <= 1, name, "must be in [0, 1]")
    need(c.train.loss_chunk is None or c.train.loss_chunk > 0, "train.loss_chunk", "must be > 0")
    need(c.log.peak_tflops is None or c.log.peak_tflops > 0, "log.peak_tflops", "must be > 0")
    need(c.lora.rank > 0, "lora.rank", "must be > 0")
    need(c.lora.alpha > 0, "lora.alpha", "must be > 0")
    need(0 <= c.lora.dropout < 1, "lora.dropout", "must be in [0, 1)")
    need(c.preference.beta > 0, "preference.beta", "must be > 0")
    need(0 <= c.preference.label_smoothing < 0.5, "preference.label_smoothing", "must be in [0, 0.5)")
    need(0 <= c.preference.val_fraction < 1, "preference.val_fraction", "must be in [0, 1)")
    need(c.rl.k >= 2, "rl.k", "must be >= 2 (RLOO's and GRPO's baselines come from a prompt's other samples)")
    for name in ("rl.prompts_per_step", "rl.max_new_tokens", "rl.epochs", "rl.prompts_size"):
        need(_get(c, name) > 0, name, "must be > 0")
    for name in ("rl.temperature", "rl.clip"):
        need(_get(c, name) > 0, name, "must be > 0")
    for name in ("rl.kl_coef", "rl.no_eos_penalty", "rl.held_out"):
        need(_get(c, name) >= 0, name, "must be >= 0")
    need(c.rl.kl_target is None or c.rl.kl_target > 0, "rl.kl_target", "must be > 0 (or unset for a fixed kl_coef)")
    need(c.rl.kl_horizon > 0, "rl.kl_horizon", "must be > 0")
    need(all(isinstance(x, str) and x for x in c.rl.stop), "rl.stop", "must be non-empty strings")
    need(c.rl.kl_target is None or c.rl.kl_coef > 0, "rl.kl_coef",
         "must be > 0 with rl.kl_target (the adaptive controller scales it)")
    max_len = c.model.gemma_config().max_seq_len
    need(c.model.init_from is not None or c.data.seq_len <= max_len, "data.seq_len",
         f"must be <= model.max_seq_len ({max_len})")
    need(c.train.global_batch % c.train.micro_batch == 0, "train.global_batch",
         f"must be a multiple of train.micro_batch ({c.train.micro_batch})")
    need(bool(c.out_dir), "out_dir", "must name a directory")


def _get(c: TrainConfig, dotted: str) -> Any:
    obj: Any = c
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
