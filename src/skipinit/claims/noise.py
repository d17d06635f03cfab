"""Seed-noise floors measured from a results folder: the entries of the claims file's `noise: floors:`.

Per setting (`FLOOR_KEYS`) and lr, every model ran the same seeds: one model's accuracy spreads over
its seeds, and a paired gap between two models over the seeds they share (a model with a diverged seed at an
lr is left out there: a diverged run scores 0, which measures divergence, not seed noise). Each spread is pooled over
the models (or pairs) and lrs of the setting: sd = sqrt(sum of squared deviations / df). Degrees of
freedom count independent information only: m models on n seeds give m(n - 1) for accuracies and
(m - 1)(n - 1) for gaps (the m(m - 1)/2 pairs share their models), per lr.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from skipinit.runtable import scored, trained

FLOOR_KEYS = ("depth", "width", "batch_size", "epochs", "train_subset")  # what a floor's `where:` names
MODEL_KEYS = ("variant", "alpha_init", "dropout", "weight_decay", "ghost_batch_size")


def measure_floors(runs: pd.DataFrame, source: str) -> list[dict]:
    """One floor entry per setting of `runs` that has two or more seeds and two or more models."""
    floors = []
    for setting, rows in scored(trained(runs)).groupby(list(FLOOR_KEYS)):
        accuracy_ss = gap_ss = 0.0
        accuracy_df = gap_df = 0
        for _, at_lr in rows.groupby("lr"):
            # A model with a diverged seed at this lr is left out: its 0 beside a live run measures divergence, not
            # noise.
            per_model = {
                model: group.set_index("seed")["score"]
                for model, group in at_lr.groupby(list(MODEL_KEYS))
                if not group["diverged"].any()
            }
            seeds = sorted(set.intersection(*(set(scores.index) for scores in per_model.values())))
            if len(seeds) < 2 or len(per_model) < 2:
                continue
            for scores in per_model.values():
                accuracy_ss += float(((scores.loc[seeds] - scores.loc[seeds].mean()) ** 2).sum())
            pairs = list(itertools.combinations(per_model.values(), 2))
            for first, second in pairs:
                gap = first.loc[seeds] - second.loc[seeds]
                gap_ss += float(((gap - gap.mean()) ** 2).sum()) / len(pairs) * (len(per_model) - 1)
            accuracy_df += len(per_model) * (len(seeds) - 1)
            gap_df += (len(per_model) - 1) * (len(seeds) - 1)
        if accuracy_df:
            floors.append(
                {
                    "where": {key: int(value) for key, value in zip(FLOOR_KEYS, setting)},
                    "gap_sd_pp": round(math.sqrt(gap_ss / gap_df), 2),
                    "gap_df": gap_df,
                    "accuracy_sd_pp": round(math.sqrt(accuracy_ss / accuracy_df), 2),
                    "accuracy_df": accuracy_df,
                    "source": source,
                }
            )
    return floors
