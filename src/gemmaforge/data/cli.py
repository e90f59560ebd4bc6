"""Command-line wiring for `gemmaforge data ...`; every verb is a thin call into the library.

The main CLI adds these with `add_data_arguments(subparsers.add_parser("data"))` and dispatches
to `data_main(args)`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..util.argtypes import INTEGER, POSITIVE, POSITIVE_FLOAT
from ..util.paths import writable_dir
from .config import BACKENDS, DataConfig, default_config
from .default_corpus import default_corpus_status, format_status
from .errors import DataError
from .filters.quality import QualityClassifier, load_labelled_jsonl


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the `prepare`, `setup` and `train-quality` sub-verbs to the `data` parser."""
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{prepare,demo,setup,train-quality}")

    p = sub.add_parser("prepare", help="filter, deduplicate, decontaminate, mix, tokenise and pack a corpus",
                       description="Build packed token shards and manifest.json from a data config.")
    p.add_argument("--config", help="data config file (.toml or .json); see docs/data.md")
    p.add_argument("--default", action="store_true",
                   help="use the embedded default corpus recipe (needs --output and --tokenizer)")
    p.add_argument("--output", help="output directory (overrides the config)")
    p.add_argument("--tokenizer", help="tokenizer source (overrides the config)")
    p.add_argument("--workers", type=POSITIVE, help="parallel worker processes (overrides the config)")
    p.add_argument("--backend", choices=BACKENDS, help="local processes or ray (overrides the config)")
    p.add_argument("--seed", type=INTEGER, help="seed for dedup hashing, mixture and order (overrides the config)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(data_func=data_prepare_main)

    d = sub.add_parser("demo", help="the pre-training demo's data: real text, a matching tokenizer, train/val shards",
                       description="Build DIR/tokenizer, DIR/train and DIR/val for configs/pretrain-demo.toml "
                                   "from the Python standard library and /usr/share/doc.")
    d.add_argument("--output", required=True, metavar="DIR", help="where to write (runs/demo-data in the config)")
    d.add_argument("--vocab-size", type=POSITIVE, default=8192, help="tokenizer pieces (the config's model uses 8192)")
    d.add_argument("--max-mb", type=POSITIVE_FLOAT, default=24.0, help="megabytes of text to use")
    d.add_argument("--force", action="store_true", help="replace an existing DIR")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(data_func=data_demo_main)

    s = sub.add_parser("setup", help="check the embedded default corpus and print missing install commands")
    s.set_defaults(data_func=data_setup_main)

    q = sub.add_parser("train-quality", help="train the quality classifier on labelled JSONL examples")
    q.add_argument("--examples", required=True, help='JSONL lines {"text": ..., "label": 0 or 1}')
    q.add_argument("--output", required=True, help="where to save the classifier (.npz)")
    q.add_argument("--force", action="store_true", help="replace an existing classifier file")
    q.add_argument("--epochs", type=POSITIVE, default=10)
    q.add_argument("--buckets", type=POSITIVE, default=1 << 18, help="hashed feature buckets")
    q.add_argument("--seed", type=INTEGER, default=0)
    q.set_defaults(data_func=data_train_quality_main)


def data_main(args: argparse.Namespace) -> int:
    return args.data_func(args)


def data_prepare_main(args: argparse.Namespace) -> int:
    from .pipeline import prepare

    if bool(args.config) == bool(args.default):
        raise DataError("data prepare: give either --config FILE or --default")
    overrides = {k: v for k, v in (("output", args.output), ("tokenizer", args.tokenizer),
                                   ("workers", args.workers), ("backend", args.backend), ("seed", args.seed))
                 if v is not None}
    if args.overwrite:
        overrides["overwrite"] = True
    if args.no_progress:
        overrides["progress"] = False
    if args.default:
        if not args.output or not args.tokenizer:
            raise DataError("data prepare --default needs --output and --tokenizer")
        config = default_config(**overrides)
    else:
        config = dataclasses.replace(DataConfig.load(args.config), **overrides)
    m = prepare(config)
    kept = sum(s.documents_kept for s in m.sources.values())
    read = sum(s.documents_read for s in m.sources.values())
    print(f"{config.output}: {m.total_tokens:,} tokens in {len(m.shards)} shard(s), {m.num_blocks:,} blocks "
          f"of {m.seq_len + 1}; kept {kept:,} of {read:,} documents")
    return 0


def data_demo_main(args: argparse.Namespace) -> int:
    from .demo import build_demo_data

    stats = build_demo_data(args.output, vocab_size=args.vocab_size, max_bytes=int(args.max_mb * 1e6),
                            overwrite=args.force, progress=not args.no_progress)
    print(f"{args.output}: {stats['train']['tokens']:,} training and {stats['val']['tokens']:,} validation tokens "
          f"({stats['train']['documents']:,} / {stats['val']['documents']:,} documents), "
          f"{args.vocab_size}-piece tokenizer")
    return 0


def data_setup_main(args: argparse.Namespace) -> int:
    statuses = default_corpus_status()
    print(format_status(statuses))
    return 0 if all(s.available for s in statuses) else 1


def data_train_quality_main(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.exists() and not args.force:
        raise DataError(f"{output} already exists; pass --force to replace it")
    writable_dir(output.parent, DataError, "data train-quality --output")  # before training, not after
    texts, labels = load_labelled_jsonl(args.examples)
    model = QualityClassifier.train(texts, labels, buckets=args.buckets, epochs=args.epochs, seed=args.seed)
    model.save(args.output)
    acc = float(((model.predict_proba(texts) >= 0.5) == labels).mean())
    print(f"{args.output}: trained on {len(texts)} examples, training accuracy {acc:.3f}")
    return 0
