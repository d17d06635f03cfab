"""Tables in the paper's form: accuracy (mean +- std over seeds) at the best learning rate.

The best learning rate of a (model, depth, batch size) group is the one with the highest
mean final test accuracy over seeds; a diverged run counts as what it scored (NaN as 0),
so an lr that diverges on some seeds is not picked for its lucky ones.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skipinit.aggregate import runs_of
from skipinit.fileio import write_text

GROUP_KEYS = {
    "depth": ["label", "depth", "width", "batch_size"],
    "batch_size": ["label", "batch_size", "depth", "width"],
    "regularization": ["label", "depth", "width", "batch_size"],
    "imagenet": ["label", "batch_size"],
    "generic": ["label", "depth", "width", "batch_size"],
}
TABLE_FORMATS = ("md", "tex", "csv")


def best_lr_summary(runs: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """One row per group: the best lr, accuracy mean/std/count over seeds there, and how many runs diverged."""
    if runs.empty:
        return pd.DataFrame(columns=[*group, "best_lr", "test_acc_mean", "test_acc_std", "seeds", "diverged_runs", "lrs_tried"])
    scored = runs.assign(score=runs["test_acc"].fillna(0.0))
    per_lr = scored.groupby([*group, "lr"], dropna=False).agg(
        test_acc_mean=("score", "mean"), test_acc_std=("score", "std"), seeds=("seed", "nunique"), diverged_runs=("diverged", "sum")
    ).reset_index()
    best = per_lr.loc[per_lr.groupby(group, dropna=False)["test_acc_mean"].idxmax()].rename(columns={"lr": "best_lr"})
    best["lrs_tried"] = best.apply(lambda row: int((per_lr[group] == row[group]).all(axis=1).sum()), axis=1)
    best["test_acc_std"] = best["test_acc_std"].fillna(0.0)
    return best.sort_values(group).reset_index(drop=True)


def summary(runs: pd.DataFrame, experiment: str, kind: str) -> pd.DataFrame:
    return best_lr_summary(runs_of(runs, experiment), GROUP_KEYS.get(kind, GROUP_KEYS["generic"]))


def paper_form(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Wide table as in the paper: rows are models, columns the varied setting, cells `acc +- std (lr)`."""
    if frame.empty:
        return pd.DataFrame({"model": []})
    column = {"depth": "depth", "batch_size": "batch_size", "imagenet": "batch_size"}.get(kind)
    text = frame.apply(lambda r: f"{r.test_acc_mean:.1f} ± {r.test_acc_std:.1f} (lr {r.best_lr:g})", axis=1)
    frame = frame.assign(cell=text)
    if column is None:
        return frame[["label", "depth", "batch_size", "cell"]].rename(columns={"label": "model", "cell": "test accuracy % (best lr)"})
    wide = frame.pivot_table(index="label", columns=column, values="cell", aggfunc="first")
    wide.columns = [f"{column} {value}" for value in wide.columns]
    return wide.reset_index().rename(columns={"label": "model"})


def render(frame: pd.DataFrame, fmt: str, caption: str) -> str:
    if fmt == "md":
        return f"{caption}\n\n" + frame.to_markdown(index=False) + "\n"
    if fmt == "tex":
        return frame.to_latex(index=False, caption=caption, escape=True) + "\n"
    if fmt == "csv":
        return frame.to_csv(index=False)
    raise ValueError(f"unknown table format {fmt!r}")


def write_all(results: Path, experiments: dict) -> list[Path]:
    """Every experiment's table in Markdown, LaTeX and CSV (the CSV is the long, machine-readable form)."""
    runs = pd.read_parquet(results / "runs.parquet")
    written = []
    for experiment, meta in experiments.items():
        kind = meta.get("kind", "generic")
        frame = summary(runs, experiment, kind)
        caption = f"{experiment}: final test accuracy (%), mean ± std over seeds at the best learning rate. {meta.get('description', '')}".strip()
        for fmt in TABLE_FORMATS:
            path = results / "tables" / f"{experiment}.{fmt}"
            content = render(frame if fmt == "csv" else paper_form(frame, kind), fmt, caption)
            write_text(path, content)
            written.append(path)
    return written

