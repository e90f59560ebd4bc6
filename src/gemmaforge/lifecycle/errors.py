"""The pipeline's one error type: bad config, bad run directory, a stage that cannot start."""

from ..errors import GemmaForgeError


class PipelineError(GemmaForgeError):
    pass
