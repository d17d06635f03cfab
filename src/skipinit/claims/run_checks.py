"""Checks on training results (Tables 1-3, Figures 3-4), read from runs.parquet.

Every accuracy comparison pairs the two models by seed (`stats.paired_gap`) and every accuracy
against chance is an estimate over seeds (`stats.accuracy`), pooled with the claims file's seed-noise
floor for its setting, so one seed has an interval too. Each is decided by its 95% interval: inside the claim's band,
outside it, or
straddling it (undecided, with the seeds that would decide it).
"""

from __future__ import annotations

import math

import pandas as pd

from skipinit.claims.floors import NoiseModel
from skipinit.claims.registry import INCONCLUSIVE, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import (
    accuracy_at,
    at_best,
    at_setting,
    batch_comparison,
    best_per,
    common_values,
    gap_at,
    grid_step,
    held_out,
    interior,
    preflight,
    seed_scores,
    select,
    subset_images,
)
from skipinit.claims.stats import (
    describe,
    finding_text,
    pooled,
    subset_variance_pp,
    undecided_text,
    within,
)
from skipinit.runtable import best_lr_summary


@check
def trainability_at_largest_depth(runs: pd.DataFrame, params: dict) -> Verdict:
    """At the largest depth, `must_fail` models fail and `must_train` models train.

    Fails: at every lr tried the mean test accuracy over seeds stays below chance +
    `fail_margin_pp` (diverged runs count as 0). Trains: at the best lr it reaches chance +
    `train_margin_pp`. A negative finding (fails, or does not train) from fewer than `min_lrs`
    learning rates is undecided: another lr might train.
    """
    if early := preflight(runs, params):
        return early
    depth = int(runs["depth"].max())
    if depth < params["min_depth"]:
        return INCONCLUSIVE, {
            "largest_depth": depth,
            "reason": f"no run at depth >= {params['min_depth']} (deepest: {depth})",
        }
    deepest = runs[runs["depth"] == depth]
    chance = params["chance_acc"]
    fail_below, train_from = chance + params["fail_margin_pp"], chance + params["train_margin_pp"]
    findings, evidence = (
        [],
        {
            "depth": depth,
            "chance_acc": chance,
            "fails_below": fail_below,
            "trains_from": train_from,
        },
    )
    expectations = [(name, False) for name in params["must_fail"]] + [(name, True) for name in params["must_train"]]
    for name, should_train in expectations:
        rows = select(deepest, params, name)
        if rows.empty:
            findings.append(Finding(None, f"no {name} run at depth {depth}"))
            continue
        best = best_lr_summary(rows, ["depth"]).iloc[0]
        estimate = accuracy_at(rows, params, best["best_lr"], int(best["lrs_tried"]))
        evidence[name] = {
            **at_best(best),
            "accuracy": estimate,
            "runs": len(rows),
            "diverged_runs": int(rows["diverged"].sum()),
        }
        lrs = int(best["lrs_tried"])
        trains, fails = within(estimate, low=train_from), within(estimate, high=fail_below)
        outcome = "trains" if trains else "fails" if fails else "neither surely trains nor surely fails"
        diverged = f"{evidence[name]['diverged_runs']}/{len(rows)} runs diverged"
        text = f"{name} {outcome} at depth {depth} (best {describe(estimate, '%')} over {lrs} lr(s), {diverged})"
        holds = trains if should_train else fails
        band = (train_from, math.inf) if should_train else (-math.inf, fail_below)
        negative = holds is False if should_train else fails is True  # failing to train: another lr might overturn it
        if negative and lrs < params["min_lrs"]:
            findings.append(Finding(None, f"{text}, but only {lrs} learning rate(s) tried (need {params['min_lrs']})"))
        elif holds is None:
            findings.append(Finding(None, f"{text}: {undecided_text(estimate, *band, model=name)}"))
        else:
            findings.append(Finding(holds, text))
    return verdict_of(findings, evidence)


@check
def matches_reference_at_every_depth(runs: pd.DataFrame, params: dict) -> Verdict:
    """At every depth (or every value of `over`, e.g. batch_size), `candidate` at its best lr is at most
    `max_gap_pp` below `reference` at its best lr."""
    if early := preflight(runs, params):
        return early
    reference, candidate, key = params["reference"], params["candidate"], params.get("over", "depth")
    label = "batch" if key == "batch_size" else key
    tables = {name: best_per(runs, params, name, key) for name in (reference, candidate)}
    values = common_values(tables)
    if not values:
        return INCONCLUSIVE, {"reason": f"no {label} with both {reference} and {candidate} runs"}
    findings, evidence = [], {"max_gap_pp": params["max_gap_pp"], f"{key}s": {}}
    for value in values:
        ref, cand = tables[reference].loc[value], tables[candidate].loc[value]
        gap = gap_at(runs, params, tables, key, value, (reference, candidate))
        evidence[f"{key}s"][str(value)] = {
            reference: at_best(ref),
            candidate: at_best(cand),
            "gap_pp": gap["mean"],
            "gap": gap,
        }
        holds = within(gap, high=params["max_gap_pp"])
        text = (
            f"{label} {value}: {candidate} {cand['test_acc_mean']:.1f}% vs {reference} {ref['test_acc_mean']:.1f}%, gap"
        )
        findings.append(
            Finding(
                holds,
                finding_text(text, gap, holds, high=params["max_gap_pp"], seconds_per_seed=gap["seconds_per_seed"]),
            )
        )
    evidence[f"{candidate}_test_acc_at_largest_{key}"] = tables[candidate].loc[values[-1], "test_acc_mean"]
    return verdict_of(findings, evidence)


@check
def small_batch_parity(runs: pd.DataFrame, params: dict) -> Verdict:
    """At batch sizes <= `small_batch_max`: optimal lrs within `max_lr_steps` steps of the lr grid of each other,
    accuracies within `max_gap_pp`."""
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    small = [b for b in common_values(tables) if b <= params["small_batch_max"]]
    if not small:
        reason = f"no batch size <= {params['small_batch_max']} with both {names[0]} and {names[1]} runs"
        return INCONCLUSIVE, {"reason": reason}
    findings, evidence = (
        [],
        {"max_lr_steps": params["max_lr_steps"], "max_gap_pp": params["max_gap_pp"], "batch_sizes": {}},
    )
    for batch_size in small:
        bound = max(grid_step(at_setting(runs, params, name, {"batch_size": batch_size})) for name in names)
        bound **= params["max_lr_steps"]

        def similar_lrs(low: float, high: float, bound: float = bound) -> bool | None:
            return True if 1 / bound <= low and high <= bound else False if high < 1 / bound or low > bound else None

        rows = tuple(tables[name].loc[batch_size] for name in names)
        gap = gap_at(runs, params, tables, "batch_size", batch_size, names)
        found, evidence["batch_sizes"][str(batch_size)] = batch_comparison(
            batch_size, rows, names, similar_lrs, gap, (-params["max_gap_pp"], params["max_gap_pp"])
        )
        findings += found
    return verdict_of(findings, evidence)


@check
def large_batch_advantage(runs: pd.DataFrame, params: dict) -> Verdict:
    """At the largest batch size (>= `large_batch_min`), `reference` has the larger optimal lr and the higher accuracy.

    Larger: at least `min_lr_ratio` times the candidate's; higher: by at least `min_gap_pp`.
    """
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    batch_sizes = common_values(tables)
    largest = batch_sizes[-1] if batch_sizes else None
    if largest is None or largest < params["large_batch_min"]:
        reason = f"no batch size >= {params['large_batch_min']} with both models (largest: {largest})"
        return INCONCLUSIVE, {"largest_batch_size": largest, "reason": reason}
    ratio = params["min_lr_ratio"]
    findings, found = batch_comparison(
        largest,
        tuple(tables[name].loc[largest] for name in names),
        names,
        lambda low, high: True if low >= ratio else False if high < ratio else None,
        gap_at(runs, params, tables, "batch_size", largest, names),
        (params["min_gap_pp"], math.inf),
    )
    evidence = {"batch_size": largest, "min_lr_ratio": ratio, "min_gap_pp": params["min_gap_pp"], **found}
    return verdict_of(findings, evidence)


@check
def competitive_then_beaten_at_largest_batch(runs: pd.DataFrame, params: dict) -> Verdict:
    """Each of `candidates` is within `max_gap_pp` of `reference` below the largest batch size, and beaten there.

    Beaten: `reference` leads by at least `min_win_pp`.
    """
    if early := preflight(runs, params):
        return early
    reference = params["reference"]
    tables = {name: best_per(runs, params, name, "batch_size") for name in (reference, *params["candidates"])}
    batch_sizes = common_values(tables)
    if len(batch_sizes) < 2:
        return INCONCLUSIVE, {
            "batch_sizes": batch_sizes,
            "reason": f"{len(batch_sizes)} batch size(s) with every model; the claim compares ordinary and the largest",
        }
    largest = batch_sizes[-1]
    findings, evidence = [], {"max_gap_pp": params["max_gap_pp"], "min_win_pp": params["min_win_pp"], "batch_sizes": {}}
    for batch_size in batch_sizes:
        ref = tables[reference].loc[batch_size]
        evidence["batch_sizes"][str(batch_size)] = {reference: at_best(ref)}
        for name in params["candidates"]:
            cand = tables[name].loc[batch_size]
            gap = gap_at(runs, params, tables, "batch_size", batch_size, (reference, name))
            evidence["batch_sizes"][str(batch_size)][name] = {**at_best(cand), "gap_pp": gap["mean"], "gap": gap}
            if batch_size == largest:
                band, text = (params["min_win_pp"], math.inf), f"batch {batch_size}: {reference} over {name}"
            else:
                band, text = (-math.inf, params["max_gap_pp"]), f"batch {batch_size}: {name} behind {reference} by"
            holds = within(gap, *band)
            findings.append(Finding(holds, finding_text(text, gap, holds, *band, gap["seconds_per_seed"])))
    return verdict_of(findings, evidence)


@check
def gap_grows_with_batch(runs: pd.DataFrame, params: dict) -> Verdict:
    """`reference`'s lead over `candidate` at the largest batch size (>= `large_batch_min`) exceeds its lead at the
    smallest by >= `min_growth_pp`.

    Paired by seed: per seed, the lead at the largest batch size minus the lead at the smallest.
    Decided only where all four optima are interior to their lr grids (an edge only bounds an accuracy).
    """
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    batch_sizes = common_values(tables)
    if len(batch_sizes) < 2 or batch_sizes[-1] < params["large_batch_min"]:
        reason = (
            f"needs two batch sizes with both models, the largest >= {params['large_batch_min']} (have {batch_sizes})"
        )
        return INCONCLUSIVE, {"batch_sizes": batch_sizes, "reason": reason}
    small, large = batch_sizes[0], batch_sizes[-1]

    sweeps = {(name, b): at_setting(runs, params, name, {"batch_size": b}) for name in names for b in (small, large)}
    held = {key: held_out(sweep) for key, sweep in sweeps.items()}
    chosen_apart = all(choice is not None for choice in held.values())

    def lead(batch_size: int) -> pd.Series:
        """Per seed, the reference's score minus the candidate's, each at its best lr: with two or more seeds the
        lr the other seeds pick (`held_out`), so no seed's number chose its own lr."""
        scores = [
            held[(name, batch_size)][0]
            if chosen_apart
            else seed_scores(runs, params, name, {"batch_size": batch_size}, tables[name].loc[batch_size, "best_lr"])
            for name in names
        ]
        return (scores[0] - scores[1]).dropna()

    growth = growth_estimate(runs, params, tables, names, (small, large), lead, chosen_apart)
    evidence = {
        "batch_sizes": [small, large],
        "min_growth_pp": params["min_growth_pp"],
        "lead_pp": {str(small): float(lead(small).mean()), str(large): float(lead(large).mean())},
        "growth": growth,
        **{f"{name}@{b}": at_best(tables[name].loc[b]) for name in names for b in (small, large)},
    }
    text = f"{names[0]}'s lead over {names[1]} grows from batch {small} to {large} by"
    edges = [f"{name} at batch {b}" for name in names for b in (small, large) if not interior(tables[name].loc[b])]
    if edges:
        return verdict_of(
            [
                Finding(
                    None,
                    f"{text} {growth['mean']:+.1f} pp, not decidable: best lr at the grid's edge for "
                    f"{', '.join(edges)}",
                )
            ],
            evidence,
        )
    holds = within(growth, low=params["min_growth_pp"])
    return verdict_of([Finding(holds, finding_text(text, growth, holds, low=params["min_growth_pp"]))], evidence)


def growth_estimate(
    runs: pd.DataFrame, params: dict, tables: dict, names: tuple, batch_sizes: tuple, lead, chosen_apart: bool
) -> dict:
    """The lead at the largest batch size minus the lead at the smallest, per paired seed, pooled with a floor.

    A difference of two gaps: its floor is sqrt(2) gap floors (at the wider of the two settings'), plus a test
    subset's term of each gap where the runs read one; with one seed (`chosen_apart` False) simultaneous over the
    lr pairs the four optima were picked from.
    """
    small, large = batch_sizes
    per_seed = (lead(large) - lead(small)).dropna()
    noise, subset_term, picked, floors = NoiseModel.from_params(params), 0.0, 1, []
    for batch_size in batch_sizes:
        both = pd.concat([select(runs, params, name) for name in names]).query("batch_size == @batch_size")
        floors.append(noise.floor_for(both))
        accuracies = tuple(float(tables[name].loc[batch_size, "test_acc_mean"]) for name in names)
        subset_term += subset_variance_pp(accuracies, subset_images(both))
        for name in names:
            picked *= 1 if chosen_apart else int(tables[name].loc[batch_size, "lrs_near"])
    floor = max(floors, key=lambda f: f.gap_sd_pp)
    estimate = pooled(
        per_seed.to_numpy(),
        2**0.5 * floor.gap_sd_pp,
        floor.gap_df,
        subset_term,
        "paired seeds",
        floor.source,
        picked,
        True,
    )
    return {
        **estimate,
        "method": estimate["method"] + ("; each seed's lrs chosen on the other seeds" if chosen_apart else ""),
    }
