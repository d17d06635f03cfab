"""Checks on training results (Tables 1-3, Figures 3-4), read from runs.parquet.

Every accuracy comparison pairs the two models by seed (`stats.paired_gap`) and is decided by
the gap's 95% interval: inside the claim's bound, outside it, or straddling it (undecided).
"""

from __future__ import annotations

import math

import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import (
    at_best,
    batch_comparison,
    best_per,
    common_values,
    gap_at,
    interior,
    preflight,
    seed_scores,
    select,
)
from skipinit.claims.stats import gap_finding_text, paired_gap, within
from skipinit.report.tables import best_lr_summary


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
    findings, evidence = [], {
        "depth": depth,
        "chance_acc": chance,
        "fails_below": fail_below,
        "trains_from": train_from,
    }
    expectations = [(name, False) for name in params["must_fail"]] + [(name, True) for name in params["must_train"]]
    for name, should_train in expectations:
        rows = select(deepest, params, name)
        if rows.empty:
            findings.append(Finding(None, f"no {name} run at depth {depth}"))
            continue
        best = best_lr_summary(rows, ["depth"]).iloc[0]
        evidence[name] = {**at_best(best), "runs": len(rows), "diverged_runs": int(rows["diverged"].sum())}
        accuracy, lrs = best["test_acc_mean"], int(best["lrs_tried"])
        trains, fails = accuracy >= train_from, accuracy < fail_below
        outcome = "trains" if trains else "fails" if fails else "neither trains nor fails"
        diverged = f"{evidence[name]['diverged_runs']}/{len(rows)} runs diverged"
        text = f"{name} {outcome} at depth {depth} (best {accuracy:.1f}% over {lrs} lr(s), {diverged})"
        failed_to_train = not trains if should_train else fails  # the observation another lr might overturn
        if failed_to_train and lrs < params["min_lrs"]:
            findings.append(Finding(None, f"{text}, but only {lrs} learning rate(s) tried (need {params['min_lrs']})"))
        else:
            findings.append(Finding(trains if should_train else fails, text))
    return verdict_of(findings, evidence)


@check
def matches_reference_at_every_depth(runs: pd.DataFrame, params: dict) -> Verdict:
    """At every depth, `candidate` at its best lr is at most `max_gap_pp` below `reference` at its best lr."""
    if early := preflight(runs, params):
        return early
    reference, candidate = params["reference"], params["candidate"]
    tables = {name: best_per(runs, params, name, "depth") for name in (reference, candidate)}
    depths = common_values(tables)
    if not depths:
        return INCONCLUSIVE, {"reason": f"no depth with both {reference} and {candidate} runs"}
    findings, evidence = [], {"max_gap_pp": params["max_gap_pp"], "depths": {}}
    for depth in depths:
        ref, cand = tables[reference].loc[depth], tables[candidate].loc[depth]
        gap = gap_at(runs, params, tables, "depth", depth, (reference, candidate))
        evidence["depths"][str(depth)] = {
            reference: at_best(ref),
            candidate: at_best(cand),
            "gap_pp": gap["mean"],
            "gap": gap,
        }
        holds = within(gap, high=params["max_gap_pp"])
        text = (
            f"depth {depth}: {candidate} {cand['test_acc_mean']:.1f}% vs {reference} {ref['test_acc_mean']:.1f}%, gap"
        )
        findings.append(Finding(holds, gap_finding_text(text, gap, holds)))
    evidence[f"{candidate}_test_acc_at_largest_depth"] = tables[candidate].loc[depths[-1], "test_acc_mean"]
    return verdict_of(findings, evidence)


@check
def trains_without_regularizer(runs: pd.DataFrame, params: dict) -> Verdict:
    """`without` (a model minus one regularizer) trains, and scores `min_drop_pp`..`max_drop_pp` below `with`.

    Compared at every batch size both were run at. `min_drop_pp` below 0 allows for seed noise.
    """
    if early := preflight(runs, params):
        return early
    tables = {name: best_per(runs, params, name, "batch_size") for name in (params["with"], params["without"])}
    batch_sizes = common_values(tables)
    if not batch_sizes:
        return INCONCLUSIVE, {"reason": f"no batch size with both {params['with']} and {params['without']} runs"}
    train_from = params["chance_acc"] + params["train_margin_pp"]
    findings, evidence = [], {
        "trains_from": train_from,
        "drop_range_pp": [params["min_drop_pp"], params["max_drop_pp"]],
        "batch_sizes": {},
    }
    for batch_size in batch_sizes:
        kept, removed = tables[params["with"]].loc[batch_size], tables[params["without"]].loc[batch_size]
        drop = gap_at(runs, params, tables, "batch_size", batch_size, (params["with"], params["without"]))
        evidence["batch_sizes"][str(batch_size)] = {
            params["with"]: at_best(kept),
            params["without"]: at_best(removed),
            "drop_pp": drop["mean"],
            "drop": drop,
        }
        trains = removed["test_acc_mean"] >= train_from
        in_range = within(drop, params["min_drop_pp"], params["max_drop_pp"])
        text = (
            f"batch {batch_size}: {params['without']} {removed['test_acc_mean']:.1f}% "
            f"({'trains' if trains else 'does not train'}), below {params['with']} by"
        )
        findings.append(
            Finding(in_range if trains else False, gap_finding_text(text, drop, in_range if trains else False))
        )
    return verdict_of(findings, evidence)


@check
def small_batch_parity(runs: pd.DataFrame, params: dict) -> Verdict:
    """At batch sizes <= `small_batch_max`: optimal lrs within a factor `max_lr_ratio`, accuracies within `max_gap_pp`."""
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    small = [b for b in common_values(tables) if b <= params["small_batch_max"]]
    if not small:
        reason = f"no batch size <= {params['small_batch_max']} with both {names[0]} and {names[1]} runs"
        return INCONCLUSIVE, {"reason": reason}
    bound = params["max_lr_ratio"]

    def similar_lrs(low: float, high: float) -> bool | None:
        return True if 1 / bound <= low and high <= bound else False if high < 1 / bound or low > bound else None

    findings, evidence = [], {"max_lr_ratio": bound, "max_gap_pp": params["max_gap_pp"], "batch_sizes": {}}
    for batch_size in small:
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
def regularized_gap_shrinks(runs: pd.DataFrame, params: dict) -> Verdict:
    """At the smallest batch size, `reference` leads `regularized` by >= `min_shrink_pp` less than it leads `plain`.

    The shrink is `regularized` - `plain`, paired by seed (the reference's score cancels).
    """
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["plain"], params["regularized"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    batch_sizes = common_values(tables)
    if not batch_sizes:
        return INCONCLUSIVE, {"reason": f"no batch size with {', '.join(names)} runs"}
    batch_size = batch_sizes[0]
    plain_gap = train_test_gap(runs, params, tables, names[1], batch_size)
    if early := without_overfitting(plain_gap, params, names[1], batch_size):
        return early
    reference, plain, regularized = (tables[name].loc[batch_size] for name in names)
    lead_plain = reference["test_acc_mean"] - plain["test_acc_mean"]
    lead_regularized = reference["test_acc_mean"] - regularized["test_acc_mean"]
    shrink = gap_at(runs, params, tables, "batch_size", batch_size, (names[2], names[1]))
    evidence = {
        "batch_size": batch_size,
        **{name: at_best(row) for name, row in zip(names, (reference, plain, regularized))},
        "lead_over_plain_pp": lead_plain,
        "lead_over_regularized_pp": lead_regularized,
        "min_shrink_pp": params["min_shrink_pp"],
        "shrink": shrink,
    }
    holds = within(shrink, low=params["min_shrink_pp"])
    leads = f"{names[1]} by {lead_plain:+.1f} pp and {names[2]} by {lead_regularized:+.1f} pp"
    text = f"batch {batch_size}: {names[0]} leads {leads}; the lead shrinks by"
    return verdict_of([Finding(holds, gap_finding_text(text, shrink, holds))], evidence)


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
                holds, text = within(gap, low=params["min_win_pp"]), f"batch {batch_size}: {reference} over {name}"
            else:
                holds, text = (
                    within(gap, high=params["max_gap_pp"]),
                    f"batch {batch_size}: {name} behind {reference} by",
                )
            findings.append(Finding(holds, gap_finding_text(text, gap, holds)))
    return verdict_of(findings, evidence)


@check
def regularization_edge_at_small_batch(runs: pd.DataFrame, params: dict) -> Verdict:
    """At the smallest batch size (<= `small_batch_max`), `reference` beats `candidate` by >= `min_edge_pp`.

    Paired by seed. The evidence adds each model's train/test gap (final train accuracy minus test
    accuracy at its best lr): a regularizer narrows it, so a reference edge with the narrower gap reads
    as regularization rather than better optimization.
    """
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    batch_sizes = common_values(tables)
    if not batch_sizes or batch_sizes[0] > params["small_batch_max"]:
        reason = f"no batch size <= {params['small_batch_max']} with both {names[0]} and {names[1]} runs"
        return INCONCLUSIVE, {"reason": reason}
    batch_size = batch_sizes[0]
    train_test = {name: train_test_gap(runs, params, tables, name, batch_size) for name in names}
    if early := without_overfitting(train_test[names[1]], params, names[1], batch_size):
        return early
    edge = gap_at(runs, params, tables, "batch_size", batch_size, names)
    evidence = {"batch_size": batch_size, "min_edge_pp": params["min_edge_pp"], "edge": edge}
    for name in names:
        evidence[name] = {**at_best(tables[name].loc[batch_size]), "train_test_gap_pp": train_test[name]}
    gaps = ", ".join(f"{name} {evidence[name]['train_test_gap_pp']:.1f} pp" for name in names)
    text = f"batch {batch_size}: {names[0]} over {names[1]}"
    holds = within(edge, low=params["min_edge_pp"])
    narrower = train_test[names[0]] < train_test[names[1]]
    if holds and not narrower:
        return verdict_of(
            [Finding(False, f"{gap_finding_text(text, edge, holds)}, but with a train/test gap no narrower ({gaps}): "
                            "better fitting, not regularization")],
            evidence,
        )
    return verdict_of([Finding(holds, f"{gap_finding_text(text, edge, holds)} (train/test gaps: {gaps})")], evidence)


def train_test_gap(runs: pd.DataFrame, params: dict, tables: dict, name: str, batch_size: int) -> float:
    """Model `name`'s final train accuracy minus its test accuracy at its best lr, averaged over seeds (pp)."""
    rows = select(runs, params, name)
    rows = rows[(rows["batch_size"] == batch_size) & (rows["lr"] == tables[name].loc[batch_size, "best_lr"])]
    return float((rows["train_acc"] - rows["test_acc"]).mean())


def without_overfitting(gap: float, params: dict, name: str, batch_size: int) -> Verdict | None:
    """Inconclusive where `name`'s train/test `gap` is under `min_overfit_pp`: no regularizer can show.

    A regularizer narrows the gap between fitting the training set and generalizing; a net that
    still underfits at the profile's budget has no such gap to narrow.
    """
    if gap >= params["min_overfit_pp"]:
        return None
    reason = (
        f"batch {batch_size}: {name} does not overfit at this budget (train/test gap {gap:.1f} pp, under the "
        f"{params['min_overfit_pp']:g} pp a regularizer needs to show)"
    )
    return INCONCLUSIVE, {"batch_size": batch_size, "train_test_gap_pp": gap, "reason": reason}


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

    def lead(batch_size: int) -> pd.Series:
        scores = [
            seed_scores(runs, params, name, {"batch_size": batch_size}, tables[name].loc[batch_size, "best_lr"])
            for name in names
        ]
        return (scores[0] - scores[1]).dropna()

    growth = paired_gap(lead(large), lead(small))
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
                    f"{text} {growth['mean']:+.1f} pp, not decidable: best lr at the grid's edge for {', '.join(edges)}",
                )
            ],
            evidence,
        )
    holds = within(growth, low=params["min_growth_pp"])
    return verdict_of([Finding(holds, gap_finding_text(text, growth, holds))], evidence)
