"""Checks on depth: what skip connections alone buy in trainable depth, and Figure 2(c) in detail.

`trainable_depth_ratio` reads the `trainability` sweep of runs.parquet (many depths, a few lrs);
`conv_bn_variances_grow_with_depth` reads the conv batch-norm net of signal.parquet, on the
paper's skip-path statistic `skip_var_pooled` (see `skipinit.signal.measure`).
"""

from __future__ import annotations

import math

import pandas as pd

from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict, check, verdict_of
from skipinit.claims.selection import (
    accuracy_at,
    at_best,
    best_per,
    edge_text,
    gap_at,
    interior,
    lr_ratio_range,
    preflight,
    select,
)
from skipinit.claims.signal_checks import per_seed_curves
from skipinit.claims.stats import finding_text, fit_line, over_seeds, within
from skipinit.runtable import best_lr_summary


def trainable_depths(rows: pd.DataFrame, trains_from: float, params: dict) -> pd.DataFrame:
    """Per depth: the best lr, its accuracy with its 95% interval, and whether the model trains there.

    `trains`: True where some lr surely trains (its score over seeds, a diverged seed scoring 0, surely above
    `trains_from`), False where every lr surely fails (surely below), None (undecided) otherwise.
    """
    table = best_lr_summary(rows, ["depth"]).set_index("depth")
    status, intervals = {}, {}
    for depth, at_depth in rows.groupby("depth"):
        per_lr, lrs = [], at_depth["lr"].nunique()
        for lr, at_lr in at_depth.groupby("lr"):
            estimate = accuracy_at(at_lr, params, lr, lrs)  # "some lr trains": simultaneous over the lrs
            per_lr.append(within(estimate, low=trains_from))  # a diverged seed scores 0 in it: no seed decides alone
            if lr == table.loc[depth, "best_lr"]:
                intervals[depth] = estimate["ci"]
        status[depth] = True if True in per_lr else False if all(s is False for s in per_lr) else None
    table["trains"] = pd.Series(status, dtype=object)
    table["ci"] = pd.Series(intervals, dtype=object)
    return table


def largest_trainable(table: pd.DataFrame) -> tuple[int | None, int | None]:
    """The largest depth that surely trains, and the largest that may (undecided depths included)."""
    surely = [int(depth) for depth, trains in table["trains"].items() if trains is True]
    maybe = [int(depth) for depth, trains in table["trains"].items() if trains is not False]
    return (max(surely) if surely else None), (max(maybe) if maybe else None)


@check
def trainable_depth_ratio(runs: pd.DataFrame, params: dict) -> Verdict:
    """The largest depth at which `deep` trains over the largest at which `shallow` trains lies in [`min_ratio`,
    `max_ratio`].

    Both models must share the depth sweep and the lr grid. A model trains at a depth when some lr
    there surely reaches chance + `train_margin_pp` (the 95% interval of its accuracy above it) with
    no diverged run, and fails there when every lr surely fails. An undecided depth makes the largest
    trainable depth a range, and the ratio an interval: [deep's surest / shallow's widest, deep's
    widest / shallow's surest]. A model that may still train at the deepest depth swept bounds its
    depth from below only (an unbounded interval), which refutes the claim only when even the lower
    end exceeds `max_ratio`.
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

    largest, deepest = {}, int(depths[-1])
    for name, frame in rows.items():
        table = trainable_depths(frame, trains_from, params)
        low, high = largest_trainable(table)
        largest[name] = (low, math.inf if high == deepest else high)
        evidence[name] = {
            "largest_trainable_depth": [low, high],
            "trains_by_depth": {str(int(d)): trains for d, trains in table["trains"].items()},
            "best_acc_ci_by_depth": {str(int(d)): ci for d, ci in table["ci"].items()},
            "best_lr_by_depth": {str(int(d)): row["best_lr"] for d, row in table.iterrows()},
        }
    if largest[shallow][0] is None:
        return INCONCLUSIVE, {
            **evidence,
            "reason": f"{shallow} surely trains at no depth of the sweep (shallowest {depths[0]})",
        }
    if largest[deep][0] is None:
        return INCONCLUSIVE, {
            **evidence,
            "reason": f"{deep} surely trains at no depth of the sweep (shallowest {depths[0]})",
        }
    ratio = [largest[deep][0] / largest[shallow][1], largest[deep][1] / largest[shallow][0]]
    evidence["ratio_range"] = ratio

    def reach(name: str) -> str:
        low, high = largest[name]
        if math.isinf(high):
            return f"{low} or deeper (it may still train at the deepest depth swept, {deepest})"
        return f"{low}" if low == high else f"{low}..{high} (undecided in between)"

    bounds = f"at least {ratio[0]:.2f}" if math.isinf(ratio[1]) else f"in [{ratio[0]:.2f}, {ratio[1]:.2f}]"
    text = (
        f"{deep} trains up to depth {reach(deep)}, {shallow} up to {reach(shallow)}: "
        f"ratio {bounds} (claim: {params['min_ratio']:g}-{params['max_ratio']:g})"
    )
    holds = within({"ci": ratio}, params["min_ratio"], params["max_ratio"])
    if holds is None:
        return verdict_of(
            [Finding(None, f"{text}: the range straddles the band; more seeds or a deeper sweep would narrow it")],
            evidence,
        )
    return verdict_of([Finding(holds, text)], evidence)


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
        return INCONCLUSIVE, {
            "reason": "signal.parquet has no skip_var_pooled (measured by an older version): rerun the signal rule"
        }
    rows = rows[rows["depth"] == rows["depth"].max()]
    curve = rows.groupby("block")[["skip_var_pooled", "bn_moving_var"]].mean()
    about = {"model": model, "blocks": len(curve), "seeds": int(rows["seed"].nunique())}
    if len(curve) < params["min_blocks"]:
        return INCONCLUSIVE, {
            **about,
            "reason": f"the {model} net has {len(curve)} blocks, fewer than the {params['min_blocks']} needed",
        }
    blocks = curve.index.to_numpy(dtype=float)
    slope, intercept, r2 = fit_line(blocks, curve["skip_var_pooled"].to_numpy())
    moving_slope, _, moving_r2 = fit_line(blocks, curve["bn_moving_var"].to_numpy(), through_origin=True)
    ratio = (curve["bn_moving_var"] / curve["skip_var_pooled"]).loc[params["ratio_from_block"] :]
    seeds = per_seed_curves(signal, model, ["skip_var_pooled", "bn_moving_var"])
    evidence = {
        **about,
        "pooled_slope": slope,
        "pooled_intercept": intercept,
        "pooled_r2": r2,
        "moving_var_slope_through_origin": moving_slope,
        "moving_var_r2_through_origin": moving_r2,
        "median_moving_over_pooled": float(ratio.median()),
        "moving_over_pooled_range": [float(ratio.min()), float(ratio.max())],
    }
    low, high = params["min_slope"], params["max_slope"]
    if len(seeds) < 2:
        reason = (
            f"skip_var_pooled ~ {slope:.3g} l from one seed: a slope from one seed has no interval; measure 2 or more "
            "seeds"
        )
        return INCONCLUSIVE, {**evidence, "reason": reason}
    slopes = over_seeds(
        [fit_line(c.index.to_numpy(dtype=float), c["skip_var_pooled"].to_numpy())[0] for c in seeds.values()]
    )
    ratios = over_seeds(
        [
            float((c["bn_moving_var"] / c["skip_var_pooled"]).loc[params["ratio_from_block"] :].median())
            for c in seeds.values()
        ]
    )
    evidence.update(pooled_slope=slopes, median_moving_over_pooled=ratios)
    # R^2 is a point value without an interval: below its bound it leaves a part undecided, never refutes it
    slope_holds = within(slopes, low, high, open_high=True) if r2 >= params["min_r2"] else None
    ratio_holds = within(ratios, params["min_ratio"], 1.0, open_high=True)
    findings = [
        Finding(
            slope_holds,
            finding_text(
                f"skip_var_pooled ~ {slope:.3g} l + {intercept:.3g}, R^2 {r2:.3f} (slope in [{low:g}, {high:g}), "
                f"R^2 >= {params['min_r2']:g}); per-seed slope",
                slopes,
                slope_holds,
                low,
                high,
                unit="",
            ),
        ),
        Finding(
            True if moving_r2 >= params["min_r2"] else None,
            f"bn_moving_var ~ {moving_slope:.3g} l, R^2 {moving_r2:.3f} through the origin (>= {params['min_r2']:g})",
        ),
        Finding(
            ratio_holds,
            finding_text(
                f"bn_moving_var / skip_var_pooled from block {params['ratio_from_block']} (median in "
                f"[{params['min_ratio']:g}, 1)), per-seed median",
                ratios,
                ratio_holds,
                params["min_ratio"],
                1.0,
                unit="",
            ),
        ),
    ]
    return verdict_of(findings, evidence)


@check
def optimal_lr_ratio_at_depths(runs: pd.DataFrame, params: dict) -> Verdict:
    """At each depth of `depths`, `reference`'s optimal lr over `candidate`'s lies in [`min_ratio`, `max_ratio`].

    Each optimal lr is a range (`selection.optimum_range`: the lrs within noise of the best, open where they
    reach the grid's edge), so the ratio is a range too; a part is decided only where the range lies wholly
    inside or outside the band.
    """
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["candidate"])
    tables = {name: best_per(runs, params, name, "depth") for name in names}
    findings, evidence = [], {"ratio_band": [params["min_ratio"], params["max_ratio"]], "depths": {}}
    for depth in params["depths"]:
        if any(depth not in table.index for table in tables.values()):
            findings.append(Finding(None, f"depth {depth}: no runs of both {names[0]} and {names[1]}"))
            continue
        rows = [tables[name].loc[depth] for name in names]
        low, high = lr_ratio_range(*rows)
        evidence["depths"][str(depth)] = {
            **{name: at_best(row) for name, row in zip(names, rows)},
            "lr_ratio_range": [low, high],
        }
        holds = within({"ci": [low, high]}, params["min_ratio"], params["max_ratio"])
        text = (
            f"depth {depth}: optimal lr {rows[0]['best_lr']:g} ({names[0]}) over {rows[1]['best_lr']:g} ({names[1]}), "
            f"ratio in [{low:.3g}, {high:.3g}] (band [{params['min_ratio']:g}, {params['max_ratio']:g}])"
        )
        edges = "; ".join(edge_text(name, row) for name, row in zip(names, rows) if not interior(row))
        findings.append(
            Finding(holds, text if holds is not None else f"{text}: {edges or 'the lrs within noise overlap the band'}")
        )
    return verdict_of(findings, evidence)


@check
def trails_with_smaller_lr(runs: pd.DataFrame, params: dict) -> Verdict:
    """At `depth`, `candidate` trails `reference` by at least `min_gap_pp` (each at its best lr, paired by seed), and
    `reference`'s optimal lr is at least `min_lr_ratio` times `candidate`'s (a range, as in
    `optimal_lr_ratio_at_depths`)."""
    if early := preflight(runs, params):
        return early
    names, depth = (params["reference"], params["candidate"]), params["depth"]
    tables = {name: best_per(runs, params, name, "depth") for name in names}
    if any(depth not in table.index for table in tables.values()):
        return INCONCLUSIVE, {"reason": f"no depth-{depth} runs of both {names[0]} and {names[1]}"}
    rows = [tables[name].loc[depth] for name in names]
    low, high = lr_ratio_range(*rows)
    gap = gap_at(runs, params, tables, "depth", depth, names)
    evidence = {
        "depth": depth,
        **{name: at_best(row) for name, row in zip(names, rows)},
        "gap": gap,
        "lr_ratio_range": [low, high],
        "min_gap_pp": params["min_gap_pp"],
        "min_lr_ratio": params["min_lr_ratio"],
    }
    ratio_holds = True if low >= params["min_lr_ratio"] else False if high < params["min_lr_ratio"] else None
    gap_holds = within(gap, low=params["min_gap_pp"])
    edges = "; ".join(edge_text(name, row) for name, row in zip(names, rows) if not interior(row))
    lr_text = (
        f"depth {depth}: optimal lr ratio {names[0]}/{names[1]} in [{low:.3g}, {high:.3g}] (needs >= "
        f"{params['min_lr_ratio']:g})"
    )
    return verdict_of(
        [
            Finding(
                ratio_holds,
                lr_text
                if ratio_holds is not None
                else f"{lr_text}: {edges or 'the lrs within noise overlap the bound'}",
            ),
            Finding(
                gap_holds,
                finding_text(
                    f"depth {depth}: {names[0]} over {names[1]}",
                    gap,
                    gap_holds,
                    low=params["min_gap_pp"],
                    seconds_per_seed=gap["seconds_per_seed"],
                ),
            ),
        ],
        evidence,
    )
