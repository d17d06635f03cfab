"""Figures per experiment (PNG and PDF), drawn from runs.parquet and curves.parquet alone.

One figure per experiment, its form set by the experiment's kind:

- depth: test accuracy at the best lr against depth | test accuracy during training (best lr);
- batch_size, imagenet: test accuracy at the best lr against batch size | that best lr against
  batch size (the paper's Figure 3);
- regularization, generic: test accuracy against lr | test accuracy during training (best lr).

Accuracies are means over seeds with their standard deviation as error bars; diverged runs count
as 0. The signal-propagation figure (Figure 2) is `skipinit.signal.plot`'s, not drawn here.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from skipinit.fileio import atomic_path  # noqa: E402
from skipinit.report.aggregate import runs_of  # noqa: E402
from skipinit.report.tables import summary  # noqa: E402

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


def _per_model(table: pd.DataFrame, x: str, y: str, axis: plt.Axes, yerr: str | None = None) -> None:
    """One line per model (label), in the order the table lists them, with optional error bars."""
    colors = dict(zip(table["label"].unique(), sns.color_palette(n_colors=table["label"].nunique())))
    for label, rows in table.groupby("label", sort=False):
        rows = rows.sort_values(x)
        axis.errorbar(
            rows[x], rows[y], yerr=rows[yerr] if yerr else None, label=label, color=colors[label], marker="o", capsize=3
        )
    axis.set_xscale("log", base=2)
    values = sorted(table[x].unique())
    axis.set_xticks(values, labels=[f"{value:g}" for value in values], minor=False)
    axis.minorticks_off()
    axis.legend(fontsize="small")


def _curves(runs: pd.DataFrame, curves: pd.DataFrame, table: pd.DataFrame, axis: plt.Axes) -> None:
    """Test accuracy per epoch of the cells at each group's best lr."""
    keys = [column for column in ("label", "depth", "width", "batch_size") if column in table.columns]
    best = table.merge(runs, left_on=[*keys, "best_lr"], right_on=[*keys, "lr"])
    chosen = curves[curves["cell_id"].isin(best["cell_id"]) & curves["test_acc"].notna()]
    if chosen.empty:
        axis.text(0.5, 0.5, "no evaluated epochs", ha="center", transform=axis.transAxes)
    else:
        style = "depth" if chosen["depth"].nunique() > 1 else None
        sns.lineplot(data=chosen, x="epoch", y="test_acc", hue="label", style=style, ax=axis, errorbar=None)
    axis.set_title("test accuracy during training (best lr)")
    axis.set_ylabel("test accuracy (%)")


def plot_experiment(runs: pd.DataFrame, curves: pd.DataFrame, experiment: str, kind: str) -> plt.Figure:
    """The experiment's two panels for its kind (see the module docstring)."""
    table = summary(runs, experiment, kind)
    order = list(dict.fromkeys(runs_of(runs, experiment)["label"]))  # models as the profile lists them
    table = table.sort_values("label", key=lambda labels: labels.map(order.index), kind="stable")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    figure.suptitle(experiment if experiment == kind else f"{experiment} ({kind})")
    if table.empty:
        for axis in (left, right):
            axis.text(0.5, 0.5, "no runs", ha="center", transform=axis.transAxes)
    elif kind == "depth":
        _per_model(table, "depth", "test_acc_mean", left, yerr="test_acc_std")
        left.set(xlabel="depth (layers)", ylabel="test accuracy (%) at best lr")
        _curves(runs_of(runs, experiment), curves, table, right)
    elif kind in ("batch_size", "imagenet"):
        _per_model(table, "batch_size", "test_acc_mean", left, yerr="test_acc_std")
        left.set(xlabel="batch size", ylabel="test accuracy (%) at best lr")
        _per_model(table, "batch_size", "best_lr", right)
        right.set_yscale("log", base=2)
        right.set(xlabel="batch size", ylabel="best learning rate")
    else:
        scored = runs_of(runs, experiment).assign(test_acc=lambda f: f["test_acc"].fillna(0.0))
        sns.lineplot(
            data=scored, x="lr", y="test_acc", hue="label", hue_order=order, marker="o", errorbar="sd", ax=left
        )
        left.set_xscale("log", base=2)
        left.set(xlabel="learning rate", ylabel="test accuracy (%)")
        _curves(runs_of(runs, experiment), curves, table, right)
    figure.tight_layout()
    return figure


def write_all(results: Path, experiments: dict) -> list[Path]:
    """Every experiment's figure, from runs.parquet and curves.parquet in `results`."""
    runs = pd.read_parquet(results / "runs.parquet")
    curves = pd.read_parquet(results / "curves.parquet")
    written = []
    for experiment, meta in experiments.items():
        written += save(
            plot_experiment(runs, curves, experiment, meta.get("kind", "generic")), results / "figures" / experiment
        )
    return written
