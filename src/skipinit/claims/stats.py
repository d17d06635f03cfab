"""Every decided statistic as an estimate with a 95% interval, and the one rule that turns it into a verdict.

An estimate is a dict: `mean`, `sd`, `ci95` [low, high], `seeds`, `df`, `method` (how the interval
was made) and `single_seed`. Its interval is a Student-t interval:

- **Accuracies and gaps** (`accuracy`, `paired_gap`): the per-seed values' own spread (n - 1 degrees
  of freedom) pooled with the seed-noise floor measured for that setting (`Floor`: an sd with its own
  degrees of freedom, from the claims file), so that one seed has an interval and a second seed
  always narrows it; t on the pooled degrees of freedom. A setting where no floor was measured takes
  the claims file's stated widening of the widest measured floor. Each accuracy's test-set binomial error
  (p(1-p)/n over its n test images, p kept off 0 and 1 by half an image) is added: it does not
  average out over seeds (they share the test set), and it keeps every interval wider than zero.
- **Fits and speed-ups** (`over_seeds`): t over two or more per-seed values, widened by a stated
  resolution where the values are quantized (steps to a target are read at evaluations: the true step
  lies up to one evaluation interval earlier), which keeps the interval wider than zero.

Levels. A claim with k parts is decided at the family's level: the judge sets `family(k, looks)` and each
part's interval is at 1 - 0.05/(k x looks) (Bonferroni), so a claim is wrongly decided at most 5% of the
time, also where the profile looks at it after each of `looks` rounds of seeds (skipinit.rounds). A gap
between two models at their best lrs takes, with two or more seeds, each seed's lr from the other seeds
(`selection.held_out`), so no seed's number chose its own lr. Otherwise a statistic read at a selected learning
rate (the best of k tried) is at 1 - 0.05/k as well (`selected_from`): simultaneous over the lrs it was picked
from, so picking the best cannot make its interval over-confident.

The rule (`within`): a claim's part holds where the whole interval lies inside its band, fails where
the whole interval lies outside it, and is undecided otherwise. `seeds_to_decide` says how many
paired seeds would decide an undecided estimate at the spread measured.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS_TO_DECIDE = 1000  # beyond this a comparison is called undecidable at the spread measured
_FAMILY = contextvars.ContextVar("family", default=1)  # how many parts the claim being judged has
_LOOKS = contextvars.ContextVar("looks", default=1)  # how many times the profile looks at its claims (its rounds)
_NEEDS: contextvars.ContextVar[list | None] = contextvars.ContextVar("needs", default=None)


@contextlib.contextmanager
def family(parts: int, looks: int = 1):
    """Judge one claim of `parts` parts in a profile that looks `looks` times (adaptive rounds): each part's interval
    at 1 - 0.05/(parts x looks) (Bonferroni over the parts and the looks), so that neither picking which comparisons
    get more seeds nor deciding at any round can raise the claim's error above 5%."""
    tokens = _FAMILY.set(max(1, int(parts))), _LOOKS.set(max(1, int(looks)))
    try:
        yield
    finally:
        _FAMILY.reset(tokens[0])
        _LOOKS.reset(tokens[1])


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


def level(selected_from: int = 1) -> float:
    """The two-sided level of one interval: 95% shared by the claim's parts, the profile's looks and the lrs a value
    was selected from."""
    return 1.0 - (1.0 - CONFIDENCE) / (_FAMILY.get() * _LOOKS.get() * max(1, int(selected_from)))


def t_quantile(df: float, selected_from: int = 1) -> float:
    return float(stats.t.ppf(0.5 + level(selected_from) / 2, df))


@dataclass(frozen=True)
class Floor:
    """The seed-to-seed spread (pp) one setting's runs cannot show themselves: sds with their degrees of freedom."""

    gap_sd_pp: float  # sd over seeds of a paired accuracy gap between two models
    gap_df: int
    accuracy_sd_pp: float  # sd over seeds of one model's accuracy
    accuracy_df: int
    source: str


@dataclass(frozen=True)
class NoiseModel:
    """The claims file's `noise:`: floors measured per setting, and the widening of the widest where none was."""

    floors: tuple[tuple[dict, Floor], ...]
    widening: float
    widening_source: str

    @classmethod
    def from_params(cls, params: dict) -> NoiseModel:
        noise = params.get("noise")
        if not noise:
            raise ValueError("the claims file has no `noise:` section (seed-noise floors)")
        return cls.from_spec(noise)

    @classmethod
    def from_spec(cls, noise: dict) -> NoiseModel:
        floors = tuple(
            (
                dict(entry["where"]),
                Floor(
                    float(entry["gap_sd_pp"]),
                    int(entry["gap_df"]),
                    float(entry["accuracy_sd_pp"]),
                    int(entry["accuracy_df"]),
                    str(entry["source"]),
                ),
            )
            for entry in noise["floors"]
        )
        return cls(floors, float(noise["unmeasured_widening"]), str(noise["widening_source"]))

    def floor_for(self, rows: pd.DataFrame) -> Floor:
        """The floor measured where `rows` (one setting) were run, else the widest floor widened, saying so."""
        for where, floor in self.floors:
            if all(key in rows and set(rows[key].unique()) == {value} for key, value in where.items()):
                return floor
        where, floor = max(self.floors, key=lambda entry: entry[1].accuracy_sd_pp)
        at = ", ".join(f"{key} {value}" for key, value in where.items())
        return Floor(
            floor.gap_sd_pp * self.widening,
            floor.gap_df,
            floor.accuracy_sd_pp * self.widening,
            floor.accuracy_df,
            f"unmeasured in this setting: the floor of {at} widened x{self.widening:g} ({self.widening_source})",
        )


def binomial_variance_pp(accuracy_pp: float, test_images: float | None) -> float:
    """Variance (pp^2) of an accuracy measured on `test_images` images: p(1-p)/n, p at least half an image from
    0 and 1 (the test set's resolution); 0 where n is unknown."""
    if not test_images or not math.isfinite(accuracy_pp):
        return 0.0
    n = float(test_images)
    p = min(max(accuracy_pp / 100.0, 0.5 / n), 1.0 - 0.5 / n)
    return 1e4 * p * (1.0 - p) / n


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
    """The t-interval of the mean of per-seed `values`: their spread pooled with a floor (sd, df), plus
    `extra_variance`."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    own = float(values.var(ddof=1)) if n >= 2 else 0.0
    df = n - 1 + floor_df
    variance = ((n - 1) * own + floor_df * floor_sd**2) / df
    se = math.sqrt(variance / n + extra_variance)
    mean = float(values.mean())
    half = t_quantile(df, selected_from) * se
    picked = f", simultaneous over the {selected_from} lrs it was selected from" if selected_from > 1 else ""
    method = (
        f"t over {n} {what} pooled with a seed floor of {floor_sd:.3g} pp ({floor_df} df; {floor_source}), "
        f"plus the test-set binomial error ({df} df{picked})"
    )
    return {
        "mean": mean,
        "sd": math.sqrt(variance),
        "ci95": [mean - half, mean + half],
        "seeds": n,
        "df": df,
        "floor_df": floor_df,
        "extra_variance": extra_variance,
        "method": method,
        "single_seed": n == 1,
        "paired": paired,
    }


def over_seeds(values, what: str = "seeds", bracket: tuple[float, float] = (0.0, 0.0)) -> dict:
    """The t-interval of the mean of per-seed `values` (two or more), its ends moved out by `bracket` (how far below
    and above its measured value each true value may lie, for a quantized measurement: no seed count averages
    that away); `paired` where they are paired differences."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        raise ValueError(f"an interval over seeds needs two or more values, got {n}")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    low, high = stats.ttest_1samp(values, 0.0).confidence_interval(level())
    resolution = (
        f", widened by the measurement's resolution (-{bracket[0]:.3g}, +{bracket[1]:.3g})" if any(bracket) else ""
    )
    return {
        "mean": mean,
        "sd": sd,
        "ci95": [float(low) - bracket[0], float(high) + bracket[1]],
        "seeds": n,
        "df": n - 1,
        "floor_df": 0,
        "extra_variance": 0.0,
        "method": f"t over {n} {what}{resolution}",
        "single_seed": False,
        "paired": "paired" in what,
    }


def paired_gap(
    reference: pd.Series,
    candidate: pd.Series,
    floor: Floor,
    test_images: tuple[float | None, float | None] = (None, None),
    selected_from: int = 1,
) -> dict:
    """reference - candidate, paired by seed (the Series' index, values in pp): the per-seed differences pooled
    with the gap floor, plus both sides' binomial errors (`test_images`: each side's test-set size)."""
    seeds = sorted(set(reference.index) & set(candidate.index))
    if seeds:
        differences = reference.loc[seeds].to_numpy(float) - candidate.loc[seeds].to_numpy(float)
        means = float(reference.loc[seeds].mean()), float(candidate.loc[seeds].mean())
    else:  # no seed in common: the means' difference, as one pair
        means = float(reference.mean()), float(candidate.mean())
        differences = [means[0] - means[1]]
    binomial = sum(binomial_variance_pp(mean, n) for mean, n in zip(means, test_images))
    return pooled(
        differences, floor.gap_sd_pp, floor.gap_df, binomial, "paired seeds", floor.source, selected_from, paired=True
    )


def accuracy(scores: pd.Series, floor: Floor, test_images: float | None = None, selected_from: int = 1) -> dict:
    """One model's accuracy at one setting: its seeds pooled with the accuracy floor, plus the binomial error."""
    mean = float(scores.mean())
    return pooled(
        scores.to_numpy(float),
        floor.accuracy_sd_pp,
        floor.accuracy_df,
        binomial_variance_pp(mean, test_images),
        "seeds",
        floor.source,
        selected_from,
    )


def within(estimate: dict, low: float = -math.inf, high: float = math.inf, open_high: bool = False) -> bool | None:
    """Does the estimate lie in [low, high] ([low, high) with `open_high`)? Its whole interval inside: yes;
    wholly outside: no; else undecided."""
    lower, upper = estimate["ci95"]
    below_high = upper < high if open_high else upper <= high
    if low <= lower and below_high:
        return True
    if upper < low or (lower >= high if open_high else lower > high):
        return False
    return None


def seeds_to_decide(estimate: dict, low: float = -math.inf, high: float = math.inf) -> int | None:
    """Paired seeds at which the estimate's interval would clear its band's nearest edge, at the spread measured.

    None where the mean sits on an edge or more than MAX_SEEDS_TO_DECIDE would be needed.
    """
    mean, sd = estimate["mean"], estimate["sd"]
    distance = min(abs(mean - edge) for edge in (low, high) if math.isfinite(edge))
    if distance <= 0:
        return None
    floor_df, extra = estimate.get("floor_df", 0), estimate.get("extra_variance", 0.0)
    seeds = np.arange(2, MAX_SEEDS_TO_DECIDE + 1)
    half_widths = stats.t.ppf(0.5 + level() / 2, seeds - 1 + floor_df) * np.sqrt(sd**2 / seeds + extra)
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
            f"no seed count decides it at sd {estimate['sd']:.2g}: the mean sits on the band's edge, or the test "
            "set's own error is as wide (more test images would)"
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
    return f"the 95% interval straddles the band; {decide_text(estimate, low, high, seconds_per_seed, model)}"


def describe(estimate: dict, unit: str = " pp") -> str:
    """`+2.0 pp (95% CI -0.2..+4.2, 3 seeds, 13 df)` for a gap (signed, pp); an accuracy (unit `%`) unsigned."""
    lower, upper = estimate["ci95"]
    number = "{:.3g}" if unit == "%" else "{:+.3g}"
    seeds = "one seed" if estimate["single_seed"] else f"{estimate['seeds']} seeds"
    return (
        f"{number.format(estimate['mean'])}{unit} (95% CI {number.format(lower)}..{number.format(upper)}, {seeds}, "
        f"{estimate['df']} df)"
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
    """A comparison's finding: the estimate with its interval, and for an undecided one what would decide it
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
