"""Pre-training data: sources, filters, dedup, decontamination, mixture, packed token shards.

`prepare(DataConfig.load("data.toml"))` runs it all; `PackedDataset(dir)` reads the result.
"""

from .cli import add_data_arguments, data_main, data_prepare_main
from .config import DataConfig, DecontamConfig, DedupConfig, FilterConfig, SourceConfig
from .decontam import EvalNgrams
from .dedup import MinHasher, exact_key, near_duplicates
from .default_corpus import PARTS, default_config, default_corpus_status, require_parts
from .errors import DataError
from .filters import (C4, FILTERS, Drop, GopherQuality, GopherRepetition, PerplexityFilter, QualityClassifier,
                      QualityFilter, SafetyFilter)
from .manifest import Manifest
from .mixture import mix
from .pack import PackedDataset
from .parallel import LocalExecutor
from .pipeline import Tokenizer, prepare
from .sources import Document

__all__ = [
    "DataConfig", "SourceConfig", "FilterConfig", "DedupConfig", "DecontamConfig", "DataError",
    "prepare", "Manifest", "PackedDataset", "Tokenizer", "Document", "LocalExecutor",
    "FILTERS", "Drop", "GopherQuality", "GopherRepetition", "C4", "QualityClassifier", "QualityFilter",
    "PerplexityFilter", "SafetyFilter", "MinHasher", "exact_key", "near_duplicates", "EvalNgrams", "mix",
    "PARTS", "default_config", "default_corpus_status", "require_parts",
    "add_data_arguments", "data_main", "data_prepare_main",
]
