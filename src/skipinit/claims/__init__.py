"""Verdicts on the paper's claims, computed from runs.parquet and signal.parquet alone.

`config/claims.yaml` lists the claims: a statement, where the paper shows it, the check (a
function registered here by name), the thresholds that check uses, and the paper's value.
No verdict is written by hand: a check gets the result frame and its params and returns
(verdict, evidence), the evidence holding the numbers it used and a one-line `reason`.

- reproduced / not_reproduced: the data decide the claim;
- inconclusive: the profile is too small to decide (too few seeds or epochs, too shallow a net,
  an optimal learning rate at the edge of the grid, ...), and the reason says which;
- not_run: the profile has no data for the claim (e.g. no ImageNet folder configured).

A claim made of several parts (one per model, depth or batch size) is reproduced when every
part holds, not reproduced when one part fails, and inconclusive otherwise.
"""

from skipinit.claims import depth_checks, lr_checks, regularization_checks, run_checks, signal_checks, speed_checks  # noqa: F401  (importing them registers their checks)  # noqa: F401
from skipinit.claims.judge import judge, judge_files, load_spec, write
from skipinit.claims.markdown import markdown
from skipinit.claims.registry import (
    CHECKS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    SIGNAL,
    VERDICTS,
    Finding,
    Verdict,
    check,
    verdict_of,
)
from skipinit.claims.signal_checks import NO_SIGNAL

__all__ = [
    "CHECKS",
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "NOT_RUN",
    "NO_SIGNAL",
    "REPRODUCED",
    "SIGNAL",
    "VERDICTS",
    "Finding",
    "Verdict",
    "check",
    "judge",
    "judge_files",
    "load_spec",
    "markdown",
    "verdict_of",
    "write",
]
