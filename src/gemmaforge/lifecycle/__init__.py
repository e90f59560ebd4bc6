"""The whole Gemma lifecycle as one cached stage graph: `gemmaforge pipeline` (docs/pipeline.md)."""

from .errors import PipelineError
from .runner import PipelineOptions, run_pipeline

__all__ = ["PipelineError", "PipelineOptions", "run_pipeline"]
