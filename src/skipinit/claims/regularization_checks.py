"""Checks on the regularization study (Table 2; Ioffe & Szegedy's "batch norm regularizes").

A regularizer shows only where a net overfits: the checks that read a regularizer's effect are
inconclusive while the candidate's train/test gap stays under `min_overfit_pp` (`without_overfitting`).
Accuracy gaps pair the models by seed and are decided by their 95% interval (`stats`).
"""

from __future__ import annotations

import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import accuracy_at, at_best, best_per, common_values, gap_at, preflight, select
from skipinit.claims.stats import describe, finding_text, within


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
    findings, evidence = (
        [],
        {
            "trains_from": train_from,
            "drop_range_pp": [params["min_drop_pp"], params["max_drop_pp"]],
            "batch_sizes": {},
        },
    )
    for batch_size in batch_sizes:
        kept, removed = tables[params["with"]].loc[batch_size], tables[params["without"]].loc[batch_size]
        drop = gap_at(runs, params, tables, "batch_size", batch_size, (params["with"], params["without"]))
        evidence["batch_sizes"][str(batch_size)] = {
            params["with"]: at_best(kept),
            params["without"]: at_best(removed),
            "drop_pp": drop["mean"],
            "drop": drop,
        }
        removed_rows = select(runs, params, params["without"])
        removed_accuracy = accuracy_at(
            removed_rows[removed_rows["batch_size"] == batch_size], params, removed["best_lr"]
        )
        evidence["batch_sizes"][str(batch_size)]["trains"] = removed_accuracy
        trains = within(removed_accuracy, low=train_from)
        band = (params["min_drop_pp"], params["max_drop_pp"])
        in_range = within(drop, *band)
        text = (
            f"batch {batch_size}: {params['without']} {describe(removed_accuracy, '%')} "
            f"({'trains' if trains else 'does not train' if trains is False else 'may not train'}), below "
            f"{params['with']} by"
        )
        holds = False if trains is False else None if trains is None and in_range is not False else in_range
        findings.append(Finding(holds, finding_text(text, drop, holds, *band, drop["seconds_per_seed"])))
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
    finding = finding_text(
        text, shrink, holds, low=params["min_shrink_pp"], seconds_per_seed=shrink["seconds_per_seed"]
    )
    return verdict_of([Finding(holds, finding)], evidence)


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
    finding = finding_text(text, edge, holds, low=params["min_edge_pp"], seconds_per_seed=edge["seconds_per_seed"])
    narrower = train_test[names[0]] < train_test[names[1]]
    if holds and not narrower:
        return verdict_of(
            [
                Finding(
                    False,
                    f"{finding}, but with a train/test gap no narrower ({gaps}): better fitting, not regularization",
                )
            ],
            evidence,
        )
    return verdict_of([Finding(holds, f"{finding} (train/test gaps: {gaps})")], evidence)


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
