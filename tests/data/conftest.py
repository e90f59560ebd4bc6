"""Fixtures for the data tests: real text from the standard library, and small tokenizers."""

from __future__ import annotations

import importlib
import inspect
import io
import sysconfig
from pathlib import Path

import pytest
import sentencepiece as spm

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
