"""Figures per experiment (PNG and PDF) in the paper's form, drawn from runs.parquet and curves.parquet alone.

One figure per experiment, two panels set by the experiment's kind:

- depth, trainability: (a) test accuracy at the best lr against depth (the paper's Table 1 as a
  plot); (b) for depth, test accuracy during training of the deepest nets at their best lr, for
  trainability (many depths, few lrs) the best lr against depth over the lr grid;
- batch_size, imagenet: (a) test accuracy at the best lr against batch size; (b) that best lr
  against batch size, every lr tried drawn as a grey tick (the paper's Figure 3);
- regularization: (a) test accuracy against lr; (b) test accuracy at the best lr per model (the
  paper's Table 2), against batch size where the experiment has several;
- generic: (a) test accuracy against lr; (b) test accuracy during training at the best lr.

Accuracies are means over seeds with the standard deviation as error bars (none from one seed);
a diverged run scores 0 (`runtable.scored`), and a point whose runs all diverged carries a black
cross. A best lr on the edge of its grid (more than one lr tried) is a triangle pointing off
the grid: the true optimum may lie beyond. Series that coincide are dodged sideways a little on
log axes, so none hides another. Each figure ends with a provenance line (profile, dataset,
network, epochs, batch size, lr grid, seeds). Figure 2 is `skipinit.signal.plot`'s.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from skipinit.report import provenance, style
from skipinit.report.tables import GROUP_KEYS, summary
from skipinit.runtable import read_curves, read_experiment_meta, read_profile_name, runs_of, scored, trained

TITLES = {
    "depth": "Depth: which models train as depth grows (paper Table 1)",
    "trainability": "Trainability: accuracy against depth",
    "batch_size": "Batch size: accuracy and best learning rate (paper Figure 3)",
    "imagenet": "ImageNet: accuracy and best learning rate against batch size",
    "regularization": "Regularization: SkipInit (with its regularized variants) against batch norm (paper Table 2)",
    "generic": "Test accuracy against learning rate",
}
DEPTH_KINDS = ("depth", "trainability")
BATCH_KINDS = ("batch_size", "imagenet")
MARKERS = ("o", "s", "D", "^", "v", "P", "<", ">", "p", "h", "*")
DODGE_LOG2 = 0.3  # total sideways spread of the series on a log2 axis, in octaves
ACCURACY = "test accuracy (%)"
SETTING_KEYS = ("depth", "width", "batch_size")
SETTING_NAMES = {"depth": "depth", "width": "width", "batch_size": "batch"}
LINESTYLES = ("-", "--", ":", "-.")
AT_BEST_LR = "test accuracy (%) at best lr"


def _styles(labels: list[str]) -> dict[str, dict]:
    """A colour and marker per model, the same in both panels."""
    colors = sns.color_palette("colorblind", n_colors=max(len(labels), 1))
    return {label: {"color": colors[i], "marker": MARKERS[i % len(MARKERS)]} for i, label in enumerate(labels)}


def _dodged(x: pd.Series, index: int, count: int) -> pd.Series:
    """`x` shifted by a fraction of an octave for series `index` of `count`, centred on the true value."""
    if count < 2:
        return x
    return x * 2.0 ** ((index / (count - 1) - 0.5) * DODGE_LOG2)


def _log2_ticks(axis: Axes, which: str, values) -> None:
    """A log2 axis ticked at exactly the values tried, labelled as numbers."""
    values = sorted(set(values))
    if which == "x":
        axis.set_xscale("log", base=2)
        axis.set_xticks(values, labels=[f"{v:g}" for v in values])
    else:
        axis.set_yscale("log", base=2)
        axis.set_yticks(values, labels=[f"{v:g}" for v in values])
    axis.minorticks_off()


class _Marks:
    """Which special marks a figure drew, for its legend."""

    def __init__(self) -> None:
        self.diverged = self.edge = False
        self.settings: list[tuple[str, str]] = []  # (setting, line style) where lines differ by setting

    def handles(self) -> list[Line2D]:
        handles = [Line2D([], [], color="0.3", ls=ls, label=text) for text, ls in self.settings]
        if self.diverged:
            handles.append(Line2D([], [], ls="none", marker="x", color="black", ms=5, label="all seeds diverged"))
        if self.edge:
            handles.append(
                Line2D([], [], ls="none", marker="^", mfc="none", color="0.3", ms=7, label="best lr on the grid's edge")
            )
        return handles


def _cross_diverged(axis: Axes, x, y, dead, marks: _Marks) -> None:
    if dead.any():
        axis.plot(x[dead], y[dead], ls="none", marker="x", color="black", ms=5, mew=1.1, zorder=5)
        marks.diverged = True


def _against(table: pd.DataFrame, x: str, y: str, axis: Axes, styles: dict, marks: _Marks, errors: bool) -> None:
    """One dodged line per model of `y` against `x` (log2), error bars over seeds, crosses where all runs diverged."""
    present = [label for label in styles if label in set(table["label"])]
    for i, label in enumerate(present):
        rows = table[table["label"] == label].sort_values(x)
        xs = _dodged(rows[x].astype(float), i, len(present))
        spread = rows["test_acc_std"] if errors and (rows["seeds"] > 1).any() else None
        axis.errorbar(xs, rows[y], yerr=spread, label=label, **styles[label])
        _cross_diverged(axis, xs, rows[y], rows["diverged_runs"] >= rows["seeds"], marks)
        if y == "best_lr":
            _mark_edges(axis, xs, rows, styles[label]["color"], marks)
    _log2_ticks(axis, "x", table[x])
    if table[x].nunique() == 1:  # one value (a study at one depth): an octave each side, so the dodge stays small
        value = float(table[x].iloc[0])
        axis.set_xlim(value / 2, value * 2)


def _mark_edges(axis: Axes, xs: pd.Series, rows: pd.DataFrame, color, marks: _Marks) -> None:
    """Triangles pointing off the grid where the best lr is the grid's largest (up) or smallest (down)."""
    tuned = rows["lrs_tried"] > 1
    for side, marker in (("lr_max", "^"), ("lr_min", "v")):
        edge = tuned & (rows["best_lr"] == rows[side])
        if edge.any():
            axis.plot(xs[edge], rows["best_lr"][edge], ls="none", marker=marker, mfc="none", mec=color, ms=9, mew=1)
            marks.edge = True


def _lr_grid(axis: Axes, runs: pd.DataFrame, x: str) -> None:
    """Every lr tried at each value of `x`, as grey ticks: the grid the best lr was picked from."""
    tried = runs[[x, "lr"]].drop_duplicates()
    axis.plot(tried[x], tried["lr"], ls="none", marker="_", ms=10, mew=1.5, color="0.6", zorder=1, gid=style.GUIDE_GID)
    _log2_ticks(axis, "y", tried["lr"])
    axis.grid(False, axis="y")  # the grey ticks are the lr grid
    axis.margins(y=0.1)  # room for the edge triangles


def _accuracy_against_lr(runs: pd.DataFrame, axis: Axes, styles: dict, marks: _Marks) -> None:
    """Final test accuracy (mean +- std over seeds, diverged as scored) against lr, a dodged line per model.

    Where the experiment also varies depth, width or batch size, each setting gets its own line
    style: seeds are averaged, settings never.
    """
    runs = scored(runs)
    varied = [key for key in SETTING_KEYS if runs[key].nunique() > 1]
    settings = sorted(runs[varied].drop_duplicates().itertuples(index=False, name=None)) if varied else [()]
    present = [label for label in styles if label in set(runs["label"])]
    for i, label in enumerate(present):
        for j, setting in enumerate(settings):
            rows = runs[runs["label"] == label]
            for key, value in zip(varied, setting):
                rows = rows[rows[key] == value]
            if rows.empty:
                continue
            per_lr = (
                rows.groupby("lr")
                .agg(mean=("score", "mean"), std=("score", "std"), dead=("diverged", "all"), seeds=("seed", "nunique"))
                .reset_index()
            )
            xs = _dodged(per_lr["lr"], i, len(present))
            spread = per_lr["std"].fillna(0.0) if (per_lr["seeds"] > 1).any() else None
            look = {**styles[label], "ls": LINESTYLES[j % len(LINESTYLES)]}
            axis.errorbar(xs, per_lr["mean"], yerr=spread, label=label, **look)
            _cross_diverged(axis, xs, per_lr["mean"], per_lr["dead"], marks)
    if varied:
        marks.settings = [(_setting_text(varied, s), LINESTYLES[j % len(LINESTYLES)]) for j, s in enumerate(settings)]
    _log2_ticks(axis, "x", runs["lr"])
    axis.set(xlabel="learning rate", ylabel=ACCURACY)


def _setting_text(keys: list[str], values: tuple) -> str:
    return ", ".join(f"{SETTING_NAMES[key]} {value:g}" for key, value in zip(keys, values))


def _best_per_model(table: pd.DataFrame, axis: Axes, styles: dict, marks: _Marks) -> None:
    """Accuracy at the best lr, a row per model (the paper's table as a dot plot)."""
    present = [label for label in styles if label in set(table["label"])]
    for row_index, label in enumerate(present):
        row = table[table["label"] == label].iloc[0]
        spread = row["test_acc_std"] if row["seeds"] > 1 else None
        axis.errorbar([row["test_acc_mean"]], [row_index], xerr=spread, label=label, **styles[label])
        dead = pd.Series([row["diverged_runs"] >= row["seeds"]])
        _cross_diverged(axis, pd.Series([row["test_acc_mean"]]), pd.Series([row_index]), dead, marks)
        edge = " (grid edge)" if _on_edge(row.to_frame().T).iloc[0] else ""
        axis.annotate(
            f"lr {row['best_lr']:g}{edge}",
            (row["test_acc_mean"], row_index),
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            fontsize=6,
        )
    axis.set_yticks(range(len(present)), labels=present)
    axis.set_ylim(len(present) - 0.5, -0.6)
    axis.set(xlabel=AT_BEST_LR)
    axis.margins(x=0.15)


def _curves(
    runs: pd.DataFrame, curves: pd.DataFrame, table: pd.DataFrame, axis: Axes, styles: dict, marks: _Marks
) -> str:
    """Test accuracy per evaluated epoch (mean over seeds) of each model's best-lr cells; returns the setting shown."""
    keys = [column for column in ("label", "depth", "width", "batch_size") if column in table.columns]
    best = table.merge(runs, left_on=[*keys, "best_lr"], right_on=[*keys, "lr"])
    shown = ""
    if best["depth"].nunique() > 1:  # the deepest nets, where the models part
        best = best[best["depth"] == best["depth"].max()]
        shown = f", depth {best['depth'].max()}"
    chosen = curves[curves["cell_id"].isin(best["cell_id"]) & curves["test_acc"].notna()]
    if chosen.empty:
        axis.text(0.5, 0.5, "no evaluated epochs", ha="center", transform=axis.transAxes)
        return shown
    for label in styles:
        rows = chosen[chosen["label"] == label]
        if rows.empty:
            continue
        per_epoch = rows.groupby("epoch")["test_acc"].agg(["mean", "std"]).reset_index()
        axis.plot(per_epoch["epoch"], per_epoch["mean"], label=label, **styles[label])
        if best.loc[best["label"] == label, "diverged"].all():  # its curve ends where it diverged
            last = per_epoch.tail(1)
            _cross_diverged(axis, last["epoch"], last["mean"], pd.Series([True], index=last.index), marks)
        if rows["seed"].nunique() > 1:
            low, high = per_epoch["mean"] - per_epoch["std"], per_epoch["mean"] + per_epoch["std"]
            axis.fill_between(per_epoch["epoch"], low, high, color=styles[label]["color"], alpha=0.2, lw=0)
    axis.set_xlim(0, max(runs["epochs"].max(), chosen["epoch"].max()) + 0.3)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set(xlabel="epoch", ylabel=ACCURACY)
    return shown


def _lr_range(runs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per summary group: the smallest and largest lr tried."""
    group = GROUP_KEYS.get(kind, GROUP_KEYS["generic"])
    return runs.groupby(group, dropna=False)["lr"].agg(lr_min="min", lr_max="max").reset_index()


def caption(profile: str, runs: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    """The provenance line of an experiment's figure, from its runs (and how many best lrs sit on a grid edge)."""
    line = provenance.experiment_line(profile, runs.to_dict("records"))
    note = _edge_note(table)
    return f"{line}\n{note}" if note else line


def _on_edge(table: pd.DataFrame) -> pd.Series:
    """Groups whose best lr is the smallest or largest of several tried."""
    return (table["lrs_tried"] > 1) & ((table["best_lr"] == table["lr_max"]) | (table["best_lr"] == table["lr_min"]))


def _edge_note(table: pd.DataFrame | None) -> str:
    if table is None or table.empty or "lr_max" not in table:
        return ""
    edge = int(_on_edge(table).sum())
    if not edge:
        return ""
    return f"best lr on the edge of the lr grid in {edge} of {len(table)} settings: the optimum may lie beyond"


def plot_experiment(runs: pd.DataFrame, curves: pd.DataFrame, experiment: str, kind: str, profile: str) -> Figure:
    """The experiment's two panels for its kind (see the module docstring), with its provenance line."""
    mine = runs_of(runs, experiment)
    table = summary(runs, experiment, kind)
    order = list(dict.fromkeys(mine["label"]))  # models as the profile lists them
    styles = _styles(order)
    if not table.empty:
        table = table.merge(_lr_range(mine, kind), how="left")
    marks = _Marks()
    with style.column_style():
        figure, body = style.new_figure(2.9, caption(profile, mine, table))
        dot_plot = kind == "regularization" and table["batch_size"].nunique() == 1  # (b) needs room for model names
        left, right = body.subplots(1, 2, width_ratios=(0.8, 1.2) if dot_plot else (1, 1))
        title = TITLES.get(kind, TITLES["generic"])
        body.suptitle(title if experiment == kind else f"{experiment}: {title}")
        right_title = ""
        if table.empty:
            for axis in (left, right):
                axis.text(0.5, 0.5, "no runs", ha="center", transform=axis.transAxes)
        elif kind in DEPTH_KINDS:
            _against(table, "depth", "test_acc_mean", left, styles, marks, errors=True)
            left.set(xlabel="depth (layers)", ylabel=AT_BEST_LR)
            if kind == "trainability":  # a sweep of many depths: which lr still trains each one
                _lr_grid(right, mine, "depth")
                _against(table, "depth", "best_lr", right, styles, marks, errors=False)
                right.set(xlabel="depth (layers)", ylabel="best learning rate")
                right_title = "best lr (grey: lrs tried)"
            else:
                right_title = "during training" + _curves(mine, curves, table, right, styles, marks) + " (best lr)"
        elif kind in BATCH_KINDS:
            _against(table, "batch_size", "test_acc_mean", left, styles, marks, errors=True)
            left.set(xlabel="batch size", ylabel=AT_BEST_LR)
            _lr_grid(right, mine, "batch_size")
            _against(table, "batch_size", "best_lr", right, styles, marks, errors=False)
            right.set(xlabel="batch size", ylabel="best learning rate")
            right_title = "best lr (grey: lrs tried)"
        elif kind == "regularization":
            _accuracy_against_lr(mine, left, styles, marks)
            if not dot_plot:
                _against(table, "batch_size", "test_acc_mean", right, styles, marks, errors=True)
                right.set(xlabel="batch size", ylabel=AT_BEST_LR)
            else:
                _best_per_model(table, right, styles, marks)
            right_title = "at the best lr"
        else:
            _accuracy_against_lr(mine, left, styles, marks)
            right_title = "during training" + _curves(mine, curves, table, right, styles, marks) + " (best lr)"
        left.set_title("(a)", loc="left")
        right.set_title(f"(b) {right_title}".strip(), loc="left")
        handles = [Line2D([], [], label=label, **styles[label]) for label in order] + marks.handles()
        if handles:
            body.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)))
    return figure


def write_figure(runs_path: Path, curves_path: Path, experiment: str, png: Path, pdf: Path) -> list[Path]:
    """One experiment's figure from runs.parquet and curves.parquet; its kind and the profile from runs.parquet's
    metadata."""
    runs, curves = trained(pd.read_parquet(runs_path)), read_curves(curves_path)
    kind = read_experiment_meta(runs_path)[experiment]["kind"]
    figure = plot_experiment(runs, curves, experiment, kind, profile=read_profile_name(runs_path))
    style.save_formats(figure, ((png, "png"), (pdf, "pdf")))
    return [Path(png), Path(pdf)]
