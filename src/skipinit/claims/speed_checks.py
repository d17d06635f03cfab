"""Checks on training speed (Ioffe & Szegedy's "batch norm converges faster"), read from curves.parquet.

The judge hands a run claim the curves of its runs as `params["curves"]` (empty without
curves.parquet). Speed is the number of steps a model, at its best lr, needs to reach a target
test accuracy on its seed-averaged curve; the target is `target_fraction` of the lower of the two
models' final accuracies, so that both reach it. Steps are read at the curve's evaluations (once
per epoch), so a speedup is known to that resolution only: when both reach the target at the first
evaluation the curves cannot tell them apart.
"""

from __future__ import annotations

import math

import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import at_best, best_per, common_values, preflight, select


def mean_curve(
    runs: pd.DataFrame, curves: pd.DataFrame, params: dict, name: str, batch_size: int, lr: float
) -> pd.Series:
    """Test accuracy per evaluated step of model `name` at `batch_size` and `lr`, averaged over seeds."""
    rows = select(runs, params, name)
    cells = rows[(rows["batch_size"] == batch_size) & (rows["lr"] == lr)]["cell_id"]
    points = curves[curves["cell_id"].isin(set(cells))].dropna(subset=["test_acc"])
    return points.groupby("step")["test_acc"].mean().sort_index()


def steps_to(curve: pd.Series, target: float) -> float:
    """The first evaluated step at which `curve` reaches `target` (inf if it never does)."""
    reached = curve[curve >= target]
    return float(reached.index[0]) if len(reached) else math.inf


@check
def convergence_speedup(runs: pd.DataFrame, params: dict) -> Verdict:
    """At the `at` batch size (`largest`, which must be >= `large_batch_min`, or `smallest`, <= `small_batch_max`),
    the speedup of `reference` over `candidate` (candidate's steps to the target / reference's) lies in
    [`min_speedup`, `max_speedup`].
    """
    if early := preflight(runs, params):
        return early
    curves = params.get("curves")
    if curves is None or curves.empty:
        return NOT_RUN, {"reason": "no curves.parquet (or no curve points) for these runs"}
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    batch_sizes = common_values(tables)
    if not batch_sizes:
        return INCONCLUSIVE, {"reason": f"no batch size with both {names[0]} and {names[1]} runs"}
    if params["at"] == "largest":
        batch_size = batch_sizes[-1]
        if batch_size < params["large_batch_min"]:
            return INCONCLUSIVE, {"reason": f"no batch size >= {params['large_batch_min']} (largest: {batch_size})"}
    else:
        batch_size = batch_sizes[0]
        if batch_size > params["small_batch_max"]:
            return INCONCLUSIVE, {"reason": f"no batch size <= {params['small_batch_max']} (smallest: {batch_size})"}
    best = {name: tables[name].loc[batch_size] for name in names}
    target = params["target_fraction"] * min(row["test_acc_mean"] for row in best.values())
    mean_curves = {name: mean_curve(runs, curves, params, name, batch_size, best[name]["best_lr"]) for name in names}
    evaluations = min(len(curve) for curve in mean_curves.values())
    steps = {name: steps_to(curve, target) for name, curve in mean_curves.items()}
    bounds = [params.get("min_speedup", 0.0), params.get("max_speedup", math.inf)]
    evidence = {
        "batch_size": batch_size,
        "target_test_acc": target,
        "speedup_bounds": bounds,
        "evaluations": evaluations,
        **{name: {**at_best(best[name]), "steps_to_target": steps[name]} for name in names},
    }
    if evaluations < params["min_evaluations"]:
        reason = f"the curves hold {evaluations} evaluation(s), fewer than the {params['min_evaluations']} a speed comparison needs"
        return INCONCLUSIVE, {**evidence, "reason": reason}
    head = f"batch {batch_size}: to {target:.1f}% {names[0]} needs {steps[names[0]]:g} steps, {names[1]} {steps[names[1]]:g}"
    if any(math.isinf(step) for step in steps.values()):
        return verdict_of([Finding(None, f"{head}: a mean curve never reaches the target")], evidence)
    first = {name: float(curve.index[0]) for name, curve in mean_curves.items()}
    if all(steps[name] == first[name] for name in names):
        return verdict_of(
            [Finding(None, f"{head}: both reach it at their first evaluation, too coarse to compare")], evidence
        )
    speedup = steps[names[1]] / steps[names[0]]
    evidence["speedup"] = speedup
    holds = bounds[0] <= speedup <= bounds[1]
    return verdict_of(
        [Finding(holds, f"{head} (speedup {speedup:.2f}, bounds [{bounds[0]:g}, {bounds[1]:g}])")], evidence
    )
