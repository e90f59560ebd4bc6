"""Pre-training data: sources, filters, dedup, decontamination, mixture, packed token shards.

`prepare(DataConfig.load("data.toml"))` runs it all; `PackedDataset(dir)` reads the result.
"""

from .cli import add_data_arguments, data_main, data_prepare_main
from .config import DataConfig, DecontamConfig, DedupConfig, FilterConfig, SourceConfig, default_config
from .decontam import EvalNgrams
from .dedup import MinHasher, exact_key, near_duplicates
from .default_corpus import PARTS, default_corpus_status, require_parts
from .errors import DataError
from .filters import (
                      C4,
                      FILTERS,
                      Drop,
                      GopherQuality,
                      GopherRepetition,
                      PerplexityFilter,
                      QualityClassifier,
                      QualityFilter,
                      SafetyFilter,
)
from .manifest import Manifest
from .mixture import mix
from .pack import PackedDataset
from .parallel import LocalExecutor
from .pipeline import Tokenizer, prepare
from .sources import Document

__all__ = [
                      "C4",
                      "FILTERS",
                      "PARTS",
                      "DataConfig",
                      "DataError",
                      "DecontamConfig",
                      "DedupConfig",
                      "Document",
                      "Drop",
                      "EvalNgrams",
                      "FilterConfig",
                      "GopherQuality",
                      "GopherRepetition",
                      "LocalExecutor",
                      "Manifest",
                      "MinHasher",
                      "PackedDataset",
                      "PerplexityFilter",
                      "QualityClassifier",
                      "QualityFilter",
                      "SafetyFilter",
                      "SourceConfig",
                      "Tokenizer",
                      "add_data_arguments",
                      "data_main",
                      "data_prepare_main",
                      "default_config",
                      "default_corpus_status",
                      "exact_key",
                      "mix",
                      "near_duplicates",
                      "prepare",
                      "require_parts",
]
