"""Checks on signal propagation at initialization (Figure 2), read from signal.parquet."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict, check, verdict_of
from skipinit.claims.stats import fit_line

NO_SIGNAL = pd.DataFrame(
    {
        "model": pd.Series(dtype=str),
        "depth": pd.Series(dtype=int),
        "block": pd.Series(dtype=int),
        "seed": pd.Series(dtype=int),
        "skip_var": pd.Series(dtype=float),
        "branch_var": pd.Series(dtype=float),
    }
)
# The variance each signal law predicts at residual block l (1-based).
LAWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "2^(l-1)": lambda l: 2.0 ** (l - 1),
    "l": lambda l: l,
    "1": lambda l: np.ones_like(l),
}


def deepest_net(signal: pd.DataFrame, model: str) -> tuple[pd.DataFrame, dict]:
    """Per-block variances of the deepest `model` net, averaged over seeds in log space.

    A geometric mean, so that one seed of an exploding net cannot dominate the average.
    """
    rows = signal[signal["model"] == model]
    rows = rows[rows["depth"] == rows["depth"].max()]
    variances = [column for column in ("skip_var", "skip_var_pooled", "branch_var") if column in rows]  # pooled: newer files
    with np.errstate(divide="ignore"):
        logs = rows.assign(**{column: np.log(rows[column]) for column in variances})
    curve = np.exp(logs.groupby("block")[variances].mean())
    about = {"model": model, "blocks": len(curve), "seeds": int(rows["seed"].nunique())}
    return curve, about


def too_shallow(about: dict, min_blocks: int, curve: pd.DataFrame | None = None, statistic: str | None = None) -> Verdict | None:
    """Why the net cannot decide a claim: absent, fewer blocks than needed, or a statistic its file lacks."""
    if statistic is not None and about["blocks"] and statistic not in curve:
        return INCONCLUSIVE, {**about, "reason": f"signal.parquet has no {statistic} (measured by an older version): rerun the signal rule"}
    if about["blocks"] == 0:
        return NOT_RUN, {**about, "reason": f"no {about['model']} net in signal.parquet"}
    if about["blocks"] < min_blocks:
        return INCONCLUSIVE, {
            **about,
            "reason": f"the {about['model']} net has {about['blocks']} blocks, fewer than the {min_blocks} needed",
        }
    return None


@check
def variance_follows_law(signal: pd.DataFrame, params: dict) -> Verdict:
    """`statistic` of `model` stays within a factor `max_ratio` of `law` (of the block l) on blocks 1..`blocks`."""
    curve, about = deepest_net(signal, params["model"])
    if early := too_shallow(about, params["min_blocks"], curve, params["statistic"]):
        return early
    statistic, law, max_ratio = params["statistic"], params["law"], params["max_ratio"]
    observed = curve[statistic].loc[: params["blocks"]]
    blocks = observed.index.to_numpy(dtype=float)
    ratio = observed.to_numpy() / LAWS[law](blocks)
    worst = int(np.argmax(np.abs(np.log(ratio))))
    holds = abs(np.log(ratio[worst])) <= np.log(max_ratio)
    evidence = {
        **about,
        "statistic": statistic,
        "law": law,
        "blocks_checked": len(blocks),
        "worst_block": int(blocks[worst]),
        "worst_ratio": ratio[worst],
        "ratio_at_last_checked_block": ratio[-1],
        "max_ratio": max_ratio,
    }
    stays = "stays within" if holds else "leaves"
    text = (
        f"{statistic} / {law} {stays} a factor {max_ratio:g} over blocks 1-{len(blocks)} "
        f"(worst {ratio[worst]:.3g} at block {int(blocks[worst])})"
    )
    return verdict_of([Finding(holds, text)], evidence)


@check
def variance_linear_in_block(signal: pd.DataFrame, params: dict) -> Verdict:
    """A least-squares line through `statistic` of `model` against l has a positive slope and R^2 >= `min_r2`."""
    curve, about = deepest_net(signal, params["model"])
    if early := too_shallow(about, params["min_blocks"], curve, params["statistic"]):
        return early
    values = curve[params["statistic"]]
    slope, intercept, r2 = fit_line(values.index.to_numpy(dtype=float), values.to_numpy())
    evidence = {**about, "statistic": params["statistic"], "slope": slope, "intercept": intercept, "r2": r2, "min_r2": params["min_r2"]}
    text = f"{params['statistic']} ~ {slope:.3g} l + {intercept:.3g} with R^2 {r2:.3f} (needs slope > 0, R^2 >= {params['min_r2']:g})"
    return verdict_of([Finding(slope > 0 and r2 >= params["min_r2"], text)], evidence)


@check
def branch_downscaled_by_sqrt_depth(signal: pd.DataFrame, params: dict) -> Verdict:
    """In each BN net of `nets`, std(skip path) / std(branch) grows as l^e with e within `tolerance` of 1/2.

    The exponent is fitted (log-log) on blocks >= `fit_from_block`: the sqrt(l) law is asymptotic,
    and a branch variance other than 1 shifts the ratio at the first blocks.
    """
    findings, evidence = [], {}
    for net in params["nets"]:
        curve, about = deepest_net(signal, net)
        if about["blocks"] == 0:
            continue
        fitted = curve.loc[params["fit_from_block"] :]
        if len(fitted) < params["min_blocks"]:
            findings.append(
                Finding(
                    None,
                    f"{net}: {len(fitted)} blocks from block {params['fit_from_block']}, fewer than {params['min_blocks']}",
                )
            )
            evidence[net] = about
            continue
        std_ratio = np.sqrt(fitted["skip_var"] / fitted["branch_var"])
        exponent = float(np.polyfit(np.log(fitted.index.to_numpy(dtype=float)), np.log(std_ratio.to_numpy()), 1)[0])
        last = int(curve.index.max())
        evidence[net] = {
            **about,
            "exponent": exponent,
            "std_ratio_at_last_block": float(np.sqrt(curve["skip_var"].iloc[-1] / curve["branch_var"].iloc[-1])),
            "sqrt_last_block": math.sqrt(last),
        }
        holds = abs(exponent - 0.5) <= params["tolerance"]
        findings.append(
            Finding(
                holds, f"{net}: std ratio grows as l^{exponent:.2f} (paper: l^0.5, tolerance {params['tolerance']:g})"
            )
        )
    if not findings:
        return NOT_RUN, {"reason": f"none of {', '.join(params['nets'])} in signal.parquet"}
    return verdict_of(findings, evidence)
