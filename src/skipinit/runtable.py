"""runs.parquet as a table: which rows belong to an experiment, what a run scored, the best lr per setting;
and the metadata every results Parquet file carries (the profile's name, the experiments' kinds).

Below both the reports (`report`) and the verdicts (`claims`), which select runs alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skipinit.fileio import atomic_path
from skipinit.record import FAILED

METADATA_KEY = b"skipinit.experiments"  # the experiments' kinds and descriptions, in runs.parquet's metadata
PROFILE_KEY = b"skipinit.profile"  # the profile's name, in the metadata of runs, curves and signal Parquet files


def read_experiment_meta(runs_path: str | Path) -> dict:
    metadata = pq.read_schema(runs_path).metadata or {}
    return json.loads(metadata.get(METADATA_KEY, b"{}"))


def read_profile_name(path: str | Path) -> str:
    """The profile a Parquet file was written for, from its metadata (for figure provenance lines)."""
    name = (pq.read_schema(path).metadata or {}).get(PROFILE_KEY)
    if name is None:
        raise ValueError(
            f"{path} does not say which profile wrote it (written by an older version): rebuild it with "
            "the workflow (make run)"
        )
    return name.decode()


def write_parquet(
    frame: pd.DataFrame,
    path: str | Path,
    profile: str,
    schema: pa.Schema | None = None,
    metadata: dict[bytes, bytes] | None = None,
) -> None:
    """`frame` as Parquet at `path` (atomically), in `schema` where given, with the profile's name in its metadata."""
    table = pa.Table.from_pandas(frame if schema is None else frame[schema.names], schema=schema, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), PROFILE_KEY: profile.encode(), **(metadata or {})}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# What figures and claims read of curves.parquet: the evaluated points of each run.
CURVE_COLUMNS = ["cell_id", "label", "seed", "epoch", "step", "test_acc"]


def read_curves(path: str | Path) -> pd.DataFrame:
    """curves.parquet's evaluated points (test accuracy measured), in the columns figures and claims read: a sweep's
    whole rows (10^5 cells x 200 epochs x every setting) would not fit in memory, these do."""
    table = pq.read_table(path, columns=CURVE_COLUMNS, filters=pc.field("test_acc").is_valid())
    return table.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)


def runs_of(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment."""
    return runs[runs["experiments"].map(lambda names: experiment in list(names))]


def trained(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are evidence about training: all but those that failed for another reason (out of
    memory, a device error: status `failed`), which no table, figure or claim scores."""
    return runs[runs["status"] != FAILED] if "status" in runs else runs


def failed(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that failed for a reason other than training (status `failed`)."""
    return runs[runs["status"] == FAILED] if "status" in runs else runs.iloc[:0]


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
        scored(runs)
        .groupby([*group, "lr"], dropna=False)
        .agg(
            test_acc_mean=("score", "mean"),
            test_acc_std=("score", "std"),
            seeds=("seed", "nunique"),
            diverged_runs=("diverged", "sum"),
        )
        .reset_index()
    )
    per_lr["lrs_tried"] = per_lr.groupby(group, dropna=False)["lr"].transform("count")
    best = per_lr.loc[per_lr.groupby(group, dropna=False)["test_acc_mean"].idxmax()].rename(columns={"lr": "best_lr"})
    best["test_acc_std"] = best["test_acc_std"].fillna(0.0)
    return best.sort_values(group).reset_index(drop=True)
