"""Proof at demo scale: pre-train a 16M-parameter Gemma on real text on this machine's CPUs.

The corpus is what every Python install carries: the CPython standard library's .py files plus
the prose under /usr/share/doc (READMEs, NEWS, changelogs; licences skipped, exact duplicates
dropped), split by document into train and validation. gemmaforge's own tools make the data: an
8192-piece Gemma-style tokenizer (`train_tokenizer`) and packed shards (`gemmaforge.data.prepare`,
no filters: the text is trusted). Then `configs/pretrain-demo.toml` runs through `pretrain`, and
the validation loss is set against the unigram entropy of the validation tokens (the best loss a
model without context can reach).

    python benchmarks/pretrain_demo.py [--data runs/demo-data] [--config configs/pretrain-demo.toml]
                                       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import shutil
import sysconfig
import time
from pathlib import Path

VOCAB = 8192
MAX_BYTES = 24_000_000  # plenty for a 10-minute run, quick to tokenise
MAX_DOC = 100_000
VAL_FRACTION = 0.02
SEQ_LEN = 256


def documents() -> list[tuple[str, str]]:
    """(kind, text) of distinct texts from the stdlib ("code") and /usr/share/doc ("web"), each cut
    at MAX_DOC characters so that no giant changelog dominates, in a fixed shuffled order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [("code", p) for p in sorted(stdlib.rglob("*.py")) if "site-packages" not in p.parts]
    files += [("web", p) for p in sorted(Path("/usr/share/doc").rglob("*")) if p.is_file() and _is_prose(p.name)]
    seen, docs = set(), []
    for kind, p in files:
        try:
            raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            text = raw.decode("utf-8")[:MAX_DOC]
        except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError):
            continue
        key = hashlib.sha1(text.encode()).digest()
        if len(text) > 200 and key not in seen:
            seen.add(key)
            docs.append((kind, text))
    random.Random(0).shuffle(docs)
    kept, total = [], 0
    for kind, text in docs:
        if total + len(text) <= MAX_BYTES:
            kept.append((kind, text))
            total += len(text)
    return kept


def _is_prose(name: str) -> bool:
    """READMEs, NEWS, changelogs and plain-text docs; not licences, markup or binaries."""
    stem = name.removesuffix(".gz").lower()
    return not stem.startswith("copyright") and (
        stem.startswith(("readme", "news", "changelog", "changes", "history", "todo", "faq"))
        or stem.endswith((".txt", ".md", ".rst")))


def build_corpus(directory: Path) -> dict:
    """tokenizer/, train/ and val/ (prepared data directories) under `directory`."""
    from gemmaforge.data import DataConfig, DedupConfig, SourceConfig, prepare
    from gemmaforge.tokenizer.train import train_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    docs = documents()
    n_val = max(1, int(len(docs) * VAL_FRACTION))
    parts = {"val": docs[:n_val], "train": docs[n_val:]}
    tokenizer = train_tokenizer((text for _, text in parts["train"]), VOCAB, directory / "tokenizer", family=1)
    stats = {}
    for part, part_docs in parts.items():
        sources = []
        for kind in ("code", "web"):
            raw = directory / "raw" / f"{part}-{kind}.jsonl"
            raw.parent.mkdir(exist_ok=True)
            raw.write_text("".join(json.dumps({"text": t}) + "\n" for k, t in part_docs if k == kind), "utf-8")
            sources.append(SourceConfig(name=f"{part}-{kind}", kind=kind, paths=[str(raw)]))
        manifest = prepare(DataConfig(output=str(directory / part), tokenizer=str(directory / "tokenizer"),
                                      sources=sources, seq_len=SEQ_LEN, dedup=DedupConfig(minhash=False),
                                      overwrite=True, progress=False), tokenizer=tokenizer)
        stats[part] = {"documents": len(part_docs), "bytes": sum(len(t.encode()) for _, t in part_docs),
                       "tokens": manifest.total_tokens}
    shutil.rmtree(directory / "raw")
    (directory / "corpus.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/demo-data"))
    ap.add_argument("--config", type=Path, default=Path("configs/pretrain-demo.toml"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()

    import torch

    from gemmaforge.train.config import TrainConfig
    from gemmaforge.train.pretrain import pretrain

    start = time.perf_counter()
    if not (args.data / "corpus.json").exists():
        print(f"building the corpus in {args.data} ...", flush=True)
        build_corpus(args.data)
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
