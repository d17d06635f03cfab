"""From pack results to the paper's tables and figures: aggregate (runs/curves Parquet), tables, figures.

Figures, tables and claims read only the Parquet files that `aggregate` writes, so results can be
re-reported elsewhere without retraining. Figure 2 (signal propagation) is `skipinit.signal.plot`'s.
"""
