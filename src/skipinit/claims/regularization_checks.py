"""Checks on the regularization study (Table 2; Ioffe & Szegedy's "batch norm regularizes").

A regularizer shows only where a net overfits: the checks that read a regularizer's effect are
inconclusive while the candidate's train/test gap stays under `min_overfit_pp` (`without_overfitting`).
Accuracy gaps pair the models by seed and are decided by their 95% interval (`stats`).
"""

from __future__ import annotations

import pandas as pd

from skipinit.claims.floors import NoiseModel
from skipinit.claims.registry import INCONCLUSIVE, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import (
    accuracy_at,
    at_best,
    at_setting,
    best_per,
    common_values,
    gap_at,
    preflight,
    select,
    subset_images,
)
from skipinit.claims.stats import binomial_variance_pp, describe, finding_text, pooled, within
from skipinit.engine.schedule import lr_factor


def with_and_without(runs: pd.DataFrame, params: dict) -> dict | Verdict:
    """`with` and `without` at their best lr per batch size, and the batch sizes both ran; or why there are none."""
    if early := preflight(runs, params):
        return early
    tables = {name: best_per(runs, params, name, "batch_size") for name in (params["with"], params["without"])}
    if not (batch_sizes := common_values(tables)):
        return INCONCLUSIVE, {"reason": f"no batch size with both {params['with']} and {params['without']} runs"}
    return {"tables": tables, "batch_sizes": batch_sizes}


@check
def trains_without_regularizer(runs: pd.DataFrame, params: dict) -> Verdict:
    """`without` (a model minus one regularizer) trains, and scores at most `max_drop_pp` below `with` (one-sided:
    doing better without it is no harm).

    Compared at every batch size both were run at.
    """
    if isinstance(paired := with_and_without(runs, params), tuple):
        return paired
    tables, batch_sizes = paired["tables"], paired["batch_sizes"]
    train_from = params["chance_acc"] + params["train_margin_pp"]
    findings, evidence = [], {"trains_from": train_from, "max_drop_pp": params["max_drop_pp"], "batch_sizes": {}}
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
        findings.append(
            Finding(
                trains,
                finding_text(
                    f"batch {batch_size}: {params['without']} trains (needs >= {train_from:g}%):",
                    removed_accuracy,
                    trains,
                    low=train_from,
                    unit="%",
                    model=params["without"],
                ),
            )
        )
        at_most = within(drop, high=params["max_drop_pp"])
        text = f"batch {batch_size}: {params['without']} below {params['with']} by (needs <= {params['max_drop_pp']:g})"
        findings.append(
            Finding(
                at_most,
                finding_text(
                    text, drop, at_most, high=params["max_drop_pp"], seconds_per_seed=drop["seconds_per_seed"]
                ),
            )
        )
    return verdict_of(findings, evidence)


@check
def regularizer_helps(runs: pd.DataFrame, params: dict) -> Verdict:
    """`with` (a model with weight decay) scores more than `min_gain_pp` above `without`, judged only where the
    weight decay acts as in the paper: its strength, weight_decay x the summed lr of the run / (1 - momentum) (how
    many e-folds the decay alone would shrink the weights by), reaches `min_decay_strength` at every batch size.
    """
    if isinstance(paired := with_and_without(runs, params), tuple):
        return paired
    tables, batch_sizes = paired["tables"], paired["batch_sizes"]
    findings, evidence = [], {"min_gain_pp": params["min_gain_pp"], "batch_sizes": {}}
    for batch_size in batch_sizes:
        kept = tables[params["with"]].loc[batch_size]
        rows = at_setting(runs, params, params["with"], {"batch_size": batch_size}, kept["best_lr"])
        strength = decay_strength(rows)
        gain = gap_at(runs, params, tables, "batch_size", batch_size, (params["with"], params["without"]))
        evidence["batch_sizes"][str(batch_size)] = {"decay_strength": strength, "gain": gain}
        if strength < params["min_decay_strength"]:
            findings.append(
                Finding(
                    None,
                    f"batch {batch_size}: outside the paper's regime at this budget: the weight decay's strength is "
                    f"{strength:.2g} e-folds (weight_decay x summed lr / (1 - momentum)), under the "
                    f"{params['min_decay_strength']:g} where it acts (the paper's 200 epochs give about 100); "
                    f"{params['min_decay_strength'] / strength:.0f}x the steps x lr would reach it",
                )
            )
            continue
        helps = within(gain, low=params["min_gain_pp"])
        text = f"batch {batch_size} (decay strength {strength:.3g}): {params['with']} over {params['without']}"
        findings.append(
            Finding(
                helps,
                finding_text(text, gain, helps, low=params["min_gain_pp"], seconds_per_seed=gain["seconds_per_seed"]),
            )
        )
    return verdict_of(findings, evidence)


def decay_strength(rows: pd.DataFrame) -> float:
    """weight_decay x sum over the run's steps of its lr / (1 - momentum): the e-folds by which L2 alone shrinks the
    weights over the run (heavy-ball momentum multiplies each step's decay by 1 / (1 - momentum))."""
    row = rows.iloc[0]
    steps = int(rows["steps"].max())
    summed = float(row["lr"]) * sum(lr_factor(row["schedule"], step, steps) for step in range(steps))
    return float(row["weight_decay"]) * summed / (1.0 - float(row["momentum"]))


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
    plain_gap = train_test_gap(runs, params, tables, (names[1],), batch_size)
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
    train_test = {name: train_test_gap(runs, params, tables, (name,), batch_size) for name in names}
    if early := without_overfitting(train_test[names[1]], params, names[1], batch_size):
        return early
    edge = gap_at(runs, params, tables, "batch_size", batch_size, names)
    # Regularization narrows the reference's train/test gap below the candidate's: the difference must be below 0.
    wider = train_test_gap(runs, params, tables, names, batch_size)
    evidence = {"batch_size": batch_size, "min_edge_pp": params["min_edge_pp"], "edge": edge, "gap_difference": wider}
    for name in names:
        evidence[name] = {**at_best(tables[name].loc[batch_size]), "train_test_gap": train_test[name]}
    gaps = ", ".join(f"{name} {train_test[name]['mean']:.1f} pp" for name in names)
    text = f"batch {batch_size}: {names[0]} over {names[1]}"
    holds = within(edge, low=params["min_edge_pp"])
    finding = finding_text(text, edge, holds, low=params["min_edge_pp"], seconds_per_seed=edge["seconds_per_seed"])
    narrower = within(wider, high=0.0, open_high=True)
    difference = finding_text(f"train/test gaps {gaps}; {names[0]}'s minus {names[1]}'s", wider, narrower, high=0.0)
    reading = {True: "narrower: regularization", False: "not narrower: better fitting, not regularization"}
    return verdict_of(
        [Finding(holds, finding), Finding(narrower, f"{difference} ({reading.get(narrower, 'undecided')})")], evidence
    )


def train_test_gap(runs: pd.DataFrame, params: dict, tables: dict, names: tuple, batch_size: int) -> dict:
    """The train/test gap (final train accuracy minus test accuracy, pp, at the best lr) of `names[0]`, or
    `names[0]`'s minus `names[1]`'s paired by seed, as an estimate with its interval (`stats.pooled`).

    Its seed spread is not measured by any floor: the setting's paired-gap floor widened by the claims file's
    `unmeasured_widening` stands in for it (the stated rule for a spread not measured). The train accuracy is
    the net's on the images it was trained on, so nothing about it is sampled; the test accuracy adds a test
    subset's term only where the runs read a subset.
    """
    per_seed, extra, rows = [], 0.0, None
    for name in names:
        rows = select(runs, params, name)
        rows = rows[(rows["batch_size"] == batch_size) & (rows["lr"] == tables[name].loc[batch_size, "best_lr"])]
        per_seed.append((rows["train_acc"] - rows["test_acc"]).groupby(rows["seed"]).mean())
        extra += binomial_variance_pp(float(rows["test_acc"].mean()), subset_images(rows))
    values = per_seed[0] if len(per_seed) == 1 else (per_seed[0] - per_seed[1]).dropna()
    noise = NoiseModel.from_params(params)
    floor = noise.floor_for(rows)
    source = f"{floor.source}; widened x{noise.widening:g}: no floor measures a train/test gap's spread"
    what = "seeds" if len(names) == 1 else "paired seeds"
    return pooled(values.to_numpy(float), floor.gap_sd_pp * noise.widening, floor.gap_df, extra, what, source)


def without_overfitting(gap: dict, params: dict, name: str, batch_size: int) -> Verdict | None:
    """Inconclusive unless `name`'s train/test `gap` (an estimate) surely reaches `min_overfit_pp`: a regularizer
    narrows the gap between fitting the training set and generalizing, and a net that may still underfit at the
    profile's budget has no such gap to narrow."""
    overfits = within(gap, low=params["min_overfit_pp"])
    if overfits:
        return None
    text = f"batch {batch_size}: {name}'s train/test gap"
    if overfits is None:
        reason = finding_text(text, gap, None, low=params["min_overfit_pp"], model=name)
        reason += f" (a regularizer needs {params['min_overfit_pp']:g} pp to show)"
    else:
        reason = (
            f"{text} {describe(gap)}: it does not overfit at this budget (under the {params['min_overfit_pp']:g} pp "
            "a regularizer needs to show)"
        )
    return INCONCLUSIVE, {"batch_size": batch_size, "train_test_gap": gap, "reason": reason}
