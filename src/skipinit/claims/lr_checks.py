"""Checks on learning rates: the largest stable lr against the optimal one, and how both move with batch size.

An lr is stable where most seeds train there: the share of its seeds that diverged has a one-sided Clopper-Pearson
upper bound below `MAX_DIVERGED_SHARE`, and the score of the seeds that did not diverge (pooled with the claims
file's seed-noise floor; `stats.accuracy`) surely reaches chance + `stable_margin_pp`, both at `stats.alpha_set`
(alpha/(2k)). It is unstable where the share's lower bound lies above `MAX_DIVERGED_SHARE`, or where the seeds that
did not diverge surely score below, each at half that; otherwise it is undecided. One seed never decides it either
way (7 seeds that do not diverge make an lr stable in a claim of 2 parts, 8 in one of 4; 9 of 9 diverged make it
unstable in one of 4).
The largest stable lr of a grid lies in [the largest stable lr, the first larger unstable lr): an undecided lr
between widens that range, and a grid with no unstable lr above its largest stable one does not reach divergence
and only bounds the stable lr from below.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats as distributions

from skipinit.claims.floors import NoiseModel
from skipinit.claims.registry import INCONCLUSIVE, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import (
    at_best,
    best_per,
    common_values,
    edge_text,
    grid_step,
    interior,
    lr_ratio_range,
    optimum_range,
    preflight,
    select,
    subset_images,
)
from skipinit.claims.stats import accuracy, alpha_set, bounds
from skipinit.runtable import scored

NO_DIVERGENCE = "lr grid does not reach divergence"
MAX_DIVERGED_SHARE = 0.5  # stable: most seeds train (registered in config/README.md)


def diverged_share_bounds(diverged: int, seeds: int, alpha_low: float, alpha_high: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of the probability that a seed diverges, from `diverged` of `seeds`."""
    low = 0.0 if diverged == 0 else float(distributions.beta.ppf(alpha_low, diverged, seeds - diverged + 1))
    high = 1.0 if diverged == seeds else float(distributions.beta.ppf(1 - alpha_high, diverged + 1, seeds - diverged))
    return low, high


def seeds_for_stable() -> int:
    """The fewest seeds, none diverged, whose diverged share's upper bound falls below MAX_DIVERGED_SHARE."""
    return math.floor(math.log(alpha_set()) / math.log(1 - MAX_DIVERGED_SHARE)) + 1


def lr_status(at_lr: pd.DataFrame, train_from: float, floor) -> tuple[bool | None, dict]:
    """Whether one lr is stable (True), unstable (False) or undecided (None), with the numbers that say so."""
    per_seed = at_lr.groupby("seed")["diverged"].any()
    diverged, seeds = int(per_seed.sum()), len(per_seed)
    # Stable: two tests that must both pass, each at alpha_set. Unstable: either of two, each at alpha_set / 2.
    share_low, share_high = diverged_share_bounds(diverged, seeds, alpha_set() / 2, alpha_set())
    live = scored(at_lr[~at_lr["seed"].map(per_seed)])
    everyone = accuracy(scored(at_lr).groupby("seed")["score"].mean(), floor, subset_images(at_lr))
    if len(live):
        score = accuracy(live.groupby("seed")["score"].mean(), floor, subset_images(at_lr))
        trains = bounds(score, alpha_set())[0] >= train_from
        fails = bounds(score, alpha_set() / 2)[1] < train_from
    else:
        trains = fails = False
    if share_high < MAX_DIVERGED_SHARE and trains:
        status = True
    elif share_low > MAX_DIVERGED_SHARE or fails:
        status = False
    else:
        status = None
    numbers = {
        "diverged": f"{diverged}/{seeds}",
        "diverged_seeds": diverged,
        "diverged_share_bounds": [share_low, share_high],
        "score": everyone,
    }
    return status, numbers


def stable_range(rows: pd.DataFrame, train_from: float, noise: NoiseModel) -> dict:
    """Where the largest stable lr of `rows` (one model at one setting) lies: [low, high), from its lr grid.

    A fixed-sequence test, which stability's order in the lr allows without splitting alpha over the lrs: low is
    the last of the lrs that are surely stable from the smallest up (0 when the smallest is not); high the first
    of the lrs that are surely unstable from the largest down (inf when the largest is not).
    """
    floor = noise.floor_for(rows)
    status, numbers = {}, {}
    for lr, at_lr in rows.groupby("lr"):
        status[lr], numbers[lr] = lr_status(at_lr, train_from, floor)
    lrs = sorted(status)
    low, high = 0.0, math.inf
    for lr in lrs:
        if status[lr] is not True:
            break
        low = lr
    for lr in reversed(lrs):
        if status[lr] is not False or lr <= low:
            break
        high = lr
    return {
        "stable_lr": low,
        "first_unstable_lr": high,
        "lrs": lrs,
        "diverged_lrs": [lr for lr in lrs if numbers[lr]["diverged_seeds"]],
        "undecided_lrs": [lr for lr in lrs if status[lr] is None],
        "diverged_by_lr": {str(lr): numbers[lr]["diverged"] for lr in lrs},
        "diverged_share_bounds_by_lr": {str(lr): numbers[lr]["diverged_share_bounds"] for lr in lrs},
        "score_ci_by_lr": {str(lr): numbers[lr]["score"]["ci"] for lr in lrs},
        "interval": "; ".join(sorted({numbers[lr]["score"]["method"] for lr in lrs})),
    }


def lr_range(stable: dict) -> str:
    """`[0.4, 1.6)`: where a largest stable lr lies, each grid point placed by its 95% interval."""
    return f"[{stable['stable_lr']:g}, {stable['first_unstable_lr']:g})"


def setting_text(setting: dict) -> str:
    return ", ".join(f"{key.replace('_size', '')} {value}" for key, value in setting.items())


def with_stable_lrs(early: Verdict, runs: pd.DataFrame, params: dict, train_from: float) -> Verdict:
    """A budget too short for the optimal lr still measures the stable one (divergence shows early): report it."""
    verdict, evidence = early
    stable = {
        name: {
            str(batch_size): stable_range(rows, train_from, NoiseModel.from_params(params))
            for batch_size, rows in select(runs, params, name).groupby("batch_size")
        }
        for name in params["compare"]
    }
    text = "; ".join(
        f"{name} batch {batch_size}: {bounds['stable_lr']:g}"
        + (f" ({NO_DIVERGENCE})" if math.isinf(bounds["first_unstable_lr"]) else "")
        for name, per_batch in stable.items()
        for batch_size, bounds in per_batch.items()
    )
    reason = (
        f"{evidence['reason']}; the largest stable lr, measured at any budget: {text}" if text else evidence["reason"]
    )
    return verdict, {**evidence, "stable": stable, "reason": reason}


@check
def optimum_below_stable_lr(runs: pd.DataFrame, params: dict) -> Verdict:
    """Per model: at batch sizes <= `small_batch_max` the largest stable lr is >= `min_factor` x the optimal lr,
    while at the largest batch size (>= `large_batch_min`) it is within `max_steps_large` steps of its lr grid.

    The ratio's range follows from both grids: the stable lr's range (`stable_range`) over the range of
    the optimal lr (`optimum_range`, an edge of the grid only bounds it). A part is undecided where the
    range straddles the factor, e.g. because the lr grid does not reach divergence.
    """
    train_from = params["chance_acc"] + params["stable_margin_pp"]
    if early := preflight(runs, params):
        return early if early[0] != INCONCLUSIVE else with_stable_lrs(early, runs, params, train_from)
    findings, evidence = [], {"trains_from": train_from, "min_factor": params["min_factor"], "models": {}}
    for name in params["compare"]:
        rows = select(runs, params, name)
        table = best_per(runs, params, name, "batch_size")
        if table.empty:
            findings.append(Finding(None, f"no {name} runs"))
            continue
        largest = max(table.index)
        evidence["models"][name] = {}
        for batch_size, best in table.iterrows():
            small, large = (
                batch_size <= params["small_batch_max"],
                batch_size == largest and batch_size >= params["large_batch_min"],
            )
            if not (small or large):
                continue
            stable = stable_range(rows[rows["batch_size"] == batch_size], train_from, NoiseModel.from_params(params))
            opt_low, opt_high = optimum_range(best)
            ratio = [stable["stable_lr"] / opt_high, stable["first_unstable_lr"] / opt_low if opt_low else math.inf]
            evidence["models"][name][str(batch_size)] = {**at_best(best), **stable, "ratio_range": ratio}
            head = (
                f"{name} batch {batch_size}: largest stable lr {stable['stable_lr']:g} vs optimal {best['best_lr']:g}"
            )
            why = []
            if stable["stable_lr"] == 0:
                seeds = int(rows[rows["batch_size"] == batch_size].groupby("lr")["seed"].nunique().min())
                findings.append(
                    Finding(
                        None,
                        f"{name} batch {batch_size}: no lr of the grid is surely stable ({seeds} seed(s) per lr: at "
                        f"least {seeds_for_stable()} that do not diverge make an lr stable)",
                    )
                )
                continue
            if math.isinf(stable["first_unstable_lr"]):
                why.append(NO_DIVERGENCE)
            if not interior(best):
                why.append(edge_text(name, best))
            if small:
                bound = params["min_factor"]
                holds = True if ratio[0] >= bound else False if ratio[1] < bound else None
                claim = f"(ratio in [{ratio[0]:.3g}, {ratio[1]:.3g}], needs >= {bound:g})"
            else:
                bound = grid_step(rows[rows["batch_size"] == batch_size]) ** params["max_steps_large"]
                holds = True if ratio[1] <= bound else False if ratio[0] > bound else None
                steps = f"{params['max_steps_large']:g} step(s) of the lr grid"
                claim = (
                    f"(ratio in [{ratio[0]:.3g}, {ratio[1]:.3g}], needs <= {bound:g}, {steps}, at the largest batch)"
                )
            text = f"{head} {claim}"
            findings.append(
                Finding(
                    holds,
                    (
                        text
                        if holds is not None
                        else f"{text}: {'; '.join(why) or 'the lr grid is too coarse to place the ratio'}"
                    ),
                )
            )
        if largest < params["large_batch_min"]:
            findings.append(Finding(None, f"{name}: no batch size >= {params['large_batch_min']} (largest {largest})"))
    return verdict_of(findings, evidence)


@check
def largest_stable_lr_exceeds(runs: pd.DataFrame, params: dict) -> Verdict:
    """At every (depth, width, batch size) both were run at, `reference` trains at an lr where each of `others` fails.

    Holds where the reference's largest stable lr is at least the first lr where the other fails; fails
    where the reference fails at an lr where the other trains; undecided otherwise. A setting whose lrs
    stop before either model diverges (the depth study's single lr, say) says nothing about the stable
    lr: it is listed, but leaves a model undecided only when no other setting decides it. The same
    largest stable lr on a grid that reaches divergence is a tie at the grid's resolution and always
    leaves the claim undecided.
    """
    if early := preflight(runs, params):
        return early
    keys, train_from = ["depth", "width", "batch_size"], params["chance_acc"] + params["stable_margin_pp"]
    reference = select(runs, params, params["reference"])
    findings, evidence = [], {"trains_from": train_from, "settings": {}}
    for name in params["others"]:
        other = select(runs, params, name)
        settings = sorted(set(map(tuple, reference[keys].to_numpy())) & set(map(tuple, other[keys].to_numpy())))
        if not settings:
            findings.append(Finding(None, f"no setting with both {params['reference']} and {name} runs"))
        parts, below_divergence = [], []
        for values in settings:
            setting = dict(zip(keys, (int(v) for v in values)))

            def at(rows: pd.DataFrame, setting: dict = setting) -> pd.DataFrame:
                return rows[(rows[keys] == pd.Series(setting)).all(axis=1)]

            noise = NoiseModel.from_params(params)
            ref, oth = stable_range(at(reference), train_from, noise), stable_range(at(other), train_from, noise)
            evidence["settings"].setdefault(setting_text(setting), {})[params["reference"]] = ref
            evidence["settings"][setting_text(setting)][name] = oth
            text = (
                f"{setting_text(setting)}: largest stable lr in {lr_range(ref)} ({params['reference']}) "
                f"vs {lr_range(oth)} ({name})"
            )
            if ref["stable_lr"] > 0 and ref["stable_lr"] >= oth["first_unstable_lr"]:
                parts.append(Finding(True, f"{text}: {name} fails at {oth['first_unstable_lr']:g}"))
            elif oth["stable_lr"] > 0 and ref["first_unstable_lr"] <= oth["stable_lr"]:
                parts.append(Finding(False, f"{text}: {params['reference']} fails at {ref['first_unstable_lr']:g}"))
            elif math.isinf(ref["first_unstable_lr"]) or math.isinf(oth["first_unstable_lr"]):
                below_divergence.append(f"{text}: {NO_DIVERGENCE}")
            else:
                parts.append(Finding(None, f"{text}: the grid cannot tell them apart"))
        if below_divergence:
            evidence.setdefault("below_divergence", []).extend(below_divergence)
        findings += parts if parts else [Finding(None, text) for text in below_divergence]
    return verdict_of(findings, evidence)


@check
def optimal_lr_grows_with_batch(runs: pd.DataFrame, params: dict) -> Verdict:
    """Per model, among batch sizes <= `small_batch_max`: the optimal lr at the largest is >= `min_lr_ratio` x that at
    the smallest."""
    if early := preflight(runs, params):
        return early
    findings, evidence = [], {"min_lr_ratio": params["min_lr_ratio"], "models": {}}
    tables = {name: best_per(runs, params, name, "batch_size") for name in params["compare"]}
    small = [b for b in common_values(tables) if b <= params["small_batch_max"]]
    if len(small) < 2:
        return INCONCLUSIVE, {
            "batch_sizes": small,
            "reason": f"{len(small)} batch size(s) <= {params['small_batch_max']} with every model; the trend needs 2",
        }
    for name, table in tables.items():
        first, last = table.loc[small[0]], table.loc[small[-1]]
        low, high = lr_ratio_range(last, first)
        evidence["models"][name] = {
            str(small[0]): at_best(first),
            str(small[-1]): at_best(last),
            "lr_ratio_range": [low, high],
        }
        bound = params["min_lr_ratio"]
        holds = True if low >= bound else False if high < bound else None
        text = f"{name}: optimal lr {first['best_lr']:g} at batch {small[0]}, {last['best_lr']:g} at batch {small[-1]}"
        if holds is None:
            edges = [edge_text(name, row) for row in (first, last) if not interior(row)]
            text += (
                f" (ratio in [{low:.3g}, {high:.3g}]): "
                f"{'; '.join(edges) or 'the lrs within noise of each best leave the ratio unplaced'}"
            )
        findings.append(Finding(holds, text))
    return verdict_of(findings, evidence)
