"""The vocabulary of a check: the verdicts, a `Finding` per part of a claim, and the `@check` registry.

A check is registered under its function name, the name a claim's `check:` uses in the claims file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = "reproduced", "not_reproduced", "inconclusive", "not_run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)
SIGNAL = "signal"  # a claim's `data:` for signal.parquet; anything else names experiment kinds of runs.parquet

Verdict = tuple[str, dict]
CHECKS: dict[str, Callable[[pd.DataFrame, dict], Verdict]] = {}


def check(function: Callable[[pd.DataFrame, dict], Verdict]) -> Callable[[pd.DataFrame, dict], Verdict]:
    """Register a check under its function name, the name `check:` uses in the claims file."""
    CHECKS[function.__name__] = function
    return function


@dataclass
class Finding:
    """One part of a claim: it holds (True), fails (False) or cannot be decided here (None), and why."""

    holds: bool | None
    text: str

    def __post_init__(self):
        if self.holds is not None:
            self.holds = bool(self.holds)  # numpy comparisons give np.bool_, which `is False` misses


def verdict_of(findings: list[Finding], evidence: dict) -> Verdict:
    """One failed part refutes a claim; an undecided part leaves it inconclusive; else it is reproduced."""
    failed = [f.text for f in findings if f.holds is False]
    undecided = [f.text for f in findings if f.holds is None]
    if failed:
        verdict, texts = NOT_REPRODUCED, failed
    elif undecided:
        verdict, texts = INCONCLUSIVE, undecided
    else:
        verdict, texts = REPRODUCED, [f.text for f in findings]
    return verdict, {**evidence, "parts": len(findings), "reason": "; ".join(texts)}
