"""Data selection for SFT: candidates answer, a judge compares them side by side, the best stay."""

from .select import FilterFn, SelectOptions, rank, run_select

__all__ = ["FilterFn", "SelectOptions", "rank", "run_select"]
