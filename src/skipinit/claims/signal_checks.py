"""Checks on signal propagation at initialization (Figure 2), read from signal.parquet.

Every decided statistic is computed per seed and carries the t-interval over seeds
(`stats.over_seeds`): a fitted slope or exponent, and for the three laws of Figure 2(a, b) their rate
(growth factor per block or exponent) and, for a power law, its level. A net measured with one
seed gives no interval, and its claim stays inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict, check, verdict_of
from skipinit.claims.stats import finding_text, fit_line, over_seeds, within

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
# The variance each signal law predicts at residual block l (1-based), and the rate it predicts: the growth factor
# per block of an exponential law, the exponent of a power law.
LAWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "2^(l-1)": lambda block: 2.0 ** (block - 1),
    "l": lambda block: block,
    "1": lambda block: np.ones_like(block),
}
RATES: dict[str, tuple[str, float]] = {"2^(l-1)": ("growth", 2.0), "l": ("power", 1.0), "1": ("power", 0.0)}


def deepest_net(signal: pd.DataFrame, model: str) -> tuple[pd.DataFrame, dict]:
    """Per-block variances of the deepest `model` net, averaged over seeds in log space.

    A geometric mean, so that one seed of an exploding net cannot dominate the average.
    """
    rows = signal[signal["model"] == model]
    rows = rows[rows["depth"] == rows["depth"].max()]
    variances = [
        column for column in ("skip_var", "skip_var_pooled", "branch_var") if column in rows
    ]  # pooled: newer files
    with np.errstate(divide="ignore"):
        logs = rows.assign(**{column: np.log(rows[column]) for column in variances})
    curve = np.exp(logs.groupby("block")[variances].mean())
    about = {"model": model, "blocks": len(curve), "seeds": int(rows["seed"].nunique())}
    return curve, about


def per_seed_curves(signal: pd.DataFrame, model: str, columns: list[str]) -> dict[int, pd.DataFrame]:
    """Per seed, `columns` by block of the deepest `model` net."""
    rows = signal[signal["model"] == model]
    rows = rows[rows["depth"] == rows["depth"].max()]
    return {int(seed): group.set_index("block")[columns].sort_index() for seed, group in rows.groupby("seed")}


def seed_interval(values: list[float], what: str) -> tuple[dict | None, str | None]:
    """The t-interval of per-seed `values`, or why there is none (one seed)."""
    if len(values) < 2:
        return None, f"{what} from one seed has no interval: measure 2 or more seeds"
    return over_seeds(values), None


def too_shallow(
    about: dict, min_blocks: int, curve: pd.DataFrame | None = None, statistic: str | None = None
) -> Verdict | None:
    """Why the net cannot decide a claim: absent, fewer blocks than needed, or a statistic its file lacks."""
    if statistic is not None and about["blocks"] and statistic not in curve:
        return INCONCLUSIVE, {
            **about,
            "reason": f"signal.parquet has no {statistic} (measured by an older version): rerun the signal rule",
        }
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
    """`statistic` of `model` follows `law` (of the block l) on blocks 1..`blocks`, judged by its rate per seed.

    An exponential law (2^(l-1)) by its growth factor per block: 2 to the least-squares slope of log2(statistic)
    on l, within `tolerance` of the law's. A power law (l, 1) by its exponent, the log-log slope, within
    `tolerance`, and by its level: the mean over blocks of log(statistic / law) within log(`max_ratio`) of 0.
    Each is a t-interval over seeds: a fit over many blocks, whose error shrinks with seeds, not the worst block of
    a random walk, whose excursion grows with depth.
    """
    curve, about = deepest_net(signal, params["model"])
    if early := too_shallow(about, params["min_blocks"], curve, params["statistic"]):
        return early
    statistic, law, tolerance = params["statistic"], params["law"], params["tolerance"]
    kind, expected = RATES[law]
    rates, levels = {}, {}
    for seed, seed_curve in per_seed_curves(signal, params["model"], [statistic]).items():
        observed = seed_curve[statistic].loc[: params["blocks"]]
        blocks, values = observed.index.to_numpy(dtype=float), observed.to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "growth":
                rates[seed] = fit_line(blocks, np.log2(values))[0]
            else:
                rates[seed] = fit_line(np.log(blocks), np.log(values))[0]
                levels[seed] = float(np.mean(np.log(values / LAWS[law](blocks))))
    checked = int(curve[statistic].loc[: params["blocks"]].shape[0])
    name = "growth factor per block" if kind == "growth" else "exponent"
    shown = {seed: 2.0**rate if kind == "growth" else rate for seed, rate in rates.items()}
    evidence = {
        **about,
        "statistic": statistic,
        "law": law,
        "blocks_checked": checked,
        "tolerance": tolerance,
        f"{name.replace(' ', '_')}_by_seed": {str(seed): value for seed, value in shown.items()},
    }
    head = f"{statistic} ~ {law} over blocks 1-{checked}: {name}"
    estimate, missing = seed_interval(list(rates.values()), f"the {name}")
    if missing:
        return verdict_of([Finding(None, f"{head} {next(iter(shown.values())):.5g}: {missing}")], evidence)
    band = (expected - tolerance, expected + tolerance)
    if kind == "growth":  # judged on log2 of the factor, shown as the factor
        holds = within(estimate, math.log2(band[0]), math.log2(band[1]))
        rate = {**estimate, "mean": 2.0 ** estimate["mean"], "ci": [2.0**v for v in estimate["ci"]]}
    else:
        holds, rate = within(estimate, *band), estimate
    evidence[name.replace(" ", "_")] = rate
    low, high = rate["ci"]
    text = (
        f"{head} {rate['mean']:.5g} ({estimate['ci_level']} {low:.5g}..{high:.5g}, {estimate['seeds']} seeds; "
        f"law {expected:g}, band {band[0]:g}..{band[1]:g})"
    )
    findings = [Finding(holds, text if holds is not None else f"{text}: its bounds straddle the band")]
    if kind == "power":
        level = over_seeds(list(levels.values()))
        evidence["log_level"] = level
        bound = math.log(params["max_ratio"])
        at_level = within(level, -bound, bound)
        factor = [math.exp(v) for v in level["ci"]]
        text = (
            f"{statistic} / {law}: geometric-mean factor {math.exp(level['mean']):.3g} ({level['ci_level']} "
            f"{factor[0]:.3g}..{factor[1]:.3g}; band {1 / params['max_ratio']:.3g}..{params['max_ratio']:g})"
        )
        findings.append(Finding(at_level, text if at_level is not None else f"{text}: its bounds straddle the band"))
    return verdict_of(findings, evidence)


@check
def variance_linear_in_block(signal: pd.DataFrame, params: dict) -> Verdict:
    """A least-squares line through `statistic` of `model` against l has a positive slope and R^2 >= `min_r2`."""
    curve, about = deepest_net(signal, params["model"])
    if early := too_shallow(about, params["min_blocks"], curve, params["statistic"]):
        return early
    values = curve[params["statistic"]]
    slope, intercept, r2 = fit_line(values.index.to_numpy(dtype=float), values.to_numpy())
    slopes = [
        fit_line(c.index.to_numpy(dtype=float), c[params["statistic"]].to_numpy())[0]
        for c in per_seed_curves(signal, params["model"], [params["statistic"]]).values()
    ]
    estimate, missing = seed_interval(slopes, "the slope")
    evidence = {
        **about,
        "statistic": params["statistic"],
        "slope": estimate or slope,
        "intercept": intercept,
        "r2": r2,
        "min_r2": params["min_r2"],
    }
    text = (
        f"{params['statistic']} ~ {slope:.3g} l + {intercept:.3g} with R^2 {r2:.3f} (needs slope > 0, R^2 >= "
        f"{params['min_r2']:g})"
    )
    if missing:
        return verdict_of([Finding(None, f"{text}: {missing}")], evidence)
    positive = within(estimate, low=0.0)
    # R^2 is a point value without an interval: below its bound it leaves the claim undecided, never refutes it
    holds = positive if r2 >= params["min_r2"] or positive is not True else None
    return verdict_of(
        [Finding(holds, finding_text(f"{text}; per-seed slope", estimate, holds, low=0.0, unit=""))], evidence
    )


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
                    f"{net}: {len(fitted)} blocks from block {params['fit_from_block']}, fewer than "
                    f"{params['min_blocks']}",
                )
            )
            evidence[net] = about
            continue
        exponents = [
            sqrt_exponent(seed_curve.loc[params["fit_from_block"] :])
            for seed_curve in per_seed_curves(signal, net, ["skip_var", "branch_var"]).values()
        ]
        estimate, missing = seed_interval(exponents, f"{net}: the exponent")
        last = int(curve.index.max())
        evidence[net] = {
            **about,
            "exponent": estimate or sqrt_exponent(fitted),
            "std_ratio_at_last_block": float(np.sqrt(curve["skip_var"].iloc[-1] / curve["branch_var"].iloc[-1])),
            "sqrt_last_block": math.sqrt(last),
        }
        if missing:
            findings.append(Finding(None, missing))
            continue
        band = (0.5 - params["tolerance"], 0.5 + params["tolerance"])
        holds = within(estimate, *band)
        text = f"{net}: std ratio grows as l^e (paper: e = 0.5, band {band[0]:g}..{band[1]:g}), e ="
        findings.append(Finding(holds, finding_text(text, estimate, holds, *band, unit="")))
    if not findings:
        return NOT_RUN, {"reason": f"none of {', '.join(params['nets'])} in signal.parquet"}
    return verdict_of(findings, evidence)


def sqrt_exponent(curve: pd.DataFrame) -> float:
    """e of std(skip) / std(branch) ~ l^e, fitted in log-log over the curve's blocks."""
    std_ratio = np.sqrt(curve["skip_var"] / curve["branch_var"])
    return float(np.polyfit(np.log(curve.index.to_numpy(dtype=float)), np.log(std_ratio.to_numpy()), 1)[0])
