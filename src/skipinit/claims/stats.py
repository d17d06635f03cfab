"""Every decided statistic as an estimate with its error, and the one rule that turns it into a verdict.

An estimate is a dict: `mean`, `sd`, `se`, `df` (a Student-t standard error), `seeds`, `selected_from`,
`bracket` (how far a quantized measurement may lie from its reading), `method` and `single_seed`, with `ci`:
its one-sided bounds at the level that decides a part holding (shown, recomputed by `within`).

- **The quantity.** An accuracy is the paper's: on the fixed test set (the final evaluation reads all of it,
  so nothing about it is sampled). Only results written before that change, evaluated on a fixed subset, add
  a test-set term, and then its upper bound: p(1-p)/n for one accuracy, (sqrt(pa(1-pa)) + sqrt(pb(1-pb)))^2/n
  for a paired gap on the same n images (`subset_variance_pp`).
- **Accuracies and gaps** (`accuracy`, `paired_gap`): the per-seed values' spread (n - 1 df) pooled with the
  seed-noise floor measured for their setting (`Floor`, keyed by setting, test-set size and precision), so one
  seed has an interval and a second always narrows it; t on the pooled df.
- **Fits and speed-ups** (`over_seeds`): t over two or more per-seed values, widened by `bracket`.

Decisions (`within`), an intersection-union test. A claim of k parts is reproduced when every part holds, so each
part holds when its one-sided bound(s) at alpha lie inside its band (two one-sided tests for a two-sided band):
P(a false `reproduced`) <= alpha, with no split across the parts. A part fails when its one-sided bound at
alpha/k lies outside the band: P(a false `not_reproduced`) <= alpha over the k parts. alpha is the look's share
of 0.05 (`look_alpha`: 0.005 at each look before the last, the rest less a 0.005 margin at the last), fixed before
any data. A value
read at an lr selected among `selected_from` lrs takes alpha/selected_from (simultaneous over them).
A two-sided band's part fails at alpha/(2k) on either side. Set-valued statements (the lrs within noise of the best,
an lr's stability) are made at alpha/(2k) (`alpha_set`), so a range built from two of them decides either way at
alpha/k. `seeds_to_decide` says how many paired seeds would decide an undecided estimate at the spread measured.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np
import pandas as pd
from scipy import stats

from skipinit.claims.floors import Floor

ALPHA = 0.05  # a claim's error rate in each direction
EARLY_LOOK_ALPHA = 0.005  # what each look before a profile's last spends of ALPHA (registered in config/README.md)
# What the last look of a profile with added rounds leaves unspent: the seeds a round adds depend on the first look's
# data (a sample size re-estimated from it), which raises the last look's error above its nominal alpha, by up to
# about 1.1x with at most 4 seeds (tests/test_calibration.py simulates the package's own rule).
RE_ESTIMATION_MARGIN = 0.005
MAX_SEEDS_TO_DECIDE = 1000  # beyond this a comparison is called undecidable at the spread measured
_PARTS = contextvars.ContextVar("parts", default=1)  # how many parts the claim being judged has
_ALPHA = contextvars.ContextVar("alpha", default=ALPHA)  # the look's alpha
_NEEDS: contextvars.ContextVar[list | None] = contextvars.ContextVar("needs", default=None)


def look_alpha(look: int = 1, looks: int = 1) -> float:
    """The alpha a profile that looks `looks` times spends at look `look` (1-based): EARLY_LOOK_ALPHA at each look
    before the last, the rest of ALPHA at the last, less RE_ESTIMATION_MARGIN where seeds were added (a union bound
    over the looks keeps the claim's error <= ALPHA)."""
    looks = max(1, int(looks))
    if looks == 1:
        return ALPHA
    last = ALPHA - EARLY_LOOK_ALPHA * (looks - 1) - RE_ESTIMATION_MARGIN
    if last <= 1e-9:
        raise ValueError(f"{looks} looks leave no alpha for the last: at most {int(ALPHA / EARLY_LOOK_ALPHA) - 2}")
    return EARLY_LOOK_ALPHA if int(look) < looks else last


@contextlib.contextmanager
def family(parts: int, look: int = 1, looks: int = 1):
    """Judge one claim of `parts` parts at look `look` of `looks`: parts hold at the look's alpha, fail at
    alpha/parts."""
    tokens = _PARTS.set(max(1, int(parts))), _ALPHA.set(look_alpha(look, looks))
    try:
        yield
    finally:
        _PARTS.reset(tokens[0])
        _ALPHA.reset(tokens[1])


@contextlib.contextmanager
def collecting_needs():
    """Record, for every undecided estimate `decide_text` describes, the seeds that would decide it (None: none
    would) and the seeds it has: the list the context yields (skipinit.rounds adds seeds from it)."""
    needs: list = []
    token = _NEEDS.set(needs)
    try:
        yield needs
    finally:
        _NEEDS.reset(token)


def record_need(seeds: int | None, have: int, model: str | None = None) -> None:
    """Note, where needs are being collected, that an undecided part would be decided by `seeds` paired seeds (None:
    by no seed count) and has `have`; `model`: the one model whose estimate it is, where it is one model's."""
    if (needs := _NEEDS.get()) is not None:
        needs.append({"seeds": seeds, "have": int(have), **({"model": model} if model else {})})


def alpha_holds(selected_from: int = 1) -> float:
    """The one-sided alpha of a bound that decides a part holding: the look's, shared by the lrs it was picked from."""
    return _ALPHA.get() / max(1, int(selected_from))


def alpha_fails(selected_from: int = 1) -> float:
    """The one-sided alpha of a bound that decides a part failing: the look's over the claim's parts (and lrs)."""
    return _ALPHA.get() / (_PARTS.get() * max(1, int(selected_from)))


def alpha_set() -> float:
    """The alpha of a set-valued statement (the lrs within noise of the best, an lr's stability): alpha/(2k), so that
    a ratio or a comparison of two of them errs at most alpha/k, what a part may err in either direction."""
    return alpha_fails() / 2


def bounds(estimate: dict, alpha: float) -> tuple[float, float]:
    """The estimate's lower and upper one-sided bounds at `alpha` each. A range given without `se` (`ci`: a ratio of
    lr sets, say) is taken as it is: the sets it comes from were made at `alpha_set`, valid for either decision."""
    if "se" not in estimate:
        return tuple(estimate["ci"])
    half = float(stats.t.ppf(1.0 - alpha, estimate["df"])) * estimate["se"]
    below, above = estimate.get("bracket", (0.0, 0.0))
    return estimate["mean"] - half - below, estimate["mean"] + half + above


def finish(estimate: dict) -> dict:
    """The estimate with its shown bounds (`ci`, at the level that decides a part holding) and that level."""
    alpha = alpha_holds(estimate.get("selected_from", 1))
    return {**estimate, "ci": list(bounds(estimate, alpha)), "ci_level": f"one-sided {100 * (1 - alpha):.4g}% bounds"}


def binomial_variance_pp(accuracy_pp: float, test_images: float | None) -> float:
    """Upper bound (pp^2) on the test-set term of an accuracy read on a fixed subset of `test_images` images:
    p(1-p)/n, p at least half an image from 0 and 1; 0 where the whole test set was read (`test_images` None)."""
    if not test_images or not math.isfinite(accuracy_pp):
        return 0.0
    n = float(test_images)
    p = min(max(accuracy_pp / 100.0, 0.5 / n), 1.0 - 0.5 / n)
    return 1e4 * p * (1.0 - p) / n


def subset_variance_pp(accuracies: tuple[float, float], test_images: float | None) -> float:
    """Upper bound (pp^2) on the test-set term of a paired gap read on the same fixed subset of `test_images`
    images: (sd_a + sd_b)^2 / n with sd = sqrt(p(1-p)), the largest the images' covariance allows; 0 on the whole
    test set."""
    if not test_images:
        return 0.0
    return sum(math.sqrt(binomial_variance_pp(accuracy, test_images)) for accuracy in accuracies) ** 2


def pooled_variance(values: np.ndarray, floor_sd: float, floor_df: int) -> tuple[int, float]:
    """(df, variance) of per-seed `values` whose spread (n - 1 df) is pooled with a floor (sd, df)."""
    n = len(values)
    df = n - 1 + floor_df
    own = float(values.var(ddof=1)) if n >= 2 else 0.0
    return df, ((n - 1) * own + floor_df * floor_sd**2) / df


def pooled(
    values,
    floor_sd: float,
    floor_df: int,
    extra_variance: float,
    what: str,
    floor_source: str,
    selected_from: int = 1,
    paired: bool = False,
) -> dict:
    """The mean of per-seed `values` with its standard error: their spread pooled with a floor (sd, df), plus
    `extra_variance` (a subset's test-set term)."""
    values = np.asarray(values, dtype=float)
    n, df, variance = len(values), *pooled_variance(values, floor_sd, floor_df)
    picked = f", simultaneous over the {selected_from} lrs it was selected from" if selected_from > 1 else ""
    subset = ", plus the test subset's term (an upper bound)" if extra_variance else ""
    method = (
        f"t over {n} {what} pooled with a seed floor of {floor_sd:.3g} pp ({floor_df} df; {floor_source})"
        f"{subset} ({df} df{picked})"
    )
    return finish(
        {
            "mean": float(values.mean()),
            "sd": math.sqrt(variance),
            "se": math.sqrt(variance / n + extra_variance),
            "seeds": n,
            "df": df,
            "floor_df": floor_df,
            "extra_variance": extra_variance,
            "selected_from": max(1, int(selected_from)),
            "method": method,
            "single_seed": n == 1,
            "paired": paired,
        }
    )


def over_seeds(values, what: str = "seeds", bracket: tuple[float, float] = (0.0, 0.0)) -> dict:
    """The mean of per-seed `values` (two or more) with its t standard error, its bounds moved out by `bracket`
    (how far below and above its reading each true value may lie, for a quantized measurement: no seed count
    averages that away); `paired` where they are paired differences."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        raise ValueError(f"an interval over seeds needs two or more values, got {n}")
    sd = float(values.std(ddof=1))
    resolution = (
        f", widened by the measurement's resolution (-{bracket[0]:.3g}, +{bracket[1]:.3g})" if any(bracket) else ""
    )
    return finish(
        {
            "mean": float(values.mean()),
            "sd": sd,
            "se": sd / math.sqrt(n),
            "seeds": n,
            "df": n - 1,
            "floor_df": 0,
            "extra_variance": 0.0,
            "bracket": [float(bracket[0]), float(bracket[1])],
            "selected_from": 1,
            "method": f"t over {n} {what}{resolution}",
            "single_seed": False,
            "paired": "paired" in what,
        }
    )


def paired_gap(
    reference: pd.Series,
    candidate: pd.Series,
    floor: Floor,
    test_images: float | None = None,
    selected_from: int = 1,
) -> dict:
    """reference - candidate, paired by seed (the Series' index, values in pp): the per-seed differences pooled
    with the gap floor, plus a test subset's term (`test_images`: the subset's size, None for the
    whole test set)."""
    seeds = sorted(set(reference.index) & set(candidate.index))
    if seeds:
        differences = reference.loc[seeds].to_numpy(float) - candidate.loc[seeds].to_numpy(float)
        means = float(reference.loc[seeds].mean()), float(candidate.loc[seeds].mean())
    else:  # no seed in common: the means' difference, as one pair
        means = float(reference.mean()), float(candidate.mean())
        differences = [means[0] - means[1]]
    return pooled(
        differences,
        floor.gap_sd_pp,
        floor.gap_df,
        subset_variance_pp(means, test_images),
        "paired seeds",
        floor.source,
        selected_from,
        paired=True,
    )


def accuracy(scores: pd.Series, floor: Floor, test_images: float | None = None, selected_from: int = 1) -> dict:
    """One model's accuracy at one setting: its seeds pooled with the accuracy floor (plus a subset's term)."""
    return pooled(
        scores.to_numpy(float),
        floor.accuracy_sd_pp,
        floor.accuracy_df,
        binomial_variance_pp(float(scores.mean()), test_images),
        "seeds",
        floor.source,
        selected_from,
    )


def within(estimate: dict, low: float = -math.inf, high: float = math.inf, open_high: bool = False) -> bool | None:
    """Does the estimate lie in [low, high] ([low, high) with `open_high`)? Holds where its one-sided bound(s) at
    `alpha_holds` lie inside; fails where a bound at `alpha_fails` lies outside; else undecided."""
    picked = estimate.get("selected_from", 1)
    lower, upper = bounds(estimate, alpha_holds(picked))
    below_high = upper < high if open_high else upper <= high
    if low <= lower and below_high:
        return True
    two_sided = math.isfinite(low) and math.isfinite(high)  # two ways to fail: each at half the failing alpha
    lower, upper = bounds(estimate, alpha_fails(picked) / (2 if two_sided else 1))
    if upper < low or (lower >= high if open_high else lower > high):
        return False
    return None


def seeds_to_decide(estimate: dict, low: float = -math.inf, high: float = math.inf) -> int | None:
    """Paired seeds at which the estimate's bound would clear its band's nearest edge, at the spread measured
    (at the holding level where the mean lies inside the band, the failing level where outside).

    None where the mean sits on an edge or more than MAX_SEEDS_TO_DECIDE would be needed.
    """
    mean, sd = estimate["mean"], estimate["sd"]
    distance = min(abs(mean - edge) for edge in (low, high) if math.isfinite(edge))
    below, above = estimate.get("bracket", (0.0, 0.0))
    distance -= max(below, above)
    if distance <= 0:
        return None
    picked = estimate.get("selected_from", 1)
    alpha = alpha_holds(picked) if low <= mean <= high else alpha_fails(picked)
    floor_df, extra = estimate.get("floor_df", 0), estimate.get("extra_variance", 0.0)
    seeds = np.arange(2, MAX_SEEDS_TO_DECIDE + 1)
    half_widths = stats.t.ppf(1.0 - alpha, seeds - 1 + floor_df) * np.sqrt(sd**2 / seeds + extra)
    clears = np.flatnonzero(half_widths < distance)
    return int(seeds[clears[0]]) if clears.size else None


def decide_text(
    estimate: dict,
    low: float = -math.inf,
    high: float = math.inf,
    seconds_per_seed: float | None = None,
    model: str | None = None,
) -> str:
    """What would decide an undecided estimate: the (paired) seeds, and what they cost where known (`model`: the
    one model whose estimate it is, where it is one model's: seeds go to it alone)."""
    seeds = seeds_to_decide(estimate, low, high)
    record_need(seeds, int(estimate["seeds"]), model)
    if seeds is None:
        return (
            f"no seed count decides it at sd {estimate['sd']:.2g}: the small-scale value sits on the band's edge, or "
            "a test subset's term is as wide (the whole test set would remove it)"
        )
    what = "paired seeds" if estimate.get("paired") else "seeds"
    text = f"about {seeds} {what} at sd {estimate['sd']:.2g} would decide it"
    if seconds_per_seed and seeds > estimate["seeds"]:
        extra = (seeds - estimate["seeds"]) * seconds_per_seed
        text += (
            f" ({seeds - estimate['seeds']} more: about {extra / 60:.0f} min of training at this profile's measured "
            "speed)"
        )
    return text


def undecided_text(
    estimate: dict,
    low: float = -math.inf,
    high: float = math.inf,
    seconds_per_seed: float | None = None,
    model: str | None = None,
) -> str:
    return f"its bounds straddle the band; {decide_text(estimate, low, high, seconds_per_seed, model)}"


def describe(estimate: dict, unit: str = " pp") -> str:
    """`+2.0 pp (one-sided 95% bounds -0.2..+4.2, 3 seeds, 13 df)` for a gap (signed, pp); an accuracy (unit `%`)
    unsigned. Each end is a one-sided bound at the level that decides a part holding."""
    lower, upper = estimate["ci"]
    number = "{:.3g}" if unit == "%" else "{:+.3g}"
    seeds = "one seed" if estimate["single_seed"] else f"{estimate['seeds']} seeds"
    return (
        f"{number.format(estimate['mean'])}{unit} ({estimate.get('ci_level', 'bounds')} {number.format(lower)}.."
        f"{number.format(upper)}, {seeds}, {estimate['df']} df)"
    )


def finding_text(
    text: str,
    estimate: dict,
    holds: bool | None,
    low: float = -math.inf,
    high: float = math.inf,
    seconds_per_seed: float | None = None,
    unit: str = " pp",
    model: str | None = None,
) -> str:
    """A comparison's finding: the estimate with its bounds, and for an undecided one what would decide it
    (`model`: the one model whose estimate it is, where it is one model's)."""
    if holds is None:
        return f"{text} {describe(estimate, unit)}: {undecided_text(estimate, low, high, seconds_per_seed, model)}"
    return f"{text} {describe(estimate, unit)}"


def fit_line(blocks: np.ndarray, values: np.ndarray, through_origin: bool = False) -> tuple[float, float, float]:
    """(slope, intercept, R^2) of the least-squares line, optionally through the origin."""
    if not through_origin:
        line = stats.linregress(blocks, values)
        return float(line.slope), float(line.intercept), float(line.rvalue**2)
    slope = float(blocks @ values / (blocks @ blocks))
    return slope, 0.0, 1.0 - float(np.sum((values - slope * blocks) ** 2) / np.sum((values - values.mean()) ** 2))
