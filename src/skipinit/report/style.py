"""The look every figure of the package shares: sized for a paper column, with room for a provenance line.

Figures are drawn at the width of a NeurIPS text column with 7 pt type, so that they read at the
size they would be printed; the PNG is rendered at 300 dpi. Figures are `matplotlib.figure.Figure`
objects (no pyplot state), returned to the caller and saved by `save`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager

import matplotlib
from matplotlib.figure import Figure, SubFigure

from skipinit.fileio import atomic_path

COLUMN_WIDTH_IN = 5.5  # the text width of a NeurIPS page
FIGURE_FORMATS = ("png", "pdf")
DPI = 300
RC = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "figure.titlesize": 8,
    "lines.linewidth": 1.1,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.9",
    "grid.linewidth": 0.5,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # editable text in the PDF
}
# Artists drawn for orientation, not data (theory lines, the lr grid): a panel of these alone is empty.
GUIDE_GID = "guide"
PROVENANCE_PT = 6


@contextmanager
def column_style():
    """The rc settings of `RC` while a figure is built (they are read when each artist is created)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(height_in: float, provenance_text: str, width_in: float = COLUMN_WIDTH_IN) -> tuple[Figure, SubFigure]:
    """A column-wide figure, its provenance small and grey along the bottom, and the subfigure to draw in.

    The provenance strip is a subfigure of its own so that constrained layout keeps the panels,
    their legend and the provenance apart. Call inside `column_style`.
    """
    strip_in = ((provenance_text.count("\n") + 1) * PROVENANCE_PT * 1.3 + 2) / 72
    figure = Figure(figsize=(width_in, height_in + strip_in), layout="constrained")
    body, strip = figure.subfigures(2, 1, height_ratios=[height_in, strip_in], hspace=0)
    strip.text(0.5, 0.5, provenance_text, ha="center", va="center", fontsize=PROVENANCE_PT, color="0.35")
    return figure, body


def save_formats(figure: Figure, paths: Iterable[tuple[str | os.PathLike, str]]) -> None:
    """Write `figure` to each (path, format) atomically."""
    for path, fmt in paths:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=DPI)
