"""The rating tool's user-facing errors; the web server maps each to an HTTP status."""

from ..errors import GemmaForgeError


class RateError(GemmaForgeError):
    """Bad input to the rating tool: a bad file, database or request (HTTP 400)."""


class UnknownPair(RateError):
    """A rating for a pair that does not exist (HTTP 404)."""


class AlreadyRated(RateError):
    """A second rating of one pair by one rater (HTTP 409); the first one stands."""


class ServerRunning(RateError):
    """Another `gemmaforge rate serve` already serves this database."""
