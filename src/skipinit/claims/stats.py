"""Every decided statistic as an estimate with a 95% interval, and the one rule that turns it into a verdict.

An estimate is a dict: `mean`, `sd`, `ci95` [low, high], `seeds`, `method` (how the interval was
made) and `single_seed`. The interval comes from one of two places:

- **Seeds.** With two or more seeds, a Student-t interval over per-seed values: paired differences
  for a gap between two models (the same seed shares data order and augmentation, so the gap is far
  less noisy than either accuracy), per-seed fits for a slope or an exponent.
- **A stated noise model**, where there is one seed: the test-set binomial error of each accuracy
  (p(1-p)/n over the n test images), widened by a seed-noise floor (`NoiseModel`, from the claims
  file, with its source), as a normal interval. The evidence names the model.

The rule (`within`): a claim's part holds where the whole interval lies inside its band, fails where
the whole interval lies outside it, and is undecided otherwise. `seeds_to_decide` says how many
paired seeds would decide an undecided estimate at the spread measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS_TO_DECIDE = 1000  # beyond this a comparison is called undecidable at the spread measured


@dataclass(frozen=True)
class NoiseModel:
    """What one seed's number is worth: the seed-to-seed spread a single run cannot show.

    `gap_sd_pp`: the sd over seeds of a paired accuracy gap between two models; `accuracy_sd_pp`: the
    sd over seeds of one model's accuracy; both in percentage points, with where they were measured.
    """

    gap_sd_pp: float
    accuracy_sd_pp: float
    source: str

    @classmethod
    def from_params(cls, params: dict) -> NoiseModel:
        noise = params.get("noise")
        if not noise:
            raise ValueError("the claims file has no `noise:` section (seed-noise floors for single-seed decisions)")
        return cls(float(noise["gap_sd_pp"]), float(noise["accuracy_sd_pp"]), str(noise["source"]))


def z_quantile() -> float:
    return float(stats.norm.ppf(0.5 + CONFIDENCE / 2))


def t_quantile(seeds: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, seeds - 1))


def over_seeds(values, what: str = "seeds") -> dict:
    """The t-interval of the mean of per-seed `values` (two or more); `paired` where they are paired differences."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        raise ValueError(f"an interval over seeds needs two or more values, got {n}")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = t_quantile(n) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "seeds": n,
            "method": f"t over {n} {what}", "single_seed": False, "paired": "paired" in what}


def binomial_variance_pp(accuracy_pp: float, test_images: float | None) -> float:
    """Variance (pp^2) of an accuracy measured on `test_images` images: p(1-p)/n; 0 where n is unknown."""
    if not test_images or not math.isfinite(accuracy_pp):
        return 0.0
    p = min(max(accuracy_pp / 100.0, 0.0), 1.0)
    return 1e4 * p * (1.0 - p) / float(test_images)


def modelled(mean: float, variance: float, floor_pp: float, noise: NoiseModel, test_images: list, paired: bool) -> dict:
    """A one-seed estimate: normal interval from the binomial test-set error plus the seed floor."""
    sd = math.sqrt(variance + floor_pp**2)
    half = z_quantile() * sd
    counts = "/".join(str(int(n)) for n in test_images if n) or "unknown"
    method = (f"noise model (one seed): test-set binomial error ({counts} test images) "
              f"widened by a seed floor of {floor_pp:g} pp ({noise.source})")
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "seeds": 1, "method": method, "single_seed": True,
            "paired": paired}


def paired_gap(reference: pd.Series, candidate: pd.Series, noise: NoiseModel,
               test_images: tuple[float | None, float | None] = (None, None)) -> dict:
    """reference - candidate, paired by seed (the Series' index, values in pp).

    Two or more common seeds: t over the per-seed differences. Otherwise the means' difference with the
    noise model's interval (`test_images`: each side's test-set size, for the binomial part).
    """
    seeds = sorted(set(reference.index) & set(candidate.index))
    if len(seeds) >= 2:
        differences = reference.loc[seeds].to_numpy(float) - candidate.loc[seeds].to_numpy(float)
        return over_seeds(differences, "paired seeds")
    means = float(reference.mean()), float(candidate.mean())
    variance = sum(binomial_variance_pp(mean, n) for mean, n in zip(means, test_images))
    return modelled(means[0] - means[1], variance, noise.gap_sd_pp, noise, list(test_images), paired=True)


def accuracy(scores: pd.Series, noise: NoiseModel, test_images: float | None = None) -> dict:
    """One model's accuracy at one setting: t over seeds, or with one seed the noise model."""
    if len(scores) >= 2:
        return over_seeds(scores.to_numpy(float))
    mean = float(scores.mean())
    return modelled(mean, binomial_variance_pp(mean, test_images), noise.accuracy_sd_pp, noise, [test_images], paired=False)


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

    None where the mean sits on an edge or more than MAX_SEEDS_TO_DECIDE would be needed. The spread
    is the measured sd over seeds, or the noise model's for a single seed.
    """
    mean, sd = estimate["mean"], estimate["sd"]
    distance = min(abs(mean - edge) for edge in (low, high) if math.isfinite(edge))
    if not sd:
        return None
    if distance <= 0:
        return None
    for seeds in range(2, MAX_SEEDS_TO_DECIDE + 1):
        if t_quantile(seeds) * sd / math.sqrt(seeds) < distance:
            return seeds
    return None


def decide_text(estimate: dict, low: float = -math.inf, high: float = math.inf, seconds_per_seed: float | None = None) -> str:
    """What would decide an undecided estimate: the (paired) seeds, and what they cost where known."""
    seeds = seeds_to_decide(estimate, low, high)
    if seeds is None:
        return f"no seed count decides it at sd {estimate['sd']:.2g}: the mean sits on the band's edge"
    what = "paired seeds" if estimate.get("paired") else "seeds"
    text = f"about {seeds} {what} at sd {estimate['sd']:.2g} would decide it"
    if seconds_per_seed and seeds > estimate["seeds"]:
        extra = (seeds - estimate["seeds"]) * seconds_per_seed
        text += f" ({seeds - estimate['seeds']} more: about {extra / 60:.0f} min of training at this profile's measured speed)"
    return text


def undecided_text(estimate: dict, low: float = -math.inf, high: float = math.inf, seconds_per_seed: float | None = None) -> str:
    return f"the 95% interval straddles the band; {decide_text(estimate, low, high, seconds_per_seed)}"


def describe(estimate: dict, unit: str = " pp") -> str:
    """`+2.0 pp (95% CI -0.2..+4.2, t over 3 paired seeds)` for a gap (signed, pp); an accuracy (unit `%`)
    unsigned; for one seed the interval is the noise model's, which the estimate's `method` names."""
    lower, upper = estimate["ci95"]
    how = "one seed, noise model" if estimate["single_seed"] else estimate["method"]
    number = "{:.3g}" if unit == "%" else "{:+.3g}"
    return f"{number.format(estimate['mean'])}{unit} (95% CI {number.format(lower)}..{number.format(upper)}, {how})"


def finding_text(text: str, estimate: dict, holds: bool | None, low: float = -math.inf, high: float = math.inf,
                 seconds_per_seed: float | None = None, unit: str = " pp") -> str:
    """A comparison's finding: the estimate with its interval, and for an undecided one what would decide it."""
    if holds is None:
        return f"{text} {describe(estimate, unit)}: {undecided_text(estimate, low, high, seconds_per_seed)}"
    return f"{text} {describe(estimate, unit)}"


def fit_line(blocks: np.ndarray, values: np.ndarray, through_origin: bool = False) -> tuple[float, float, float]:
    """(slope, intercept, R^2) of the least-squares line, optionally through the origin."""
    if through_origin:
        slope, intercept = float(blocks @ values / (blocks @ blocks)), 0.0
    else:
        slope, intercept = (float(v) for v in np.polyfit(blocks, values, 1))
    residuals = values - (slope * blocks + intercept)
    return slope, intercept, 1.0 - float(np.sum(residuals**2) / np.sum((values - values.mean()) ** 2))
