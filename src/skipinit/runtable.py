"""runs.parquet as a table: which rows belong to an experiment, what a run scored, the best lr per setting.

Below both the reports (`report`) and the verdicts (`claims`), which select runs alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

METADATA_KEY = b"skipinit.experiments"  # the experiments' kinds and descriptions, in runs.parquet's metadata


def read_experiment_meta(runs_path: str | Path) -> dict:
    metadata = pq.read_schema(runs_path).metadata or {}
    return json.loads(metadata.get(METADATA_KEY, b"{}"))


def runs_of(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment."""
    return runs[runs["experiments"].map(lambda names: experiment in list(names))]


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with `score`: the final test accuracy, 0 for a run that diverged or has none.

    The engine still evaluates a diverged member (its NaN logits give chance accuracy), so the
    divergence flag, not a missing accuracy, decides.
    """
    return runs.assign(score=runs["test_acc"].where(~runs["diverged"].astype(bool), 0.0).fillna(0.0))


def best_lr_summary(runs: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """One row per group: the best lr, accuracy mean/std/count over seeds there, and how many runs diverged."""
    if runs.empty:
        return pd.DataFrame(
            columns=[*group, "best_lr", "test_acc_mean", "test_acc_std", "seeds", "diverged_runs", "lrs_tried"]
        )
    per_lr = (
        scored(runs).groupby([*group, "lr"], dropna=False)
        .agg(
            test_acc_mean=("score", "mean"),
            test_acc_std=("score", "std"),
            seeds=("seed", "nunique"),
            diverged_runs=("diverged", "sum"),
        )
        .reset_index()
    )
    best = per_lr.loc[per_lr.groupby(group, dropna=False)["test_acc_mean"].idxmax()].rename(columns={"lr": "best_lr"})
    best["lrs_tried"] = best.apply(lambda row: int((per_lr[group] == row[group]).all(axis=1).sum()), axis=1)
    best["test_acc_std"] = best["test_acc_std"].fillna(0.0)
    return best.sort_values(group).reset_index(drop=True)
