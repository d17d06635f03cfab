"""Figure 2 of De & Smith (2020): per-block variances at initialization, from signal.parquet.

Three panels, each showing the whole curve of its subject next to the theory it tests:

- (a) linear, unnormalized: log2 of the variance (the values reach 2^999, which a log axis
  cannot autoscale in float64) against the theory line l - 1, i.e. Var = 2^(l-1);
- (b) linear, batch normalized: variance on a log axis against the theory Var(skip) = l and
  Var(branch) = 1;
- (c) convolutional, batch normalized: the same, against the linear law 1 + (l-1) c with c the
  mean measured branch variance (variances add because each branch is uncorrelated with its
  skip path); the skip path of the SkipInit conv net beside it, and the exploding unnormalized
  conv net in an inset with its own log2 axis so that it flattens nothing.

Panel (c) reads the skip path from ``skip_var_pooled`` (pooled over batch, channels and
positions, the paper's statistic) where signal.parquet has it, else from ``skip_var`` (the mean
of per-channel variances, what BN's moving variance estimates), and says which. The figure is the
Snakemake `signal` rule's output; `redraw` rebuilds it from signal.parquet alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from skipinit.report import style
from skipinit.report.provenance import provenance, seeds_text
from skipinit.runtable import read_profile_name
from skipinit.signal import FIGURE_STEM

POOLED = "skip_var_pooled"
STATISTICS = ("skip_var", "branch_var", "bn_moving_var", POOLED)
_LOOK = {
    "skip": {"color": "C0", "ls": "-", "lw": 2.0, "label": "skip path"},
    "branch": {"color": "C1", "ls": "-", "label": "residual branch"},
    "moving": {"color": "C2", "ls": ":", "lw": 1.6, "label": "BN moving variance"},
    "theory": {"color": "black", "ls": "--", "lw": 0.8, "label": "theory"},
    "skipinit": {"color": "C3", "ls": "-.", "label": "conv SkipInit: skip path"},
    "unnormalized": {"color": "C4", "ls": "-", "label": "conv unnormalized: skip path (inset)"},
}
_STATISTIC_TEXT = {
    POOLED: "(c) skip path: variance pooled over batch, channels and positions",
    "skip_var": "(c) skip path: mean over channels of the per-channel variance (what BN's moving variance estimates)",
}


def figure(frame: pd.DataFrame, profile: str) -> Figure:
    """Figure 2 from signal.parquet rows (means over seeds of each model's deepest net)."""
    skip_c = (
        POOLED
        if POOLED in frame and frame.loc[frame["model"].str.startswith("conv"), POOLED].notna().any()
        else "skip_var"
    )
    lines = [_provenance(frame, profile), _STATISTIC_TEXT[skip_c]]
    with style.column_style():
        fig, body = style.new_figure(2.3, "\n".join(lines))
        a, b, c = body.subplots(1, 3)
        drawn = set()
        _panel_a(a, _mean_over_seeds(frame, "linear-unnormalized"), drawn)
        _panel_b(b, _mean_over_seeds(frame, "linear-batchnorm"), drawn)
        _panel_c(c, frame, skip_c, drawn)
        for axes, title in zip(
            (a, b, c), ("(a) linear, unnormalized", "(b) linear + batch norm", "(c) conv + batch norm")
        ):
            axes.set_title(title)
            axes.set_xlabel("residual block $l$")
            axes.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        body.suptitle("Signal propagation at initialization (paper Figure 2)")
        handles = [Line2D([], [], **_LOOK[key]) for key in _LOOK if key in drawn]
        if handles:
            body.legend(handles=handles, loc="outside lower center", ncols=3)
    return fig


def plot(frame: pd.DataFrame, profile: str, path_png: str | os.PathLike, path_pdf: str | os.PathLike) -> None:
    """Write Figure 2 of `profile` (its name, for the provenance line) as PNG and PDF."""
    style.save_formats(figure(frame, profile), ((path_png, "png"), (path_pdf, "pdf")))


def _panel_a(axes: Axes, curves: pd.DataFrame, drawn: set) -> None:
    """log2 variance of the exploding linear net, and the line l - 1 of Var = 2^(l-1)."""
    axes.set_ylabel("log$_2$ variance")
    if _absent(axes, curves):
        return
    for statistic, key in (("skip_var", "skip"), ("branch_var", "branch")):
        curve = _positive(curves[statistic])
        axes.plot(curve.index, np.log2(curve.to_numpy()), **_LOOK[key])
        drawn.add(key)
    blocks = curves.index.to_numpy()
    _theory(axes, blocks, blocks - 1.0, drawn)
    _law(axes, "Var $= 2^{l-1}$", (0.04, 0.96, "left", "top"))


def _panel_b(axes: Axes, curves: pd.DataFrame, drawn: set) -> None:
    """The BN linear net on a log axis: skip path against l, branch against 1."""
    axes.set(yscale="log", ylabel="variance")
    if _absent(axes, curves):
        return
    _bn_curves(axes, curves, "skip_var", drawn)
    blocks = curves.index.to_numpy().astype(float)
    _theory(axes, blocks, blocks, drawn)
    _theory(axes, blocks, np.ones_like(blocks), drawn)
    _law(axes, "skip $l$, branch 1", (0.96, 0.4, "right", "center"))
    _readable_log_ticks(axes)


def _panel_c(axes: Axes, frame: pd.DataFrame, skip: str, drawn: set) -> None:
    """The BN conv net against the additive law, SkipInit beside it, the unnormalized net inset."""
    axes.set(yscale="log", ylabel="variance")
    curves = _mean_over_seeds(frame, "conv-batchnorm")
    if _absent(axes, curves):
        return
    _bn_curves(axes, curves, skip, drawn)
    blocks = curves.index.to_numpy().astype(float)
    slope = float(curves["branch_var"].mean())
    _theory(axes, blocks, 1 + (blocks - 1) * slope, drawn)
    _law(axes, f"$1+{slope:.2f}\\,(l-1)$", (0.97, 0.2, "right", "bottom"))
    skipinit = _mean_over_seeds(frame, "conv-skipinit")
    if not skipinit.empty:
        curve = _positive(skipinit[skip])
        axes.plot(curve.index, curve.to_numpy(), **_LOOK["skipinit"])
        drawn.add("skipinit")
    unnormalized = _mean_over_seeds(frame, "conv-unnormalized")
    if not unnormalized.empty:  # headroom above the curves (their top ends at 60% of the height) holds the inset
        low, high = axes.get_ylim()
        axes.set_ylim(low, high * (high / low) ** (2 / 3))
        inset = axes.inset_axes((0.14, 0.68, 0.44, 0.22))
        curve = _positive(unnormalized[skip])
        inset.plot(curve.index, np.log2(curve.to_numpy()), **_LOOK["unnormalized"])
        inset.set_title("unnormalized: log$_2$ var", fontsize=5.5, pad=2)
        inset.tick_params(labelsize=5, length=2, pad=1)
        inset.xaxis.set_major_locator(MaxNLocator(2, integer=True))
        inset.yaxis.set_major_locator(MaxNLocator(3, integer=True))
        inset.grid(False)
        drawn.add("unnormalized")
    _readable_log_ticks(axes)


def _readable_log_ticks(axes: Axes) -> None:
    """Plain numbers on a log axis; minor ticks labelled only where it spans less than a decade or so."""
    low, high = axes.get_ylim()
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    twos_and_fives = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")
    axes.yaxis.set_minor_formatter(twos_and_fives if high / low < 30 else NullFormatter())


def _bn_curves(axes: Axes, curves: pd.DataFrame, skip: str, drawn: set) -> None:
    for statistic, key in ((skip, "skip"), ("branch_var", "branch"), ("bn_moving_var", "moving")):
        curve = _positive(curves[statistic])
        if not curve.empty:
            axes.plot(curve.index, curve.to_numpy(), **_LOOK[key])
            drawn.add(key)


def _theory(axes: Axes, blocks: np.ndarray, values: np.ndarray, drawn: set) -> None:
    """A dashed theory line; drawn for reading, so not counted as data."""
    axes.plot(blocks, values, gid=style.GUIDE_GID, zorder=3, **_LOOK["theory"])
    drawn.add("theory")


def _law(axes: Axes, text: str, where: tuple[float, float, str, str]) -> None:
    """The theory's formula, at a place in the panel (axes fraction, alignment) its curves leave free."""
    x, y, ha, va = where
    axes.text(x, y, f"theory: {text}", transform=axes.transAxes, ha=ha, va=va, fontsize=6)


def _absent(axes: Axes, curves: pd.DataFrame) -> bool:
    if curves.empty:
        axes.text(0.5, 0.5, "not measured", ha="center", transform=axes.transAxes)
    return curves.empty


def _positive(curve: pd.Series) -> pd.Series:
    """The finite, positive values a log scale can draw (SkipInit's branch is exactly 0 at alpha = 0)."""
    return curve[np.isfinite(curve) & (curve > 0)]


def _provenance(frame: pd.DataFrame, profile: str) -> str:
    deepest = frame.groupby(frame["model"].str.split("-").str[0])["depth"].max()
    depths = ", ".join(f"{kind} nets {deepest[kind]} blocks" for kind in ("linear", "conv") if kind in deepest)
    return provenance(profile, "at initialization", depths, seeds_text(frame["seed"]) + ", mean shown")


def _mean_over_seeds(frame: pd.DataFrame, model_name: str) -> pd.DataFrame:
    """Statistics per block of the deepest ``model_name`` network in ``frame``, averaged over seeds."""
    rows = frame[frame["model"] == model_name]
    rows = rows[rows["depth"] == rows["depth"].max()]
    return rows.groupby("block")[[s for s in STATISTICS if s in rows]].mean()


def redraw(results: Path) -> list[Path]:
    """Figure 2 from `results`/signal.parquet, where the figure is missing or older than the table."""
    table = results / "signal.parquet"
    png = results / "figures" / f"{FIGURE_STEM}.png"
    if not table.exists() or (png.exists() and png.stat().st_mtime >= table.stat().st_mtime):
        return []
    pdf = png.with_suffix(".pdf")
    plot(pd.read_parquet(table), read_profile_name(table), png, pdf)
    return [png, pdf]
