"""`--human`: the preference pairs come from people on the rating page (gemmaforge.rate), not a judge.

Both models answer every prompt into a rating database in the stage directory; the page is served
on loopback and the stage waits until every pair has a rating. The database keeps every response
and rating, so a stage interrupted while people rate resumes where they were."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import PipelineError


def rated_pairs(store: Any) -> int:
    return len({r["pair_id"] for r in store.ratings()})


def page_server(app: Any, port: int) -> Any:
    """uvicorn on loopback that leaves the process's logging alone: its default log config runs
    logging.config.dictConfig, which closes every handler the caller has (and their streams)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))


def collect(out: Path, conversations: list[list[dict]], models: list[str], port: int, max_new_tokens: int,
            seed: int, poll_s: float = 1.0) -> list[dict[str, Any]]:
    """Preference rows (prompt, chosen, rejected, ...) once every pair of `models`' answers is rated."""
    from ..rate import GenerationSettings, Prompt, RatingStore, generate_responses, preference_rows
    from ..rate.server import LOOPBACK, create_app

    store = RatingStore(out / "ratings.sqlite")
    prompts = [Prompt(c[0]["content"], json.dumps(c[:1])) for c in conversations]
    generate_responses(store, prompts, models, GenerationSettings(max_new_tokens, temperature=1.0, seed=seed))
    store.pair_models(models)
    total = store.counts()["pairs"]
    if total == 0:
        raise PipelineError(f"prefs: the models answered every prompt identically; nothing to rate in {out}")
    if rated_pairs(store) < total:
        server = page_server(create_app(store, LOOPBACK), port)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        print(f"\nrate the {total} pairs at http://127.0.0.1:{port}/ ; the pipeline continues once each has a "
              "rating", file=sys.stderr)
        try:
            while rated_pairs(store) < total:
                time.sleep(poll_s)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    rows = list(preference_rows(store.ratings()))
    if not rows:
        raise PipelineError(f"prefs: every rating in {out / 'ratings.sqlite'} is a tie or 'both bad'; "
                            "rate again (gemmaforge rate serve --db ...) or drop --human")
    return rows
