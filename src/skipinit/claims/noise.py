"""Seed-noise floors measured from a results folder: the entries of the claims file's `noise: floors:`.

Per setting (`FLOOR_KEYS`: the cell settings, the test images read and the precision) and lr, every model ran
the same seeds: one model's accuracy spreads over its seeds, and a paired gap between two models over the seeds
they share (a model with a diverged seed at an lr is left out there: a diverged run scores 0, which measures
divergence, not seed noise). Per setting and model, one model's score at one lr minus another lr spreads over the
seeds both lrs share: the lr-difference floor of the near-best lr sets. Each spread is pooled over the models (or
pairs) and lrs of the setting: sd = sqrt(sum of squared deviations / df). Degrees of freedom count independent
information only: m models on n seeds give m(n - 1) for accuracies and (m - 1)(n - 1) for gaps (the m(m - 1)/2
pairs share their models), per lr; k lrs give (k - 1)(n - 1) for lr differences, per model.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from skipinit.runtable import scored, trained

FLOOR_KEYS = ("depth", "width", "batch_size", "epochs", "train_subset", "test_images", "precision")
MODEL_KEYS = ("variant", "alpha_init", "dropout", "weight_decay", "ghost_batch_size")


def spread_of_differences(series: list[pd.Series], seeds: list) -> tuple[float, int]:
    """(sum of squares, df) of the paired differences among `series` on `seeds`, pooled over their pairs."""
    pairs = list(itertools.combinations(series, 2))
    squares = 0.0
    for first, second in pairs:
        gap = first.loc[seeds] - second.loc[seeds]
        squares += float(((gap - gap.mean()) ** 2).sum()) / len(pairs) * (len(series) - 1)
    return squares, (len(series) - 1) * (len(seeds) - 1)


def live_scores(rows: pd.DataFrame, keys) -> dict:
    """Per group of `keys`, the scores by seed, groups with a diverged seed left out."""
    return {
        name: group.set_index("seed")["score"]
        for name, group in rows.groupby(list(keys))
        if not group["diverged"].any()
    }


def common_seeds(series: dict) -> list:
    return sorted(set.intersection(*(set(scores.index) for scores in series.values()))) if series else []


def measure_floors(runs: pd.DataFrame, source: str) -> list[dict]:
    """One floor entry per setting of `runs` that has two or more seeds and two or more models (with an lr-difference
    floor where a model ran two or more lrs)."""
    floors = []
    for setting, rows in scored(trained(runs)).groupby(list(FLOOR_KEYS)):
        accuracy_ss = gap_ss = lr_ss = 0.0
        accuracy_df = gap_df = lr_df = 0
        for _, at_lr in rows.groupby("lr"):
            per_model = live_scores(at_lr, MODEL_KEYS)
            seeds = common_seeds(per_model)
            if len(seeds) < 2 or len(per_model) < 2:
                continue
            for scores in per_model.values():
                accuracy_ss += float(((scores.loc[seeds] - scores.loc[seeds].mean()) ** 2).sum())
            squares, df = spread_of_differences(list(per_model.values()), seeds)
            gap_ss, gap_df, accuracy_df = gap_ss + squares, gap_df + df, accuracy_df + len(per_model) * (len(seeds) - 1)
        for _, model_rows in rows.groupby(list(MODEL_KEYS)):
            per_lr = live_scores(model_rows, ["lr"])
            seeds = common_seeds(per_lr)
            if len(seeds) >= 2 and len(per_lr) >= 2:
                squares, df = spread_of_differences(list(per_lr.values()), seeds)
                lr_ss, lr_df = lr_ss + squares, lr_df + df
        if accuracy_df:
            where = {key: (value if key == "precision" else int(value)) for key, value in zip(FLOOR_KEYS, setting)}
            floors.append(
                {
                    "where": where,
                    "gap_sd_pp": round(math.sqrt(gap_ss / gap_df), 2),
                    "gap_df": gap_df,
                    "accuracy_sd_pp": round(math.sqrt(accuracy_ss / accuracy_df), 2),
                    "accuracy_df": accuracy_df,
                    **({"lr_gap_sd_pp": round(math.sqrt(lr_ss / lr_df), 2), "lr_gap_df": lr_df} if lr_df else {}),
                    "source": source,
                }
            )
    return floors
