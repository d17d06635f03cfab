"""Figure 2 of De & Smith (2020): per-block variances at initialization, from signal.parquet.

The figure is the Snakemake `signal` rule's output; `redraw` lets `python -m skipinit report`
rebuild it from signal.parquet alone where results were copied without it.
"""

import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from skipinit.fileio import atomic_path
from skipinit.signal import FIGURE_STEM

_STATISTICS = {"skip_var": "skip path", "branch_var": "residual branch", "bn_moving_var": "BN moving variance"}
_STYLES = {"skip_var": "-", "branch_var": "-", "bn_moving_var": ":"}  # the moving variance traces the skip path
_PANELS = (
    ("(a) linear, unnormalized", "linear-unnormalized", ("skip_var", "branch_var"), ()),
    ("(b) linear, batch normalized", "linear-batchnorm", ("skip_var", "branch_var", "bn_moving_var"), ()),
    (
        "(c) convolutional, batch normalized",
        "conv-batchnorm",
        ("skip_var", "branch_var", "bn_moving_var"),
        ("conv-skipinit", "conv-unnormalized"),
    ),
)


def plot(frame: pd.DataFrame, path_png: str | os.PathLike, path_pdf: str | os.PathLike) -> None:
    """Three panels like the paper's Figure 2: per-block variances (mean over seeds) on a log scale.

    Each panel shows its model's deepest network; panel (c) adds the skip-path variance of the
    contrast conv nets, dashed. Zero variances (SkipInit's branch at alpha = 0) cannot be drawn.
    """
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    for axes, (title, main, statistics, contrasts) in zip(figure.subplots(1, 3), _PANELS):
        curves = _mean_over_seeds(frame, main)
        for statistic in statistics:
            curve = curves[statistic][curves[statistic] > 0]
            axes.plot(curve.index, curve.to_numpy(), _STYLES[statistic], label=_STATISTICS[statistic])
        for contrast in contrasts:
            curve = _mean_over_seeds(frame, contrast)["skip_var"]
            axes.plot(curve.index, curve.to_numpy(), "--", label=f"{contrast}: skip path")
        axes.set(title=title, xlabel="residual block", ylabel="variance", yscale="log")
        if axes.lines:
            axes.legend(fontsize="small")
    for path, format in ((path_png, "png"), (path_pdf, "pdf")):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=format)


def _mean_over_seeds(frame: pd.DataFrame, model_name: str) -> pd.DataFrame:
    """Statistics per block of the deepest ``model_name`` network in ``frame``, averaged over seeds."""
    rows = frame[frame["model"] == model_name]
    rows = rows[rows["depth"] == rows["depth"].max()]
    return rows.groupby("block")[list(_STATISTICS)].mean()


def redraw(results: Path) -> list[Path]:
    """Figure 2 from `results`/signal.parquet, where the figure is missing or older than the table."""
    table = results / "signal.parquet"
    png = results / "figures" / f"{FIGURE_STEM}.png"
    if not table.exists() or (png.exists() and png.stat().st_mtime >= table.stat().st_mtime):
        return []
    pdf = png.with_suffix(".pdf")
    plot(pd.read_parquet(table), png, pdf)
    return [png, pdf]
