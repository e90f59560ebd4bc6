"""`score(pairs)`: the probability that each prompt–response pair is unsafe.

The shipped head (head.safetensors + head.json, written by benchmarks/train_safety.py) reads
mean-pooled hidden states of gemma3-270m (see features.py). The model, tokenizer and head load
lazily, once per process; pass `model=`/`tokenizer=` to reuse a gemma3-270m already in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import InputError
from . import head as headlib
from .features import FeatureSpec, pair_features, segment_sums

HEAD_DIR = Path(__file__).parent
_lock = threading.Lock()
_loaded: dict[str, object] = {}


def shipped_head() -> tuple[headlib.Head, dict]:
    """The trained head and its metadata (feature model, layer, threshold, data hashes, AUC)."""
    with _lock:
        if "head" not in _loaded:
            _loaded["head"] = headlib.load(HEAD_DIR)
    return _loaded["head"]


def default_threshold() -> float:
    return float(shipped_head()[1]["threshold"])


def _feature_model(model, tokenizer, name: str):
    """The caller's model/tokenizer, or the feature model loaded once for the process."""
    with _lock:
        if tokenizer is None:
            if "tokenizer" not in _loaded:
                from ..tokenizer import load_tokenizer
                _loaded["tokenizer"] = load_tokenizer(name)
            tokenizer = _loaded["tokenizer"]
        if model is None:
            if "model" not in _loaded:
                from ..weights import load_model
                _loaded["model"] = load_model(name).eval()
            model = _loaded["model"]
    return model, tokenizer


def score(pairs: Sequence[tuple[str, str]], model=None, tokenizer=None, batch_size: int = 16,
          progress: bool = False) -> list[float]:
    """Probability that each (prompt, response) pair is unsafe; an empty response scores the prompt alone."""
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise InputError(f"safety.score: pair {i} must be a (prompt, response) tuple of strings, got {pair!r}")
    if not pairs:
        return []
    head, meta = shipped_head()
    spec = FeatureSpec(**meta["spec"])
    model, tokenizer = _feature_model(model, tokenizer, meta["feature_model"])
    if 2 * model.config.d_model != head.weight.numel():
        raise InputError(f"safety.score: the head reads {meta['feature_model']} features "
                         f"(d_model {head.weight.numel() // 2}); the model given has d_model {model.config.d_model}")
    sums, counts = segment_sums(model, tokenizer, [tuple(p) for p in pairs], spec, batch_size=batch_size,
                                progress=progress)
    with torch.inference_mode():
        return head.predict(pair_features(sums[spec.layer], counts)).tolist()


def score_texts(texts: Sequence[str]) -> list[float]:
    """Each text scored as a prompt alone: the pre-training pipeline's `classifier` hook
    (`classifier = "gemmaforge.safety:score_texts"` in the safety step)."""
    return score([(t, "") for t in texts])
