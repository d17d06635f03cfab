"""Checks on training speed (Ioffe & Szegedy's "batch norm converges faster"), read from curves.parquet.

The judge hands a run claim the curves of its runs as `params["curves"]` (empty without
curves.parquet). Speed is the number of steps a model, at its best lr, needs to reach a target
test accuracy on its seed-averaged curve; the target is `target_fraction` of the lower of the two
models' final accuracies, so that both reach it. Steps are read at the curve's evaluations (once
per epoch), so a speedup is known to that resolution only: when both reach the target at the first
evaluation the curves cannot tell them apart.

The speedup's interval is over paired seeds: per seed, the candidate's steps over the reference's on
that seed's own curves, and a t-interval of the log speedups (a ratio is symmetric in logs), widened
by the curves' resolution: a step count is known only to within one evaluation interval, which no
number of seeds averages away (so identical quantized counts never give a zero-width interval). One
seed gives no interval (no noise model covers steps to a target), so a single-seed speed claim stays
inconclusive and says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import at_best, best_per, common_values, preflight, select
from skipinit.claims.stats import over_seeds, record_need, seeds_to_decide, within


def seed_curves(runs: pd.DataFrame, curves: pd.DataFrame, params: dict, name: str, batch_size: int, lr: float) -> dict:
    """Test accuracy per evaluated step of model `name` at `batch_size` and `lr`, one curve per seed."""
    rows = select(runs, params, name)
    seed_of = rows[(rows["batch_size"] == batch_size) & (rows["lr"] == lr)].set_index("cell_id")["seed"]
    points = curves[curves["cell_id"].isin(set(seed_of.index))].dropna(subset=["test_acc"])
    points = points.assign(run_seed=points["cell_id"].map(seed_of))
    return {
        int(seed): group.groupby("step")["test_acc"].mean().sort_index() for seed, group in points.groupby("run_seed")
    }


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
    per_seed = {name: seed_curves(runs, curves, params, name, batch_size, best[name]["best_lr"]) for name in names}
    seeds = sorted(set(per_seed[names[0]]) & set(per_seed[names[1]]))
    evaluations = min((len(curve) for name in names for curve in per_seed[name].values()), default=0)
    steps = {name: {seed: steps_to(per_seed[name][seed], target) for seed in seeds} for name in names}
    bounds = [params.get("min_speedup", 0.0), params.get("max_speedup", math.inf)]
    evidence = {
        "batch_size": batch_size,
        "target_test_acc": target,
        "speedup_bounds": bounds,
        "evaluations": evaluations,
        **{
            name: {**at_best(best[name]), "steps_to_target_by_seed": {str(k): v for k, v in steps[name].items()}}
            for name in names
        },
    }
    if evaluations < params["min_evaluations"]:
        reason = (
            f"the curves hold {evaluations} evaluation(s), fewer than the {params['min_evaluations']} a speed "
            "comparison needs"
        )
        return INCONCLUSIVE, {**evidence, "reason": reason}
    head = (
        f"batch {batch_size}: to {target:.1f}% {names[0]} needs {median_steps(steps[names[0]])} steps, {names[1]} "
        f"{median_steps(steps[names[1]])}"
    )
    if any(math.isinf(step) for name in names for step in steps[name].values()):
        return verdict_of([Finding(None, f"{head}: a seed's curve never reaches the target")], evidence)
    firsts = [all(steps[name][seed] == float(per_seed[name][seed].index[0]) for name in names) for seed in seeds]
    if all(firsts):
        return verdict_of(
            [Finding(None, f"{head}: both reach it at their first evaluation, too coarse to compare")], evidence
        )
    ratios = [steps[names[1]][seed] / steps[names[0]][seed] for seed in seeds]
    if len(ratios) < 2:
        record_need(2, 1)  # the first interval; the seeds that decide it follow from its spread
        reason = (
            f"{head} (speedup {ratios[0]:.2f} on one seed): one seed gives the speedup no interval; run 2 or more seeds"
        )
        return verdict_of([Finding(None, reason)], {**evidence, "speedup": ratios[0]})
    # Each count is read at an evaluation: the true step lies up to one evaluation interval earlier, so the
    # log speedup (candidate over reference) may be lower by the candidate's share, higher by the reference's.
    share = {name: np.mean([earlier_by(per_seed[name][seed], steps[name][seed]) for seed in seeds]) for name in names}
    logs = over_seeds(np.log(ratios), "paired seeds, on log speedup", bracket=(share[names[1]], share[names[0]]))
    speedup = {
        **logs,
        "mean": math.exp(logs["mean"]),
        "ci": [math.exp(v) for v in logs["ci"]],
        "sd_log": logs["sd"],
    }
    evidence["speedup"] = speedup
    log_bounds = [math.log(b) if b > 0 else -math.inf for b in bounds]
    holds = within(logs, *log_bounds)
    low, high = speedup["ci"]
    text = (
        f"{head} (speedup {speedup['mean']:.2f}, {logs['ci_level']} {low:.2f}..{high:.2f} over {len(ratios)} paired "
        f"seeds; bounds [{bounds[0]:g}, {bounds[1]:g}])"
    )
    if holds is None:
        bounded = all(math.isfinite(value) for value in share.values())  # else no seed count narrows the bracket
        decide = seeds_to_decide(logs, *log_bounds) if bounded else None
        record_need(decide, len(ratios))
        text += (
            ": its bounds straddle a bound; "
            f"{f'about {decide} paired seeds would decide it' if decide else 'no seed count decides it'}"
        )
    return verdict_of([Finding(holds, text)], evidence)


def earlier_by(curve: pd.Series, steps: float) -> float:
    """How much earlier (in log steps) than its evaluation at `steps` a curve may have reached its target: up to one
    evaluation interval (unbounded at the first evaluation, which may have been reached at any step before it)."""
    evaluated = curve.index.to_numpy(dtype=float)
    interval = float(np.diff(evaluated).min()) if len(evaluated) > 1 else float(evaluated[0])
    return math.log(steps / (steps - interval)) if steps > interval else math.inf


def median_steps(steps: dict) -> str:
    values = sorted(steps.values())
    return f"{values[len(values) // 2]:g}" if values else "n/a"
