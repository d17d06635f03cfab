"""Figures per experiment (seaborn; PNG and PDF), drawn from runs.parquet and curves.parquet alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from skipinit.aggregate import runs_of  # noqa: E402
from skipinit.fileio import atomic_path  # noqa: E402
from skipinit.tables import summary  # noqa: E402

FIGURE_FORMATS = ("png", "pdf")


def save(figure: plt.Figure, stem: Path) -> list[Path]:
    """Write `stem.png` and `stem.pdf` atomically."""
    paths = []
    for fmt in FIGURE_FORMATS:
        path = stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(figure)
    return paths


def _accuracy_vs(frame: pd.DataFrame, x: str, axis: plt.Axes, logx: bool) -> None:
    sns.lineplot(data=frame, x=x, y="test_acc_mean", hue="label", marker="o", ax=axis)
    for _, row in frame.iterrows():
        axis.errorbar(row[x], row["test_acc_mean"], yerr=row["test_acc_std"], color="gray", alpha=0.4, capsize=2)
    if logx:
        axis.set_xscale("log", base=2)
    axis.set_ylabel("test accuracy (%) at best lr")


def plot_experiment(runs: pd.DataFrame, curves: pd.DataFrame, experiment: str, kind: str) -> plt.Figure:
    """Left: the experiment's headline plot for its kind; right: test accuracy curves of the best cells."""
    table = summary(runs, experiment, kind)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if table.empty:
        left.text(0.5, 0.5, "no runs", ha="center")
    elif kind == "depth":
        _accuracy_vs(table, "depth", left, logx=True)
        left.set_xlabel("depth (layers)")
    elif kind in ("batch_size", "imagenet"):
        _accuracy_vs(table, "batch_size", left, logx=True)
        left.set_xlabel("batch size")
        twin = left.twinx()
        sns.lineplot(data=table, x="batch_size", y="best_lr", hue="label", linestyle="--", marker="s", ax=twin, legend=False)
        twin.set_yscale("log", base=2)
        twin.set_ylabel("best learning rate (dashed)")
    else:
        scored = runs_of(runs, experiment).assign(test_acc=lambda f: f["test_acc"].fillna(0.0))
        sns.lineplot(data=scored, x="lr", y="test_acc", hue="label", marker="o", errorbar="sd", ax=left)
        left.set_xscale("log", base=2)
        left.set_ylabel("test accuracy (%)")
    left.set_title(f"{experiment} ({kind})")
    best = table.merge(runs_of(runs, experiment), left_on=[*_keys(table), "best_lr"], right_on=[*_keys(table), "lr"])
    chosen = curves[curves["cell_id"].isin(best["cell_id"]) & curves["test_acc"].notna()]
    if chosen.empty:
        right.text(0.5, 0.5, "no evaluated epochs", ha="center")
    else:
        sns.lineplot(data=chosen, x="epoch", y="test_acc", hue="label", style="depth" if chosen["depth"].nunique() > 1 else None, ax=right, errorbar=None)
    right.set_title("test accuracy during training (best lr)")
    right.set_ylabel("test accuracy (%)")
    figure.tight_layout()
    return figure


def _keys(table: pd.DataFrame) -> list[str]:
    return [column for column in ("label", "depth", "width", "batch_size") if column in table.columns]


def write_all(results: Path, experiments: dict) -> list[Path]:
    runs = pd.read_parquet(results / "runs.parquet")
    curves = pd.read_parquet(results / "curves.parquet")
    written = []
    for experiment, meta in experiments.items():
        written += save(plot_experiment(runs, curves, experiment, meta.get("kind", "generic")), results / "figures" / experiment)
    return written
