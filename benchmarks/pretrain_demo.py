"""Proof at demo scale: pre-train a 16M-parameter Gemma on real text on this machine's CPUs.

The corpus is what every Python install carries (`gemmaforge.data.demo`, the same data as
`gemmaforge data demo --output runs/demo-data`): the CPython standard library and the prose under
/usr/share/doc, with an 8192-piece Gemma-style tokenizer trained on it. Then
`configs/pretrain-demo.toml` runs through `pretrain`, and the validation loss is set against the
unigram entropy of the validation tokens (the best loss a model without context can reach).

    python benchmarks/pretrain_demo.py [--data runs/demo-data] [--config configs/pretrain-demo.toml]
                                       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

VOCAB = 8192
MAX_BYTES = 24_000_000  # plenty for a 10-minute run, quick to tokenise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/demo-data"))
    ap.add_argument("--config", type=Path, default=Path("configs/pretrain-demo.toml"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()

    import torch

    from gemmaforge.data.demo import build_demo_data
    from gemmaforge.train.config import TrainConfig
    from gemmaforge.train.pretrain import pretrain

    start = time.perf_counter()
    if not (args.data / "corpus.json").exists():
        print(f"building the corpus in {args.data} ...", flush=True)
        build_demo_data(args.data, vocab_size=VOCAB, max_bytes=MAX_BYTES, overwrite=True)
    corpus = json.loads((args.data / "corpus.json").read_text())
    corpus_s = time.perf_counter() - start
    config = TrainConfig.load(args.config)
    config = config.replace(data={"train": str(args.data / "train"), "val": str(args.data / "val")})
    if Path(config.out_dir).exists():
        shutil.rmtree(config.out_dir)  # a demo run always starts fresh
    summary = pretrain(config)
    report = {**summary, "below_unigram_by": summary["val_unigram_entropy"] - summary["val_loss"],
              "corpus": corpus, "corpus_s": corpus_s, "config": str(args.config),
              "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "load_average_after": [round(x, 1) for x in os.getloadavg()]},
              "command": f"python benchmarks/pretrain_demo.py --config {args.config}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pretrain_demo.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.copy(Path(config.out_dir) / "loss.png", args.out / "pretrain_demo_loss.png")
    lines = ["# Pre-training demo", "",
             f"{summary['parameters'] / 1e6:.1f}M-parameter Gemma, {summary['steps']} steps, "
             f"{summary['tokens_trained']:,} tokens, {summary['train_s']:.0f} s of training "
             f"({summary['wall_s']:.0f} s with setup) on {report['machine']['torch_threads']} threads", "",
             "| | nats/token |", "|---|---|",
             f"| validation loss | {summary['val_loss']:.3f} |",
             f"| unigram entropy of the validation tokens | {summary['val_unigram_entropy']:.3f} |",
             f"| final training loss | {summary['train_loss']:.3f} |", "",
             f"Corpus: {corpus['train']['tokens']:,} train / {corpus['val']['tokens']:,} validation tokens "
             f"({corpus['train']['documents']:,} / {corpus['val']['documents']:,} documents).", "",
             f"Command: `{report['command']}`", "", "![loss curve](pretrain_demo_loss.png)", ""]
    (args.out / "pretrain_demo.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
