"""What the run checks share: selecting a model's runs, its best lr per setting, and the lr grid's edges."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from skipinit.claims.floors import NoiseModel
from skipinit.claims.registry import INCONCLUSIVE, NOT_RUN, Finding, Verdict
from skipinit.claims.stats import (
    accuracy,
    alpha_set,
    finding_text,
    paired_gap,
    pooled_variance,
    subset_variance_pp,
    within,
)
from skipinit.runtable import best_lr_summary, scored


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
    """Model `name` at its best lr for each value of `key` (depth, batch size), with the lr grid's ends and the
    lrs within noise of the best (`lr_low`..`lr_high`, `near_best`)."""
    rows = select(runs, params, name)
    ends = rows.groupby(key)["lr"].agg(lr_min="min", lr_max="max")
    table = best_lr_summary(rows, [key]).set_index(key).join(ends)
    near = {value: near_best(rows[rows[key] == value], params, table.loc[value, "best_lr"]) for value in table.index}
    return table.assign(
        lr_low=pd.Series({value: min(lrs) for value, lrs in near.items()}, dtype=float),
        lr_high=pd.Series({value: max(lrs) for value, lrs in near.items()}, dtype=float),
        lrs_near=pd.Series({value: len(lrs) for value, lrs in near.items()}, dtype=int),
    )


def score_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One model's scores at one setting as a seed x lr table (a diverged run scores 0)."""
    return scored(rows).groupby(["seed", "lr"])["score"].mean().unstack("lr")


def near_best(rows: pd.DataFrame, params: dict, best_lr: float) -> list[float]:
    """The lrs that the runs cannot tell from the best (one model at one setting): a one-sided subset selection.

    An lr is dropped when some other lr surely beats it: the lower bound of their paired difference (the same seeds
    at both lrs, pooled with the setting's lr-difference floor) lies above 0, each comparison at alpha/(k - 1) for
    k lrs (Gupta's subset selection with a Bonferroni constant), so the truly best lr stays in the set with
    probability at least 1 - alpha. An optimal-lr statement then rests on the range of these lrs, not on the
    arg-max alone: among equally good lrs the arg-max is noise. They are also the lrs the best could have been
    picked from: a statistic at the best lr is made simultaneous over them (`gap_at`, `lrs_near`).
    """
    table = score_table(rows)
    if table.shape[1] < 2:
        return [float(lr) for lr in table.columns]
    floor_sd, floor_df, _ = NoiseModel.from_params(params).floor_for(rows).lr_gap()
    images, lrs = subset_images(rows), list(table.columns)
    scores = table.to_numpy(float)
    t_of = functools.cache(lambda df: float(stats.t.ppf(1.0 - alpha_set() / (len(lrs) - 1), df)))

    def beaten(j: int) -> bool:
        for i in range(len(lrs)):
            both = ~np.isnan(scores[:, i]) & ~np.isnan(scores[:, j])
            if i == j or not both.any():
                continue
            differences = scores[both, i] - scores[both, j]
            df, variance = pooled_variance(differences, floor_sd, floor_df)
            means = (float(scores[both, i].mean()), float(scores[both, j].mean()))
            se = math.sqrt(variance / len(differences) + subset_variance_pp(means, images))
            if differences.mean() - t_of(df) * se > 0:
                return True
        return False

    return [float(lr) for j, lr in enumerate(lrs) if lr == best_lr or not beaten(j)]


def at_setting(runs: pd.DataFrame, params: dict, name: str, setting: dict, lr: float | None = None) -> pd.DataFrame:
    """Model `name`'s runs at `setting` (e.g. {"batch_size": 64}), and at `lr` where given."""
    rows = select(runs, params, name)
    for key, value in setting.items():
        rows = rows[rows[key] == value]
    return rows if lr is None else rows[rows["lr"] == lr]


def seed_scores(runs: pd.DataFrame, params: dict, name: str, setting: dict, lr: float) -> pd.Series:
    """Model `name`'s score per seed at `setting` and `lr`; a diverged run scores 0."""
    return scored(at_setting(runs, params, name, setting, lr)).groupby("seed")["score"].mean()


def subset_images(rows: pd.DataFrame) -> float | None:
    """The size of the fixed test subset the rows' accuracies were read on, where they were read on one (results
    written before the final evaluation read the whole test set); None where they read all of it, the paper's
    quantity, which has no test-set term."""
    subset = float(rows["test_subset"].min()) if "test_subset" in rows and len(rows) else 0.0
    if not subset:
        return None
    read = rows["test_images"].dropna() if "test_images" in rows else pd.Series(dtype=float)
    if len(read) and float(read.min()) > subset:
        return None
    return subset


def seconds_per_seed(rows: pd.DataFrame) -> float | None:
    """Training wall seconds of one more seed of `rows` (every lr and model in them), from their own timings."""
    if rows.empty or "wall_seconds" not in rows or rows["wall_seconds"].isna().all():
        return None
    return float(rows["wall_seconds"].sum()) / max(1, int(rows["seed"].nunique()))


def held_out(rows: pd.DataFrame) -> tuple[pd.Series, dict] | None:
    """Per seed, the score at the lr that the *other* seeds pick (their mean's best), and those lrs; None under 2 seeds.

    Each seed's number is then judged apart from the numbers that chose its lr: the arg-max's luck on a seed
    (the winner's curse) cannot inflate that seed's own score.
    """
    table = score_table(rows)
    if len(table) < 2:
        return None
    picked = {seed: float(table.drop(index=seed).mean().idxmax()) for seed in table.index}
    return pd.Series({seed: table.loc[seed, lr] for seed, lr in picked.items()}).dropna(), picked


def gap_at(runs: pd.DataFrame, params: dict, tables: dict, key: str, value, names: tuple[str, str]) -> dict:
    """names[0] - names[1] at `key` = `value`, each at its best lr, paired by seed (see `stats.paired_gap`).

    With two or more seeds each seed's lr is chosen on the other seeds (`held_out`); with one, the gap at the
    two best lrs is simultaneous over the pairs of lrs they were picked from (those within noise of each best).
    The estimate carries `seconds_per_seed`: what one more paired seed of both models' sweeps costs here.
    """
    sweeps = [at_setting(runs, params, name, {key: value}) for name in names]
    floor = NoiseModel.from_params(params).floor_for(pd.concat(sweeps))
    held = [held_out(sweep) for sweep in sweeps]
    if all(choice is not None for choice in held):
        gap = paired_gap(held[0][0], held[1][0], floor, subset_images(pd.concat(sweeps)))
        gap = {
            **gap,
            "method": gap["method"] + "; each seed's lr chosen on the other seeds",
            "lr_by_seed": {
                name: {str(seed): lr for seed, lr in choice[1].items()} for name, choice in zip(names, held)
            },
        }
    else:
        rows = [at_setting(runs, params, name, {key: value}, tables[name].loc[value, "best_lr"]) for name in names]
        scores = [scored(frame).groupby("seed")["score"].mean() for frame in rows]
        picked = int(tables[names[0]].loc[value, "lrs_near"]) * int(tables[names[1]].loc[value, "lrs_near"])
        gap = paired_gap(*scores, floor, subset_images(pd.concat(rows)), picked)
    return {**gap, "seconds_per_seed": seconds_per_seed(pd.concat(sweeps))}


def accuracy_at(rows: pd.DataFrame, params: dict, lr: float, selected_from: int = 1) -> dict:
    """The accuracy of `rows` (one model at one setting) at `lr`, its seeds pooled with the setting's floor;
    simultaneous over `selected_from` lrs where `lr` was picked among them (the best, or any that trains)."""
    at_lr = rows[rows["lr"] == lr]
    floor = NoiseModel.from_params(params).floor_for(rows)
    return accuracy(scored(at_lr).groupby("seed")["score"].mean(), floor, subset_images(at_lr), selected_from)


def at_best(row: pd.Series) -> dict:
    """What the evidence records of one model at its best lr."""
    return {
        "test_acc": row["test_acc_mean"],
        "test_acc_std": row["test_acc_std"],
        "best_lr": row["best_lr"],
        "seeds": int(row["seeds"]),
        "lrs_tried": int(row["lrs_tried"]),
        "diverged_runs_at_best_lr": int(row["diverged_runs"]),
        **({"lrs_within_noise_of_best": [row["lr_low"], row["lr_high"]]} if "lr_low" in row else {}),
    }


def optimum_range(row: pd.Series) -> tuple[float, float]:
    """Where the optimal lr can lie: among the lrs within noise of the best, or beyond an end of the grid they reach."""
    low = 0.0 if row["lr_low"] <= row["lr_min"] else row["lr_low"]
    high = math.inf if row["lr_high"] >= row["lr_max"] else row["lr_high"]
    return low, high


def lr_ratio_range(reference: pd.Series, candidate: pd.Series) -> tuple[float, float]:
    """The range of (reference optimal lr) / (candidate optimal lr) that the two grids allow."""
    (ref_low, ref_high), (cand_low, cand_high) = optimum_range(reference), optimum_range(candidate)
    return ref_low / cand_high, (ref_high / cand_low if cand_low else math.inf)


def grid_step(rows: pd.DataFrame) -> float:
    """The lr grid's step: the largest ratio of two neighbouring lrs the rows tried (an lr band is stated in these
    steps, so that a grid can resolve it); 1 for a single lr."""
    lrs = sorted(rows["lr"].unique())
    return max((high / low for low, high in zip(lrs, lrs[1:])), default=1.0)


def interior(row: pd.Series) -> bool:
    """Whether the grid brackets the optimum: every lr within noise of the best lies inside its ends."""
    return row["lr_min"] < row["lr_low"] and row["lr_high"] < row["lr_max"]


def edge_text(name: str, row: pd.Series) -> str:
    if row["lr_min"] == row["lr_max"]:
        return f"{name}: only one learning rate tried ({row['best_lr']:g})"
    near = (
        f"best lr {row['best_lr']:g} is"
        if row["lr_low"] == row["lr_high"]
        else f"the lrs within noise of the best ({row['lr_low']:g}..{row['lr_high']:g}) reach"
    )
    return f"{name}: {near} at the edge of the grid [{row['lr_min']:g}, {row['lr_max']:g}]"


def common_values(tables: dict[str, pd.DataFrame]) -> list:
    """The index values (depths, batch sizes) that every model's table has, in order."""
    indexes = [set(table.index) for table in tables.values()]
    return sorted(set.intersection(*indexes)) if indexes else []


def batch_comparison(
    batch_size: int,
    rows: tuple[pd.Series, pd.Series],
    names: tuple[str, str],
    lr_verdict: Callable[[float, float], bool | None],
    gap: dict,
    gap_bounds: tuple[float, float],
) -> tuple[list[Finding], dict]:
    """The lr part and the accuracy part of comparing a reference with a candidate at one batch size.

    An optimum at the edge of the lr grid only bounds the optimal lr (and the accuracy there): the lr
    part gets the range of lr ratios the grids allow (`lr_verdict` decides it, or not), the accuracy
    part (the paired gap, inside `gap_bounds` or not) is decided only when both optima are interior.
    """
    reference, candidate = rows
    low, high = lr_ratio_range(reference, candidate)
    edges = "; ".join(edge_text(name, row) for name, row in zip(names, rows) if not interior(row))
    lr_text = (
        f"batch {batch_size}: best lr {reference['best_lr']:g} ({names[0]}) vs {candidate['best_lr']:g} ({names[1]})"
    )
    gap_text = f"batch {batch_size}: {names[0]} over {names[1]}"
    lr_holds = lr_verdict(low, high)
    gap_holds = within(gap, *gap_bounds)
    findings = [
        Finding(lr_holds, lr_text if lr_holds is not None else f"{lr_text}: {edges}"),
        (
            Finding(None, f"{gap_text} {gap['mean']:+.1f} pp, not decidable: {edges}")
            if edges
            else Finding(gap_holds, finding_text(gap_text, gap, gap_holds, *gap_bounds, gap.get("seconds_per_seed")))
        ),
    ]
    evidence = {
        names[0]: at_best(reference),
        names[1]: at_best(candidate),
        "lr_ratio_range": [low, high],
        "gap_pp": gap["mean"],
        "gap": gap,
    }
    return findings, evidence
