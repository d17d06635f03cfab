"""Verdicts on the paper's claims, computed from runs.parquet and signal.parquet alone.

`config/claims.yaml` lists the claims: a statement, where the paper shows it, the check (a
function registered here by name), the thresholds that check uses, and the paper's value.
No verdict is written by hand: a check gets the result frame and its params and returns
(verdict, evidence), the evidence holding the numbers it used and a one-line `reason`.

- reproduced / not_reproduced: the data decide the claim;
- inconclusive: the profile is too small to decide (too few seeds or epochs, too shallow a net,
  an optimal learning rate at the edge of the grid, ...), and the reason says which;
- not_run: the profile has no data for the claim (e.g. no ImageNet folder configured).

A claim made of several parts (one per model, depth or batch size) is reproduced when every
part holds, not reproduced when one part fails, and inconclusive otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from skipinit.aggregate import read_experiment_meta, runs_of
from skipinit.fileio import write_json, write_text
from skipinit.tables import best_lr_summary

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = "reproduced", "not_reproduced", "inconclusive", "not_run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)
SIGNAL = "signal"  # a claim's `data:` for signal.parquet; anything else names experiment kinds of runs.parquet
SIGNAL_FIGURE = "figures/signal_propagation.png"
NO_SIGNAL = pd.DataFrame(
    {
        "model": pd.Series(dtype=str),
        "depth": pd.Series(dtype=int),
        "block": pd.Series(dtype=int),
        "seed": pd.Series(dtype=int),
        "skip_var": pd.Series(dtype=float),
        "branch_var": pd.Series(dtype=float),
    }
)
# The variance each signal law predicts at residual block l (1-based).
LAWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "2^(l-1)": lambda l: 2.0 ** (l - 1),
    "l": lambda l: l,
    "1": lambda l: np.ones_like(l),
}

Verdict = tuple[str, dict]
CHECKS: dict[str, Callable[[pd.DataFrame, dict], Verdict]] = {}


def check(function: Callable[[pd.DataFrame, dict], Verdict]) -> Callable[[pd.DataFrame, dict], Verdict]:
    """Register a check under its function name, the name `check:` uses in the claims file."""
    CHECKS[function.__name__] = function
    return function


@dataclass
class Finding:
    """One part of a claim: it holds (True), fails (False) or cannot be decided here (None), and why."""

    holds: bool | None
    text: str

    def __post_init__(self):
        if self.holds is not None:
            self.holds = bool(self.holds)  # numpy comparisons give np.bool_, which `is False` misses


def verdict_of(findings: list[Finding], evidence: dict) -> Verdict:
    """One failed part refutes a claim; an undecided part leaves it inconclusive; else it is reproduced."""
    failed = [f.text for f in findings if f.holds is False]
    undecided = [f.text for f in findings if f.holds is None]
    if failed:
        verdict, texts = NOT_REPRODUCED, failed
    elif undecided:
        verdict, texts = INCONCLUSIVE, undecided
    else:
        verdict, texts = REPRODUCED, [f.text for f in findings]
    return verdict, {**evidence, "reason": "; ".join(texts)}


# --- signal propagation at initialization (Figure 2) ---------------------------------------------


def deepest_net(signal: pd.DataFrame, model: str) -> tuple[pd.DataFrame, dict]:
    """Per-block variances of the deepest `model` net, averaged over seeds in log space.

    A geometric mean, so that one seed of an exploding net cannot dominate the average.
    """
    rows = signal[signal["model"] == model]
    rows = rows[rows["depth"] == rows["depth"].max()]
    with np.errstate(divide="ignore"):
        logs = rows.assign(skip_var=np.log(rows["skip_var"]), branch_var=np.log(rows["branch_var"]))
    curve = np.exp(logs.groupby("block")[["skip_var", "branch_var"]].mean())
    about = {"model": model, "blocks": len(curve), "seeds": int(rows["seed"].nunique())}
    return curve, about


def too_shallow(about: dict, min_blocks: int) -> Verdict | None:
    if about["blocks"] == 0:
        return NOT_RUN, {**about, "reason": f"no {about['model']} net in signal.parquet"}
    if about["blocks"] < min_blocks:
        return INCONCLUSIVE, {
            **about,
            "reason": f"the {about['model']} net has {about['blocks']} blocks, fewer than the {min_blocks} needed",
        }
    return None


@check
def variance_follows_law(signal: pd.DataFrame, params: dict) -> Verdict:
    """`statistic` of `model` stays within a factor `max_ratio` of `law` (of the block l) on blocks 1..`blocks`."""
    curve, about = deepest_net(signal, params["model"])
    if early := too_shallow(about, params["min_blocks"]):
        return early
    statistic, law, max_ratio = params["statistic"], params["law"], params["max_ratio"]
    observed = curve[statistic].loc[: params["blocks"]]
    blocks = observed.index.to_numpy(dtype=float)
    ratio = observed.to_numpy() / LAWS[law](blocks)
    worst = int(np.argmax(np.abs(np.log(ratio))))
    holds = abs(np.log(ratio[worst])) <= np.log(max_ratio)
    evidence = {
        **about,
        "statistic": statistic,
        "law": law,
        "blocks_checked": len(blocks),
        "worst_block": int(blocks[worst]),
        "worst_ratio": ratio[worst],
        "ratio_at_last_checked_block": ratio[-1],
        "max_ratio": max_ratio,
    }
    stays = "stays within" if holds else "leaves"
    text = (
        f"{statistic} / {law} {stays} a factor {max_ratio:g} over blocks 1-{len(blocks)} "
        f"(worst {ratio[worst]:.3g} at block {int(blocks[worst])})"
    )
    return verdict_of([Finding(holds, text)], evidence)


@check
def variance_linear_in_block(signal: pd.DataFrame, params: dict) -> Verdict:
    """A least-squares line through `statistic` of `model` against l has a positive slope and R^2 >= `min_r2`."""
    curve, about = deepest_net(signal, params["model"])
    if early := too_shallow(about, params["min_blocks"]):
        return early
    values = curve[params["statistic"]]
    blocks = values.index.to_numpy(dtype=float)
    slope, intercept = np.polyfit(blocks, values.to_numpy(), 1)
    residuals = values.to_numpy() - (slope * blocks + intercept)
    r2 = 1.0 - float(np.sum(residuals**2) / np.sum((values.to_numpy() - values.mean()) ** 2))
    holds = slope > 0 and r2 >= params["min_r2"]
    evidence = {
        **about,
        "statistic": params["statistic"],
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "min_r2": params["min_r2"],
    }
    text = (
        f"{params['statistic']} ~ {slope:.3g} l + {intercept:.3g} with R^2 {r2:.3f} "
        f"(needs slope > 0, R^2 >= {params['min_r2']:g})"
    )
    return verdict_of([Finding(holds, text)], evidence)


@check
def branch_downscaled_by_sqrt_depth(signal: pd.DataFrame, params: dict) -> Verdict:
    """In each BN net of `nets`, std(skip path) / std(branch) grows as l^e with e within `tolerance` of 1/2.

    The exponent is fitted (log-log) on blocks >= `fit_from_block`: the sqrt(l) law is asymptotic,
    and a branch variance other than 1 shifts the ratio at the first blocks.
    """
    findings, evidence = [], {}
    for net in params["nets"]:
        curve, about = deepest_net(signal, net)
        if about["blocks"] == 0:
            continue
        fitted = curve.loc[params["fit_from_block"] :]
        if len(fitted) < params["min_blocks"]:
            findings.append(
                Finding(
                    None,
                    f"{net}: {len(fitted)} blocks from block {params['fit_from_block']}, fewer than {params['min_blocks']}",
                )
            )
            evidence[net] = about
            continue
        std_ratio = np.sqrt(fitted["skip_var"] / fitted["branch_var"])
        exponent = float(np.polyfit(np.log(fitted.index.to_numpy(dtype=float)), np.log(std_ratio.to_numpy()), 1)[0])
        last = int(curve.index.max())
        evidence[net] = {
            **about,
            "exponent": exponent,
            "std_ratio_at_last_block": float(np.sqrt(curve["skip_var"].iloc[-1] / curve["branch_var"].iloc[-1])),
            "sqrt_last_block": math.sqrt(last),
        }
        holds = abs(exponent - 0.5) <= params["tolerance"]
        findings.append(
            Finding(
                holds, f"{net}: std ratio grows as l^{exponent:.2f} (paper: l^0.5, tolerance {params['tolerance']:g})"
            )
        )
    if not findings:
        return NOT_RUN, {"reason": f"none of {', '.join(params['nets'])} in signal.parquet"}
    return verdict_of(findings, evidence)


# --- training results -----------------------------------------------------------------------------


def preflight(runs: pd.DataFrame, params: dict) -> Verdict | None:
    """not_run without runs; inconclusive when the profile has too few seeds or too short a budget."""
    if runs.empty:
        return NOT_RUN, {"reason": "no runs for this claim in runs.parquet"}
    seeds, epochs = int(runs["seed"].nunique()), int(runs["epochs"].max())
    shortfalls = []
    if seeds < params.get("min_seeds", 1):
        shortfalls.append(f"fewer than {params['min_seeds']} seeds ({seeds})")
    if epochs < params.get("min_epochs", 1):
        shortfalls.append(f"a budget of {epochs} epochs, under the {params['min_epochs']} this claim needs")
    if shortfalls:
        return INCONCLUSIVE, {"seeds": seeds, "epochs": epochs, "reason": "; ".join(shortfalls)}
    return None


def select(runs: pd.DataFrame, params: dict, name: str) -> pd.DataFrame:
    """The runs of model `name`, by its selector (a pandas query) under `models:` in the claims file."""
    if name not in params["models"]:
        raise ValueError(
            f"model {name!r} is not defined under `models:` in the claims file; defined: {', '.join(params['models'])}"
        )
    return runs.query(params["models"][name])


def best_per(runs: pd.DataFrame, params: dict, name: str, key: str) -> pd.DataFrame:
    """Model `name` at its best lr for each value of `key` (depth, batch size), with the lr grid's ends."""
    rows = select(runs, params, name)
    ends = rows.groupby(key)["lr"].agg(lr_min="min", lr_max="max")
    return best_lr_summary(rows, [key]).set_index(key).join(ends)


def at_best(row: pd.Series) -> dict:
    """What the evidence records of one model at its best lr."""
    return {
        "test_acc": row["test_acc_mean"],
        "test_acc_std": row["test_acc_std"],
        "best_lr": row["best_lr"],
        "seeds": int(row["seeds"]),
        "lrs_tried": int(row["lrs_tried"]),
        "diverged_runs_at_best_lr": int(row["diverged_runs"]),
    }


def optimum_range(row: pd.Series) -> tuple[float, float]:
    """Where the optimal lr can lie: at the best lr tried, or beyond it when that is an end of the grid."""
    low = 0.0 if row["best_lr"] <= row["lr_min"] else row["best_lr"]
    high = math.inf if row["best_lr"] >= row["lr_max"] else row["best_lr"]
    return low, high


def lr_ratio_range(reference: pd.Series, candidate: pd.Series) -> tuple[float, float]:
    """The range of (reference optimal lr) / (candidate optimal lr) that the two grids allow."""
    (ref_low, ref_high), (cand_low, cand_high) = optimum_range(reference), optimum_range(candidate)
    return ref_low / cand_high, (ref_high / cand_low if cand_low else math.inf)


def interior(row: pd.Series) -> bool:
    return row["lr_min"] < row["best_lr"] < row["lr_max"]


def edge_text(name: str, row: pd.Series) -> str:
    if row["lr_min"] == row["lr_max"]:
        return f"{name}: only one learning rate tried ({row['best_lr']:g})"
    return f"{name}: best lr {row['best_lr']:g} is at the edge of the grid [{row['lr_min']:g}, {row['lr_max']:g}]"


def common_values(tables: dict[str, pd.DataFrame]) -> list:
    """The index values (depths, batch sizes) that every model's table has, in order."""
    indexes = [set(table.index) for table in tables.values()]
    return sorted(set.intersection(*indexes)) if indexes else []


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
        gap = ref["test_acc_mean"] - cand["test_acc_mean"]
        evidence["depths"][str(depth)] = {reference: at_best(ref), candidate: at_best(cand), "gap_pp": gap}
        findings.append(
            Finding(
                gap <= params["max_gap_pp"],
                f"depth {depth}: {candidate} {cand['test_acc_mean']:.1f}% vs {reference} {ref['test_acc_mean']:.1f}% (gap {gap:+.1f} pp)",
            )
        )
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
        drop = kept["test_acc_mean"] - removed["test_acc_mean"]
        evidence["batch_sizes"][str(batch_size)] = {
            params["with"]: at_best(kept),
            params["without"]: at_best(removed),
            "drop_pp": drop,
        }
        trains = removed["test_acc_mean"] >= train_from
        in_range = params["min_drop_pp"] <= drop <= params["max_drop_pp"]
        findings.append(
            Finding(
                bool(trains and in_range),
                f"batch {batch_size}: {params['without']} {removed['test_acc_mean']:.1f}% "
                f"({'trains' if trains else 'does not train'}), {drop:+.1f} pp below {params['with']}",
            )
        )
    return verdict_of(findings, evidence)


def batch_comparison(
    batch_size: int,
    rows: tuple[pd.Series, pd.Series],
    names: tuple[str, str],
    lr_verdict: Callable[[float, float], bool | None],
    gap_holds: Callable[[float], bool],
) -> tuple[list[Finding], dict]:
    """The lr part and the accuracy part of comparing a reference with a candidate at one batch size.

    An optimum at the edge of the lr grid only bounds the optimal lr (and the accuracy there): the lr
    part gets the range of lr ratios the grids allow (`lr_verdict` decides it, or not), the accuracy
    part is decided only when both optima are interior.
    """
    reference, candidate = rows
    low, high = lr_ratio_range(reference, candidate)
    gap = reference["test_acc_mean"] - candidate["test_acc_mean"]
    edges = "; ".join(edge_text(name, row) for name, row in zip(names, rows) if not interior(row))
    lr_text = (
        f"batch {batch_size}: best lr {reference['best_lr']:g} ({names[0]}) vs {candidate['best_lr']:g} ({names[1]})"
    )
    gap_text = f"batch {batch_size}: {names[0]} {gap:+.1f} pp over {names[1]}"
    lr_holds = lr_verdict(low, high)
    findings = [
        Finding(lr_holds, lr_text if lr_holds is not None else f"{lr_text}: {edges}"),
        Finding(None, f"{gap_text}, not decidable: {edges}") if edges else Finding(gap_holds(gap), gap_text),
    ]
    evidence = {
        names[0]: at_best(reference),
        names[1]: at_best(candidate),
        "lr_ratio_range": [low, high],
        "gap_pp": gap,
    }
    return findings, evidence


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
        found, evidence["batch_sizes"][str(batch_size)] = batch_comparison(
            batch_size, rows, names, similar_lrs, lambda gap: abs(gap) <= params["max_gap_pp"]
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
        lambda gap: gap >= params["min_gap_pp"],
    )
    evidence = {"batch_size": largest, "min_lr_ratio": ratio, "min_gap_pp": params["min_gap_pp"], **found}
    return verdict_of(findings, evidence)


@check
def regularized_gap_shrinks(runs: pd.DataFrame, params: dict) -> Verdict:
    """At the smallest batch size, `reference` leads `regularized` by >= `min_shrink_pp` less than it leads `plain`."""
    if early := preflight(runs, params):
        return early
    names = (params["reference"], params["plain"], params["regularized"])
    tables = {name: best_per(runs, params, name, "batch_size") for name in names}
    batch_sizes = common_values(tables)
    if not batch_sizes:
        return INCONCLUSIVE, {"reason": f"no batch size with {', '.join(names)} runs"}
    batch_size = batch_sizes[0]
    reference, plain, regularized = (tables[name].loc[batch_size] for name in names)
    lead_plain = reference["test_acc_mean"] - plain["test_acc_mean"]
    lead_regularized = reference["test_acc_mean"] - regularized["test_acc_mean"]
    evidence = {
        "batch_size": batch_size,
        **{name: at_best(row) for name, row in zip(names, (reference, plain, regularized))},
        "lead_over_plain_pp": lead_plain,
        "lead_over_regularized_pp": lead_regularized,
        "min_shrink_pp": params["min_shrink_pp"],
    }
    holds = lead_regularized <= lead_plain - params["min_shrink_pp"]
    leads = f"{names[1]} by {lead_plain:+.1f} pp and {names[2]} by {lead_regularized:+.1f} pp"
    text = f"batch {batch_size}: {names[0]} leads {leads}"
    return verdict_of([Finding(holds, text)], evidence)


@check
def competitive_then_beaten_at_largest_batch(runs: pd.DataFrame, params: dict) -> Verdict:
    """Each of `candidates` is within `max_gap_pp` of `reference` below the largest batch size, and beaten there.

    Beaten: `reference` leads by more than `min_win_pp`.
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
            gap = ref["test_acc_mean"] - cand["test_acc_mean"]
            evidence["batch_sizes"][str(batch_size)][name] = {**at_best(cand), "gap_pp": gap}
            if batch_size == largest:
                findings.append(
                    Finding(gap > params["min_win_pp"], f"batch {batch_size}: {reference} {gap:+.1f} pp over {name}")
                )
            else:
                findings.append(
                    Finding(gap <= params["max_gap_pp"], f"batch {batch_size}: {name} {gap:+.1f} pp behind {reference}")
                )
    return verdict_of(findings, evidence)


# --- the claims file, claims.json and claims.md ---------------------------------------------------


def load_spec(path: str | Path) -> dict:
    """The claims file, checked so that a typo fails with one line before any claim is judged."""
    spec = yaml.safe_load(Path(path).read_text())
    ids = [claim["id"] for claim in spec["claims"]]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise ValueError(f"{path}: duplicate claim ids {', '.join(duplicates)}")
    for claim in spec["claims"]:
        if claim["check"] not in CHECKS:
            raise ValueError(
                f"{path}: claim {claim['id']} names check {claim['check']!r}; known: {', '.join(sorted(CHECKS))}"
            )
    return spec


def judge(claim: dict, runs: pd.DataFrame, signal: pd.DataFrame, experiments: dict, models: dict) -> dict:
    """One claim's entry in claims.json: its verdict, the evidence, and the figures it is read from."""
    if claim["data"] == SIGNAL:
        frame, params = signal, claim["params"]
        figures = [SIGNAL_FIGURE] if not signal.empty else []
        used = []
    else:
        kinds = [claim["data"]] if isinstance(claim["data"], str) else claim["data"]
        used = [
            name for name, meta in experiments.items() if meta.get("kind") in kinds and not runs_of(runs, name).empty
        ]
        frame = runs[runs["experiments"].map(lambda names: bool(set(names) & set(used)))]
        params = {"models": models, **claim["params"]}
        figures = [f"figures/{name}.png" for name in used]
    verdict, evidence = CHECKS[claim["check"]](frame, params)
    if claim["data"] != SIGNAL:
        evidence = {"experiments": used, **evidence}
    return {
        "id": claim["id"],
        "statement": claim["statement"],
        "source": claim["source"],
        "check": claim["check"],
        "verdict": verdict,
        "evidence": jsonable(evidence),
        "paper_value": claim.get("paper_value"),
        "figures": figures,
    }


def jsonable(value):
    """Plain JSON values: numpy scalars unwrapped, floats to 4 significant digits, NaN and inf as null."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return value


def markdown(verdicts: list[dict], claims_config: str | Path) -> str:
    """claims.md: one table row per claim, linked to its figures, then each claim's evidence."""
    counts = {verdict: sum(v["verdict"] == verdict for v in verdicts) for verdict in VERDICTS}
    lines = [
        "# Claims of De & Smith (NeurIPS 2020): verdicts",
        "",
        "Computed from `runs.parquet` and `signal.parquet` by the checks in `src/skipinit/claims.py`,",
        f"with the thresholds of `{claims_config}`. Inconclusive: the profile is too small to decide",
        "(the evidence says why); not run: the profile has no data for it.",
        "",
        "Summary: " + ", ".join(f"{count} {verdict.replace('_', ' ')}" for verdict, count in counts.items()) + ".",
        "",
        "| id | claim | verdict | key evidence | paper value | source | figures |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        links = ", ".join(f"[{Path(figure).stem}]({figure})" for figure in v["figures"]) or "-"
        paper = "-" if v["paper_value"] is None else v["paper_value"]
        cells = [
            f"[{v['id']}](#{v['id']})",
            v["statement"],
            f"**{v['verdict'].replace('_', ' ')}**",
            v["evidence"]["reason"],
            paper,
            v["source"],
            links,
        ]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    lines += ["", "## Evidence", ""]
    for v in verdicts:
        lines += [
            f"### {v['id']}",
            "",
            f"{v['statement']} ({v['source']}; check `{v['check']}`): **{v['verdict'].replace('_', ' ')}**.",
            "",
            "```json",
            json.dumps(v["evidence"], indent=1),
            "```",
            "",
        ]
    return "\n".join(lines)


def write(results: Path, claims_config: str | Path) -> None:
    """Judge every claim of `claims_config` on `results`; write claims.json and claims.md there.

    Reads runs.parquet, and signal.parquet where present (its claims are not run otherwise).
    """
    results = Path(results)
    spec = load_spec(claims_config)
    runs = pd.read_parquet(results / "runs.parquet")
    signal_path = results / "signal.parquet"
    signal = pd.read_parquet(signal_path) if signal_path.exists() else NO_SIGNAL
    experiments = read_experiment_meta(results / "runs.parquet")
    verdicts = [judge(claim, runs, signal, experiments, spec.get("models", {})) for claim in spec["claims"]]
    write_json(results / "claims.json", verdicts)
    write_text(results / "claims.md", markdown(verdicts, claims_config))
