"""A trainable quality classifier (fastText-style: hashed word n-grams into a linear model) and its filter.

Logistic regression over hashed unigram+bigram counts is the classic cheap quality model (GPT-3's
and fastText's recipe): it trains in seconds in numpy and needs no vocabulary file. Saved as `.npz`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError
from ..text import ngram_hashes, word_hashes, words
from .base import Drop, Verdict

_FORMAT = "gemmaforge-quality-classifier-v1"
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive


@dataclass
class QualityClassifier:
    """P(high quality | text) = sigmoid(w · features + b); features are L2-normalised hashed n-gram counts."""

    weights: np.ndarray
    bias: float = 0.0
    orders: tuple[int, ...] = (1, 2)

    @property
    def buckets(self) -> int:
        return len(self.weights)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sparse (indices, values) of one document."""
        wh = word_hashes(words(text))
        hashes = np.concatenate([ngram_hashes(wh, n) for n in self.orders])
        idx, counts = np.unique(hashes % np.uint64(self.buckets), return_counts=True)
        vals = counts.astype(np.float64)
        norm = np.sqrt((vals * vals).sum())
        return idx.astype(np.int64), vals / norm if norm else vals

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        scores = [float(self.weights[i] @ v) + self.bias for i, v in map(self.features, texts)]
        return 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64)))

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[int], *, buckets: int = 1 << 18,
              orders: tuple[int, ...] = (1, 2), epochs: int = 10, lr: float = 0.5, l2: float = 1e-6,
              seed: int = 0) -> QualityClassifier:
        """SGD on the logistic loss; labels are 1 (keep-worthy) and 0 (junk)."""
        y = np.asarray(labels, dtype=np.float64)
        if len(texts) != len(y) or not len(y) or set(np.unique(y)) - {0.0, 1.0} or len(np.unique(y)) < 2:
            raise DataError("quality classifier training needs texts with labels 0 and 1, both present")
        model = cls(np.zeros(buckets, dtype=np.float64), 0.0, tuple(orders))
        feats = [model.features(t) for t in texts]
        rng = np.random.default_rng(seed)
        for epoch in range(epochs):
            step = lr / (1.0 + epoch)
            for k in rng.permutation(len(feats)):
                idx, val = feats[k]
                w = model.weights[idx]
                p = 1.0 / (1.0 + np.exp(-(w @ val + model.bias)))
                g = p - y[k]
                model.weights[idx] = w - step * (g * val + l2 * w)
                model.bias -= step * g
        return model

    def save(self, path: str | Path) -> None:
        meta = json.dumps({"format": _FORMAT, "orders": list(self.orders)})
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez(f, weights=self.weights, bias=np.float64(self.bias), meta=np.array(meta))

    @classmethod
    def load(cls, path: str | Path) -> QualityClassifier:
        """Read a file `save` wrote. Anything else gets one message, never numpy's pickle advice."""
        not_ours = f"{path}: not a quality model written by `gemmaforge data train-quality`"
        try:
            with open(path, "rb") as f:
                if f.read(4) != _ZIP_MAGIC:  # numpy would try to unpickle it
                    raise DataError(f"{not_ours} (not an .npz archive)")
                f.seek(0)
                with np.load(f, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    if meta.get("format") != _FORMAT:
                        raise DataError(f"{not_ours} (format {meta.get('format')!r}, expected {_FORMAT!r})")
                    return cls(z["weights"].astype(np.float64), float(z["bias"]), tuple(meta["orders"]))
        except OSError as e:
            raise DataError(f"{path}: cannot read the quality model: {e.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile):  # e.g. no or odd "meta"
            raise DataError(not_ours) from None


def load_labelled_jsonl(path: str | Path) -> tuple[list[str], list[int]]:
    """Training examples from JSONL lines `{"text": ..., "label": 0 or 1}`."""
    texts, labels = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    text, label = rec["text"], rec["label"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(f"{path}:{no}: expected {{\"text\": str, \"label\": 0 or 1}}") from None
                if not isinstance(text, str) or label not in (0, 1):
                    raise DataError(f"{path}:{no}: expected {{\"text\": str, \"label\": 0 or 1}}")
                texts.append(text)
                labels.append(int(label))
    except OSError as e:
        raise DataError(f"{path}: cannot read labelled examples: {e.strerror}") from None
    return texts, labels


@dataclass
class QualityFilter:
    """Drops documents whose classifier probability of being high quality is below `threshold`."""

    name: ClassVar[str] = "quality"
    model: str = ""  # path of a file saved by QualityClassifier.save
    threshold: float = 0.5
    _classifier: QualityClassifier | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._classifier is None:
            if not self.model:
                raise DataError("the quality filter needs `model`, a classifier file (see QualityClassifier)")
            self._classifier = QualityClassifier.load(self.model)

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        probs = self._classifier.predict_proba(texts)
        return [t if p >= self.threshold else Drop("low_quality", f"P(keep) {p:.3f} < {self.threshold}")
                for t, p in zip(texts, probs)]
