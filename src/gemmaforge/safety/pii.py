"""Personal data rules: e-mail addresses, phone numbers and payment card numbers.

Each rule finds spans; `mask` replaces them with a tag (<EMAIL>, <PHONE>, <CARD_NUMBER>) and
reports which rules fired, so a caller can keep the masked row or drop it. Card numbers must pass
the Luhn check, so order numbers and other long digit strings are left alone; phone numbers need a
phone-like shape (a leading +, or grouped digits with separators), so plain integers, years and
dates are left alone too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])")
# 13-19 digits, optionally in groups separated by one space or hyphen (4-4-4-4, 4-6-5, ...).
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
# +CC then groups, or (area) groups, or 3-3-4 style groups; at least one separator is required.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]\d{3,4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
    r"|\d{3} \d{3} \d{4})(?![\w])")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            spans.append(m.span())
    return spans


def _regex(pattern: re.Pattern) -> Callable[[str], list[tuple[int, int]]]:
    return lambda text: [m.span() for m in pattern.finditer(text)]


@dataclass(frozen=True)
class Rule:
    name: str  # reason code suffix: pii/<name>
    tag: str  # what a masked span becomes
    spans: Callable[[str], list[tuple[int, int]]]  # text -> [(start, end)]


# Cards first: a card number must not be half-masked as a phone number.
RULES = (Rule("email", "<EMAIL>", _regex(EMAIL)), Rule("card_number", "<CARD_NUMBER>", _cards),
         Rule("phone", "<PHONE>", _regex(PHONE)))


def mask(text: str) -> tuple[str, list[str]]:
    """`text` with every match replaced by its rule's tag, and the names of the rules that fired."""
    fired = []
    for rule in RULES:
        spans = rule.spans(text)
        if spans:
            fired.append(rule.name)
            for start, end in reversed(spans):
                text = text[:start] + rule.tag + text[end:]
    return text, fired

