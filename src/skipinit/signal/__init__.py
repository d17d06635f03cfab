"""Signal propagation at initialization (Figure 2): `measure` the per-block variances, `plot` them.

Kept apart so that drawing the figure from signal.parquet needs no torch.
"""

FIGURE_STEM = "signal_propagation"  # results/<name>/figures/<stem>.{png,pdf}, the signal rule's outputs
