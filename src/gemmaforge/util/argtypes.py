"""Validated argparse types and the parser every verb uses.

Each numeric option declares its range through a `Number`, so a bad value is one line naming the
option before any work starts (never a traceback, never a silently meaningless run), and a test can
sweep every option of every verb with values outside its range.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Number:
    """An int or float argument in [low, high] (bounds optional; `open_low` excludes `low`)."""

    kind: type = int
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    @property
    def __name__(self) -> str:  # argparse names the type in some messages
        return self.kind.__name__

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        too_low = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        return what if self.high is None else f"{what} <= {self.high:g}"

    def bad_values(self) -> list[str]:
        """Values this type must refuse (for tests that sweep every option)."""
        bad = ["abc", "nan", "inf"] + (["1.5"] if self.kind is int else [])
        if self.low is not None:
            bad.append(f"{self.low:g}" if self.open_low else f"{self.low - 1:g}")
        if self.high is not None:
            bad.append(f"{self.high + 1:g}")
        return bad


POSITIVE = Number(int, 1)  # counts and sizes
NON_NEGATIVE = Number(int, 0)
INTEGER = Number(int)  # seeds
POSITIVE_FLOAT = Number(float, 0, open_low=True)
NON_NEGATIVE_FLOAT = Number(float, 0)
PROBABILITY = Number(float, 0, 1, open_low=True)  # top-p: (0, 1]


class _DefaultsHelp(argparse.HelpFormatter):
    """Help that states each option's default, unless the default is "nothing" (None, off, [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS
        if "%(default)" in text or not action.option_strings or nothing:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the verb, and whose help shows defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)
