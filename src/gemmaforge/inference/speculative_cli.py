"""`--speculative` and its settings for the verbs that generate (`generate`, `chat`)."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..util.argtypes import POSITIVE
from .speculative import SPECULATIVE, PromptLookup

DEFAULTS = PromptLookup()


def add_speculative_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speculative", choices=tuple(SPECULATIVE), default=None,
                   help="draft tokens from n-gram matches in the text so far and check them in one forward pass: "
                        "the same output, faster when it repeats its input (default: off)")
    p.add_argument("--draft-tokens", type=POSITIVE, default=None, metavar="N",
                   help=f"most tokens drafted per forward pass (default: {DEFAULTS.num_tokens})")
    p.add_argument("--max-ngram", type=POSITIVE, default=None, metavar="N",
                   help=f"longest n-gram matched to find a draft (default: {DEFAULTS.max_ngram})")
    p.add_argument("--min-ngram", type=POSITIVE, default=None, metavar="N",
                   help=f"shortest n-gram matched (default: {DEFAULTS.min_ngram})")


def speculative_settings(args: argparse.Namespace) -> PromptLookup | None:
    """What `--speculative` and its settings ask for; settings without it are an error, not ignored."""
    given = {name: value for name, value in (("num_tokens", args.draft_tokens), ("max_ngram", args.max_ngram),
                                              ("min_ngram", args.min_ngram)) if value is not None}
    if args.speculative is None:
        if given:
            raise InputError("--draft-tokens, --max-ngram and --min-ngram need --speculative prompt-lookup")
        return None
    return SPECULATIVE[args.speculative](**given)
