"""Document filters, by the name a config uses for them."""

from .base import Drop, Filter, Verdict
from .perplexity import PerplexityFilter
from .quality import QualityClassifier, QualityFilter, load_labelled_jsonl
from .rules import C4, GopherQuality, GopherRepetition
from .safety import SafetyFilter

#: Config name -> filter class (a dataclass whose fields are the filter's options).
FILTERS: dict[str, type] = {cls.name: cls for cls in (
    GopherQuality, GopherRepetition, C4, QualityFilter, PerplexityFilter, SafetyFilter)}

__all__ = [
    "C4",
    "FILTERS",
    "Drop",
    "Filter",
    "GopherQuality",
    "GopherRepetition",
    "PerplexityFilter",
    "QualityClassifier",
    "QualityFilter",
    "SafetyFilter",
    "Verdict",
    "load_labelled_jsonl",
]
