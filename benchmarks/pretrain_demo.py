"""Proof at demo scale: pre-train a ~14M-parameter Gemma on real text on this machine's CPUs.

The corpus is what every Python install carries: the CPython standard library's .py files plus
the text under /usr/share/doc (licence files skipped, exact duplicates dropped), split by document
into train and validation, tokenised with an 8192-piece SentencePiece model trained here. Then
`configs/pretrain-demo.toml` runs through `pretrain`, and the validation loss is set against the
unigram entropy of the validation tokens (the best loss without context).

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

import numpy as np

VOCAB = 8192
MAX_BYTES = 24_000_000  # plenty for a 10-minute run, quick to tokenise
MAX_DOC = 100_000
VAL_FRACTION = 0.02


def documents() -> list[str]:
    """Distinct texts from the stdlib and /usr/share/doc, each cut at MAX_DOC characters so that
    no single giant changelog dominates, in a fixed shuffled order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    files += sorted(p for p in Path("/usr/share/doc").rglob("*") if p.is_file() and _is_prose(p.name))
    seen, docs = set(), []
    for p in files:
        try:
            raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            text = raw.decode("utf-8")[:MAX_DOC]
        except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError):
            continue
        key = hashlib.sha1(text.encode()).digest()
        if len(text) > 200 and key not in seen:
            seen.add(key)
            docs.append(text)
    random.Random(0).shuffle(docs)
    kept, total = [], 0
    for d in docs:
        if total + len(d) <= MAX_BYTES:
            kept.append(d)
            total += len(d)
    return kept


def _is_prose(name: str) -> bool:
    """READMEs, NEWS, changelogs and plain-text docs; not licences, markup or binaries."""
    stem = name.removesuffix(".gz").lower()
    return not stem.startswith("copyright") and (
        stem.startswith(("readme", "news", "changelog", "changes", "history", "todo", "faq"))
        or stem.endswith((".txt", ".md", ".rst")))


def build_corpus(directory: Path) -> dict:
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    docs = documents()
    n_val = max(1, int(len(docs) * VAL_FRACTION))
    val_docs, train_docs = docs[:n_val], docs[n_val:]
    sample = directory / "sp-train.txt"
    sample.write_text("\n".join(train_docs), encoding="utf-8")
    # Gemma's special ids (pad 0, eos 1, bos 2, unk 3); whitespace kept verbatim for code.
    spm.SentencePieceTrainer.train(
        input=str(sample), model_prefix=str(directory / "tokenizer"), vocab_size=VOCAB, model_type="bpe",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        split_digits=True, user_defined_symbols=["\n", "\t"], input_sentence_size=400_000,
        shuffle_input_sentence=True, num_threads=os.cpu_count(), minloglevel=2)
    sample.unlink()
    sp = spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model"))
    stats = {}
    for name, part in (("train", train_docs), ("val", val_docs)):
        ids = sp.encode(part, num_threads=os.cpu_count())
        stream = np.concatenate([np.array([sp.bos_id(), *d, sp.eos_id()], dtype="<u4") for d in ids])
        stream.tofile(directory / f"{name}.bin")
        stats[name] = {"documents": len(part), "bytes": sum(len(d.encode()) for d in part), "tokens": int(len(stream))}
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
    if not all((args.data / f).exists() for f in ("train.bin", "val.bin", "corpus.json")):
        print(f"building the corpus in {args.data} ...", flush=True)
        build_corpus(args.data)
    corpus = json.loads((args.data / "corpus.json").read_text())
    corpus_s = time.perf_counter() - start
    config = TrainConfig.load(args.config)
    config = config.replace(data={"train": str(args.data / "train.bin"), "val": str(args.data / "val.bin")})
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
