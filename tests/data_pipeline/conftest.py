"""Fixtures for the data tests: real text from the standard library, and small tokenizers."""

from __future__ import annotations

import gzip
import importlib
import inspect
import io
import json
import sysconfig
from pathlib import Path

import pytest
import sentencepiece as spm

from gemmaforge.data import DataConfig
from gemmaforge.data.text import words
from gemmaforge.eval.decontam import write_ngrams

# Modules whose docstrings are long English prose: the real text these tests filter and dedup.
PROSE_MODULES = ("argparse", "collections", "difflib", "functools", "heapq", "json", "logging", "pathlib",
                 "random", "statistics", "subprocess", "threading", "typing", "unittest", "zipfile",
                 "textwrap", "shutil", "tarfile", "http.client", "email.message", "sched", "queue")


def _prose_docs(min_words: int) -> list[str]:
    docs = []
    for name in PROSE_MODULES:
        module = importlib.import_module(name)
        for attr, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if not attr.startswith("_") and inspect.getmodule(obj) is module else None
            if doc and len(doc.split()) >= min_words and ">>>" not in doc and doc not in docs:
                docs.append(doc)
    return docs


@pytest.fixture(scope="session")
def prose() -> list[str]:
    """Standard-library docstrings of 60+ words without doctests (a few hundred English documents)."""
    docs = _prose_docs(60)
    assert len(docs) >= 60
    return docs


@pytest.fixture(scope="session")
def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def code_files(stdlib_dir) -> list[Path]:
    """A fixed handful of real standard-library modules."""
    return [stdlib_dir / n for n in ("textwrap.py", "shlex.py", "heapq.py", "bisect.py", "colorsys.py",
                                     "fnmatch.py", "glob.py", "keyword.py", "this.py", "sched.py")]


class ByteTokenizer:
    """UTF-8 bytes as ids, BOS 256, EOS 257: the smallest tokenizer the pipeline accepts."""

    bos_id, eos_id, vocab_size = 256, 257, 258

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return ([self.bos_id] if add_bos else []) + list(text.encode("utf-8"))


class SpmTokenizer:
    """A SentencePiece model behind the pipeline's Tokenizer protocol."""

    def __init__(self, proto: bytes) -> None:
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self.bos_id, self.eos_id, self.vocab_size = self.sp.bos_id(), self.sp.eos_id(), self.sp.vocab_size()

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return ([self.bos_id] if add_bos else []) + self.sp.encode(text)


@pytest.fixture(scope="session")
def byte_tokenizer() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture(scope="session")
def spm_tokenizer(prose) -> SpmTokenizer:
    """A 400-piece BPE model trained on the prose fixture in ~0.1 s."""
    f = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter("\n".join(prose).splitlines()), model_writer=f,
                                   vocab_size=400, model_type="bpe", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
                                   minloglevel=2)
    return SpmTokenizer(f.getvalue())


@pytest.fixture(scope="session")
def gemma_tokenizer_dir(tmp_path_factory, prose) -> Path:
    """A Gemma-style tokenizer (gemmaforge.tokenizer.train) over the prose fixture, as a directory."""
    from gemmaforge.tokenizer.train import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(prose, vocab_size=600, output_dir=out, num_reserved=0)
    return out


@pytest.fixture
def corpus(tmp_path, prose, code_files):
    """Web text as .txt files and gzipped JSONL, stdlib code by glob, plus planted problems."""
    web = tmp_path / "web"
    web.mkdir()
    for i, doc in enumerate(prose[:30]):
        (web / f"{i:02d}.txt").write_text(doc)
    (web / "copy.txt").write_text(prose[0].upper())  # exact duplicate after normalisation
    (web / "edit.txt").write_text(prose[1].replace("the", "a", 1))  # near duplicate
    (web / "short.txt").write_text("Buy now. Best price.")  # fails the Gopher word count
    (web / "unsafe.txt").write_text(prose[2] + "\nFree porn videos here.")
    (web / "notes.bin").write_bytes(b"\x00\x01")  # not a text extension: skipped in directories
    with gzip.open(tmp_path / "more.jsonl.gz", "wt") as f:
        for doc in prose[30:45]:
            f.write(json.dumps({"text": doc, "id": "x"}) + "\n")
    ws = words(prose[40])
    write_ngrams({"mmlu/7": {" ".join(ws[5:18])}, "hellaswag/2": {" ".join(ws[30:43])}}, tmp_path / "ngrams.jsonl")
    code = tmp_path / "code"
    code.mkdir()
    for f in code_files:
        (code / f.name).write_text(f.read_text())
    return tmp_path


@pytest.fixture(scope="session")
def make_config():
    """DataConfig over the `corpus` fixture: the three sources, two filters and decontamination."""
    return _config


def _config(root: Path, out: str, **kw) -> DataConfig:
    data = {
        "output": str(root / out), "tokenizer": "test", "seq_len": 64, "shard_tokens": 4096,
        "progress": False, "workers": 1, "batch_docs": 8,
        "sources": [{"name": "web", "kind": "web", "paths": [str(root / "web")]},
                    {"name": "more", "kind": "web", "paths": [str(root / "more.jsonl.gz")]},
                    {"name": "code", "kind": "code", "paths": [str(root / "code" / "*.py")]}],
        "filters": [{"name": "gopher_quality", "kinds": ["web"]}, {"name": "safety", "kinds": ["web"]}],
        "decontam": {"ngrams": str(root / "ngrams.jsonl")},
        "dedup": {"threshold": 0.5},
    }
    data.update(kw)
    return DataConfig.from_dict(data)
