"""Preference ratings: a side-by-side web page for human raters, AI-judge labels, import and export.

See docs/rating.md. The database (RatingStore) is the single source of truth; the server, the
importers, the AI labeller and the exporter all read and write it through transactions.
"""

from .ai import label_with_judge
from .errors import AlreadyRated, RateError, ServerRunning, UnknownPair
from .prefs import import_preferences, import_responses, preference_rows, read_hhh, read_preferences
from .prompts import Prompt, read_prompts
from .report import cohen_kappa, summarize
from .responses import GenerationSettings, generate_responses
from .store import RatingStore

__all__ = ["AlreadyRated", "GenerationSettings", "Prompt", "RateError", "RatingStore", "ServerRunning",
           "UnknownPair", "cohen_kappa", "generate_responses", "import_preferences", "import_responses",
           "label_with_judge", "preference_rows", "read_hhh", "read_preferences", "read_prompts", "summarize"]
