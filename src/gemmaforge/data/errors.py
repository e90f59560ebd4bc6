"""The data pipeline's user-facing error: raised before work is lost, with the whole story."""

from ..errors import GemmaForgeError


class DataError(GemmaForgeError):
    """Bad input to the data pipeline: an unreadable source, an empty corpus, a bad eval export."""
