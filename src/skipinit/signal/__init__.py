"""Signal propagation at initialization (Figure 2): `measure` the per-block variances, `plot` them.

Kept apart so that drawing the figure from signal.parquet needs no torch.
"""

from skipinit.vocab import SIGNAL_FIGURE_STEM as FIGURE_STEM  # noqa: F401  (the signal rule's figure name)
