"""Calibration of the verdict rule: it decides no more often than its 95% interval allows.

(a) A/A: one model under two names, seeds drawn independently, through the real checks (best lr
picked per model, as for any pair): a claim that the two are alike, true here, is never refuted; a
claim that one leads, false here, is reproduced in at most the 2.5% a one-sided 95% interval allows.
(b) Simulation of `stats.paired_gap` + `stats.within` on generated gaps: with the true gap on a
band's edge at most 5% of draws are decided (either way, both wrong there); with the true gap well
inside the band most draws are decided at the default profile's 3 seeds. The same for one seed with
the noise model, when the model's floor is the true spread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skipinit.claims import CHECKS
from skipinit.claims.stats import NoiseModel, paired_gap, within
from test_claims import CLAIM, SPEC
from test_tables import run_row, runs_frame

DRAWS = 200
SEEDS = 3  # the default profile's paired seeds at its decisive comparisons
SEED_SD = 1.0  # pp: one model's accuracy from seed to seed (the default measures 0.5-1.5 pp)
LRS = (0.025, 0.05, 0.1, 0.2, 0.4)


def same_model_twice(rng: np.random.Generator, batch_sizes=(64,), experiment="batch_size") -> pd.DataFrame:
    """Batch norm's runs, and the same model's runs again under SkipInit's name: independent seed noise."""
    rows = []
    for batch_size in batch_sizes:
        for lr in LRS:
            truth = 60.0 - 4.0 * abs(np.log2(lr / 0.1))  # one optimum, at 0.1
            for seed in range(SEEDS):
                for variant in ("batchnorm", "skipinit"):
                    accuracy = truth + SEED_SD * rng.standard_normal()
                    rows.append(run_row(accuracy, variant=variant, lr=lr, seed=seed, batch_size=batch_size,
                                        experiments=(experiment,)))
    runs = runs_frame(rows)
    runs["train_acc"] = runs["test_acc"] + 10.0  # both overfit alike, so the regularization checks decide
    return runs


def judge(claim_id: str, runs: pd.DataFrame) -> str:
    claim = CLAIM[claim_id]
    params = {"models": SPEC["models"], "noise": SPEC["noise"], "curves": pd.DataFrame(), **claim["params"]}
    return CHECKS[claim["check"]](runs, params)[0]


def test_a_a_a_claim_that_they_are_alike_is_never_refuted():
    rng = np.random.default_rng(0)
    verdicts = [judge("batch-small-similar", same_model_twice(rng)) for _ in range(DRAWS)]
    assert "not_reproduced" not in verdicts
    assert "reproduced" in verdicts  # it can decide, when the seeds agree


def test_a_a_a_claim_that_one_leads_is_rarely_reproduced():
    rng = np.random.default_rng(1)
    verdicts = [judge("regularization-bn-edge-small-batch", same_model_twice(rng, experiment="regularization"))
                for _ in range(DRAWS)]
    assert verdicts.count("reproduced") <= 0.025 * DRAWS
    assert verdicts.count("not_reproduced") > verdicts.count("reproduced")


NOISE = NoiseModel(gap_sd_pp=SEED_SD, accuracy_sd_pp=SEED_SD, source="simulation")


def decided_fraction(true_gap: float, seeds: int, low: float, high: float, draws: int = 4000) -> tuple[float, float]:
    """Fractions of draws decided (in or out of [low, high]) and of draws reproduced."""
    rng = np.random.default_rng(seeds)
    decided = reproduced = 0
    for _ in range(draws):
        gaps = true_gap + SEED_SD * rng.standard_normal(seeds)
        reference = pd.Series(gaps, index=range(seeds))
        holds = within(paired_gap(reference, pd.Series(np.zeros(seeds), index=range(seeds)), NOISE), low, high)
        decided += holds is not None
        reproduced += holds is True
    return decided / draws, reproduced / draws


@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
@pytest.mark.parametrize("edge", ["low", "high"])
def test_on_a_band_edge_at_most_five_percent_of_draws_are_decided(seeds, edge):
    low, high = -0.5, 3.0  # regularization-no-l2-trains' band
    decided, _ = decided_fraction(low if edge == "low" else high, seeds, low, high)
    assert decided <= 0.05 + 0.01  # 0.01: three Monte-Carlo standard errors at 4,000 draws


@pytest.mark.parametrize("seeds, distance, power", [(3, 5.0, 0.8), (1, 5.0, 0.9), (5, 3.0, 0.8)])
def test_well_inside_a_band_most_draws_are_decided(seeds, distance, power):
    """`distance` seed sds inside a one-sided band: decided in at least `power` of draws."""
    _, reproduced = decided_fraction(distance * SEED_SD, seeds, 0.0, np.inf)
    assert reproduced >= power
