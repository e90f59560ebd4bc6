"""The loss curve of a run as a PNG, drawn from its metrics JSONL."""

from __future__ import annotations

from pathlib import Path

from .metrics import read_rows


def plot_loss(metrics: Path, png: Path, baseline: float | None = None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt

    rows = read_rows(metrics)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=1, label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", lw=1.5, label="validation loss")
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label=f"unigram entropy ({baseline:.2f})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title or metrics.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


RL_PANELS = (("reward", ("rollout/reward",), "mean reward of the rollouts"),
             ("KL to the reference", ("rollout/kl",), "nats per reply"),
             ("KL coefficient β", ("rollout/kl_coef",), "β"),
             ("loss", ("loss",), "surrogate loss"))


def plot_rl(metrics: Path, png: Path, title: str = "") -> Path:
    """An RL run's curves side by side: rollout reward, per-reply KL, the KL coefficient β (which the
    adaptive controller moves) and the loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(metrics)
    fig, axes = plt.subplots(1, len(RL_PANELS), figsize=(4 * len(RL_PANELS), 3.5), dpi=100)
    for ax, (name, keys, unit) in zip(axes, RL_PANELS):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), ".-" if len(pts) < 40 else "-", lw=1)
        ax.set(title=name, xlabel="optimizer step", ylabel=unit)
        ax.grid(alpha=0.3)
    fig.suptitle(title or metrics.parent.name)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
