"""Paired-seed statistics of an accuracy gap, and the verdict they allow against a bound.

Two models trained with the same seed share the data order and augmentation (and, for the same
net, the initialization), so their accuracy difference is far less noisy seed by seed than
either accuracy is. Every accuracy comparison of the claims therefore pairs the two models by
seed: the gap's mean, its standard deviation over seeds and a 95% Student-t interval. A claim is
decided only where that interval lies on one side of its bound; a single seed gives a point
estimate, which decides (the only evidence there is) but is marked single-seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Two-sided 95% quantiles of Student's t, t_{0.975}(df), df = 1..30 (to 3 decimals).
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z_975 = 1.959964


def t_975(df: int) -> float:
    """t_{0.975}(df): the table up to 30 degrees of freedom, Cornish-Fisher's expansion beyond (error < 1e-3)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_gap(reference: pd.Series, candidate: pd.Series) -> dict:
    """reference - candidate, paired by seed (the Series' index): mean, std, 95% interval, seeds.

    With fewer than two seeds in common the gap is the difference of the means, a point estimate
    whose interval is that point (`single_seed`: true).
    """
    seeds = sorted(set(reference.index) & set(candidate.index))
    if len(seeds) < 2:
        mean = float(reference.mean() - candidate.mean())
        return {"mean": mean, "std": None, "ci95": [mean, mean], "seeds": len(seeds), "single_seed": True}
    differences = reference.loc[seeds].to_numpy(float) - candidate.loc[seeds].to_numpy(float)
    mean, std = float(differences.mean()), float(differences.std(ddof=1))
    half = t_975(len(seeds) - 1) * std / math.sqrt(len(seeds))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "seeds": len(seeds), "single_seed": False}


def within(gap: dict, low: float = -math.inf, high: float = math.inf) -> bool | None:
    """Does the gap lie in [low, high]? Its whole interval inside: yes; wholly outside: no; straddling a bound: undecided."""
    lower, upper = gap["ci95"]
    if low <= lower and upper <= high:
        return True
    if upper < low or lower > high:
        return False
    return None


def describe(gap: dict) -> str:
    """`+2.0 pp (95% CI -2.3..+6.3 over 3 paired seeds)`, or `+2.0 pp (single seed)`."""
    if gap["single_seed"]:
        return f"{gap['mean']:+.1f} pp (single seed)"
    lower, upper = gap["ci95"]
    return (
        f"{gap['mean']:+.1f} ± {gap['std']:.1f} pp (95% CI {lower:+.1f}..{upper:+.1f} over {gap['seeds']} paired seeds)"
    )


def gap_finding_text(text: str, gap: dict, holds: bool | None) -> str:
    """A comparison's finding: the gap with its statistics, and why it is undecided when it is."""
    suffix = ": the 95% interval straddles the bound" if holds is None else ""
    return f"{text} {describe(gap)}{suffix}"


def fit_line(blocks: np.ndarray, values: np.ndarray, through_origin: bool = False) -> tuple[float, float, float]:
    """(slope, intercept, R^2) of the least-squares line, optionally through the origin."""
    if through_origin:
        slope, intercept = float(blocks @ values / (blocks @ blocks)), 0.0
    else:
        slope, intercept = (float(v) for v in np.polyfit(blocks, values, 1))
    residuals = values - (slope * blocks + intercept)
    return slope, intercept, 1.0 - float(np.sum(residuals**2) / np.sum((values - values.mean()) ** 2))
