"""Checks on depth: what skip connections alone buy in trainable depth, and Figure 2(c) in detail.

`trainable_depth_ratio` reads the `trainability` sweep of runs.parquet (many depths, a few lrs);
`conv_bn_variances_grow_with_depth` reads the conv batch-norm net of signal.parquet, on the
paper's skip-path statistic `skip_var_pooled` (see `skipinit.signal.measure`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import select
from skipinit.claims.stats import fit_line
from skipinit.report.tables import best_lr_summary


def trainable_depths(rows: pd.DataFrame, trains_from: float) -> pd.DataFrame:
    """Per depth: the best lr, its mean test accuracy over seeds, and whether the model trains there.

    Trains: at the best lr no run diverged and the mean test accuracy reaches `trains_from`.
    """
    table = best_lr_summary(rows, ["depth"]).set_index("depth")
    table["trains"] = (table["diverged_runs"] == 0) & (table["test_acc_mean"] >= trains_from)
    return table


@check
def trainable_depth_ratio(runs: pd.DataFrame, params: dict) -> Verdict:
    """The largest depth at which `deep` trains over the largest at which `shallow` trains lies in [`min_ratio`, `max_ratio`].

    Both models must share the depth sweep and the lr grid. A model trains at a depth when its best
    lr there reaches chance + `train_margin_pp` with no diverged run. The ratio is decided only when
    each model trains at some depth of the sweep and fails at its deepest depth; a `deep` model that
    still trains at the deepest depth bounds the ratio from below only, which refutes the claim when
    that bound already exceeds `max_ratio`.
    """
    if runs.empty:
        return NOT_RUN, {"reason": "no trainability runs in runs.parquet"}
    shallow, deep = params["shallow"], params["deep"]
    trains_from = params["chance_acc"] + params["train_margin_pp"]
    rows = {name: select(runs, params, name) for name in (shallow, deep)}
    evidence = {"trains_from": trains_from, "min_ratio": params["min_ratio"], "max_ratio": params["max_ratio"]}
    for name, frame in rows.items():
        if frame.empty:
            return INCONCLUSIVE, {**evidence, "reason": f"no {name} runs in the trainability sweep"}
    grids = {name: (sorted(frame["depth"].unique()), sorted(frame["lr"].unique())) for name, frame in rows.items()}
    if grids[shallow] != grids[deep]:
        return INCONCLUSIVE, {
            **evidence,
            "grids": {name: {"depths": d, "lrs": lr} for name, (d, lr) in grids.items()},
            "reason": f"{shallow} and {deep} were not run over the same depths and learning rates",
        }
    depths, lrs = grids[shallow]
    evidence.update({"depths": depths, "lrs": lrs})
    if len(depths) < params["min_depths"]:
        return INCONCLUSIVE, {**evidence, "reason": f"{len(depths)} depths swept, fewer than {params['min_depths']}"}

    largest, undecided = {}, []
    for name, frame in rows.items():
        table = trainable_depths(frame, trains_from)
        trained = [int(depth) for depth in table.index[table["trains"]]]
        largest[name] = max(trained) if trained else None
        evidence[name] = {
            "largest_trainable_depth": largest[name],
            "trains_at": trained,
            "best_acc_by_depth": {str(int(d)): row["test_acc_mean"] for d, row in table.iterrows()},
            "best_lr_by_depth": {str(int(d)): row["best_lr"] for d, row in table.iterrows()},
        }
        if not trained:
            undecided.append(f"{name} trains at no depth of the sweep (shallowest {depths[0]})")
    if undecided:
        return INCONCLUSIVE, {**evidence, "reason": "; ".join(undecided)}
    ratio = largest[deep] / largest[shallow]
    evidence["ratio"] = ratio
    text = (
        f"{deep} trains up to depth {largest[deep]}, {shallow} up to {largest[shallow]}: "
        f"ratio {ratio:.2f} (claim: {params['min_ratio']:g}-{params['max_ratio']:g})"
    )
    deepest = depths[-1]
    if largest[shallow] == deepest:
        return INCONCLUSIVE, {**evidence, "reason": f"{shallow} still trains at the deepest depth swept ({deepest})"}
    if largest[deep] == deepest:
        if ratio > params["max_ratio"]:
            return verdict_of([Finding(False, f"{text}, at least: {deep} still trains at {deepest}")], evidence)
        return INCONCLUSIVE, {**evidence, "reason": f"{text}, at least: {deep} still trains at the deepest depth swept"}
    return verdict_of([Finding(params["min_ratio"] <= ratio <= params["max_ratio"], text)], evidence)


@check
def conv_bn_variances_grow_with_depth(signal: pd.DataFrame, params: dict) -> Verdict:
    """Figure 2(c): in `model` the pooled skip-path variance is linear in l with slope in
    [`min_slope`, `max_slope`]; the BN moving variance is proportional to l (R^2 >= `min_r2` through
    the origin) and, from block `ratio_from_block` on, a median fraction in [`min_ratio`, 1) of it.

    Per block, both statistics are averaged over seeds of the deepest net. The pooled variance is
    the paper's (across channels, so it includes the channel-mean spread); the per-channel
    `skip_var` equals the moving variance by construction and would make the last part empty.
    """
    model = params["model"]
    rows = signal[signal["model"] == model]
    if rows.empty:
        return NOT_RUN, {"reason": f"no {model} net in signal.parquet"}
    if "skip_var_pooled" not in rows or rows["skip_var_pooled"].isna().all():
        return INCONCLUSIVE, {"reason": "signal.parquet has no skip_var_pooled (measured by an older version): rerun the signal rule"}
    rows = rows[rows["depth"] == rows["depth"].max()]
    curve = rows.groupby("block")[["skip_var_pooled", "bn_moving_var"]].mean()
    about = {"model": model, "blocks": len(curve), "seeds": int(rows["seed"].nunique())}
    if len(curve) < params["min_blocks"]:
        return INCONCLUSIVE, {**about, "reason": f"the {model} net has {len(curve)} blocks, fewer than the {params['min_blocks']} needed"}
    blocks = curve.index.to_numpy(dtype=float)
    slope, intercept, r2 = fit_line(blocks, curve["skip_var_pooled"].to_numpy())
    moving_slope, _, moving_r2 = fit_line(blocks, curve["bn_moving_var"].to_numpy(), through_origin=True)
    ratio = (curve["bn_moving_var"] / curve["skip_var_pooled"]).loc[params["ratio_from_block"] :]
    median_ratio = float(ratio.median())
    evidence = {
        **about,
        "pooled_slope": slope,
        "pooled_intercept": intercept,
        "pooled_r2": r2,
        "moving_var_slope_through_origin": moving_slope,
        "moving_var_r2_through_origin": moving_r2,
        "median_moving_over_pooled": median_ratio,
        "moving_over_pooled_range": [float(ratio.min()), float(ratio.max())],
    }
    low, high = params["min_slope"], params["max_slope"]
    findings = [
        Finding(
            low <= slope < high and r2 >= params["min_r2"],
            f"skip_var_pooled ~ {slope:.3g} l + {intercept:.3g}, R^2 {r2:.3f} (slope in [{low:g}, {high:g}), R^2 >= {params['min_r2']:g})",
        ),
        Finding(
            moving_r2 >= params["min_r2"],
            f"bn_moving_var ~ {moving_slope:.3g} l, R^2 {moving_r2:.3f} through the origin (>= {params['min_r2']:g})",
        ),
        Finding(
            params["min_ratio"] <= median_ratio < 1.0,
            f"bn_moving_var / skip_var_pooled: median {median_ratio:.3f} from block {params['ratio_from_block']} "
            f"(in [{params['min_ratio']:g}, 1))",
        ),
    ]
    return verdict_of(findings, evidence)
