"""Safety for SFT data: a trained classifier of unsafe prompt–response pairs, personal-data rules,
and the filter `gemmaforge sft filter` (and `sft select`) runs. See docs/safety.md."""

from .classifier import score, score_texts
from .filter import FilterResult, filter_pairs, pair_filter
from .pii import mask as mask_pii

__all__ = ["FilterResult", "filter_pairs", "mask_pii", "pair_filter", "score", "score_texts"]
