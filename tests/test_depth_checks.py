"""The depth checks on hand-made frames: each claim holds, fails and is undecidable."""

import numpy as np
import pandas as pd
import pytest
import yaml

from skipinit.claims import CHECKS, INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

CLAIMS = {claim["id"]: claim for claim in yaml.safe_load(open("config/claims.yaml"))["claims"]}
MODELS = yaml.safe_load(open("config/claims.yaml"))["models"]
# A floor that holds everywhere and is narrow: these frames show the check's logic on clear-cut numbers (the claims
# file's own floors are tested in test_claims.py and test_calibration.py).
NOISE = {
    "floors": [
        {"where": {}, "gap_sd_pp": 0.5, "gap_df": 30, "accuracy_sd_pp": 1.0, "accuracy_df": 30, "source": "test"}
    ],
    "unmeasured_widening": 2.0,
    "widening_source": "test",
}
DEPTHS = [10, 16, 22, 28, 34, 40]
LRS = [0.0125, 0.025, 0.05]


def sweep(largest: dict[str, int | None], depths=DEPTHS, lrs=LRS) -> pd.DataFrame:
    """Trainability runs: each variant trains (30% at the middle lr) up to its `largest` depth, beyond it
    scores chance (10%) at every lr, and diverges at the largest lr."""
    rows = []
    for variant, limit in largest.items():
        for depth in depths:
            for lr in lrs:
                trains = limit is not None and depth <= limit and lr == lrs[1]
                diverged = lr == lrs[-1]
                rows.append(
                    {
                        "variant": variant,
                        "depth": depth,
                        "lr": lr,
                        "seed": 0,
                        "test_acc": 30.0 if trains else (np.nan if diverged else 10.0),
                        "diverged": diverged,
                    }
                )
    return pd.DataFrame(rows)


def judge_ratio(runs: pd.DataFrame):
    claim = CLAIMS["depth-skips-double-trainable-depth"]
    return CHECKS[claim["check"]](runs, {"models": MODELS, "noise": NOISE, **claim["params"]})


@pytest.mark.parametrize(
    "plain, unnormalized, verdict, ratio",
    [
        (16, 34, REPRODUCED, 34 / 16),
        (16, 28, REPRODUCED, 28 / 16),
        (16, 16, NOT_REPRODUCED, 1.0),  # skips buy nothing
        (10, 34, NOT_REPRODUCED, 3.4),  # more than the claim's factor
        (22, 16, NOT_REPRODUCED, 16 / 22),
    ],
)
def test_trainable_depth_ratio_decides_inside_the_sweep(plain, unnormalized, verdict, ratio):
    result, evidence = judge_ratio(sweep({"plain": plain, "unnormalized": unnormalized}))
    assert result == verdict, evidence["reason"]
    assert evidence["ratio_range"] == pytest.approx([ratio, ratio])
    assert evidence["plain"]["largest_trainable_depth"] == [plain, plain]
    assert evidence["unnormalized"]["best_lr_by_depth"]["10"] == 0.025


def test_trainable_depth_ratio_at_the_ends_of_the_sweep():
    # the residual net still trains at the deepest depth: only a lower bound on the ratio
    result, evidence = judge_ratio(sweep({"plain": 22, "unnormalized": 40}))
    assert result == INCONCLUSIVE and "may still train at the deepest depth swept, 40" in evidence["reason"]
    # ... which refutes the claim once the bound alone exceeds the claim's factor
    result, evidence = judge_ratio(sweep({"plain": 10, "unnormalized": 40}))
    assert result == NOT_REPRODUCED and "at least" in evidence["reason"]
    # the plain net trains everywhere, or one net nowhere: nothing to compare
    assert judge_ratio(sweep({"plain": 40, "unnormalized": 40}))[0] == INCONCLUSIVE
    result, evidence = judge_ratio(sweep({"plain": None, "unnormalized": 22}))
    assert result == INCONCLUSIVE and "trains at no depth" in evidence["reason"]


def test_trainable_depth_ratio_needs_one_grid_and_enough_depths():
    runs = sweep({"plain": 16, "unnormalized": 28})
    uneven = runs[~((runs["variant"] == "plain") & (runs["lr"] == LRS[0]))]
    result, evidence = judge_ratio(uneven)
    assert result == INCONCLUSIVE and "same depths and learning rates" in evidence["reason"]
    result, evidence = judge_ratio(sweep({"plain": 16, "unnormalized": 22}, depths=[10, 16, 22]))
    assert result == INCONCLUSIVE and "fewer than" in evidence["reason"]
    assert judge_ratio(runs.iloc[:0])[0] == NOT_RUN
    assert judge_ratio(runs[runs["variant"] == "plain"])[0] == INCONCLUSIVE


def test_a_diverged_run_at_the_best_lr_is_no_training():
    runs = sweep({"plain": 16, "unnormalized": 34})
    lucky = (runs["variant"] == "unnormalized") & (runs["depth"] == 40) & (runs["lr"] == LRS[1])
    runs.loc[lucky, ["test_acc", "diverged"]] = [40.0, True]  # scored before it diverged
    result, evidence = judge_ratio(runs)
    assert result == REPRODUCED and evidence["unnormalized"]["largest_trainable_depth"] == [34, 34]


def test_a_depth_the_noise_model_cannot_place_widens_the_ratio():
    """One seed at 16%: chance + 5 pp = 15% lies inside its interval (floor 1 pp on 30 df, simultaneous over the
    3 lrs: 16 +- 2.5), so depth 22 is undecided."""
    runs = sweep({"plain": 16, "unnormalized": 28})
    borderline = (runs["variant"] == "plain") & (runs["depth"] == 22) & (runs["lr"] == LRS[1])
    runs.loc[borderline, "test_acc"] = 16.0
    result, evidence = judge_ratio(runs)
    assert evidence["plain"]["largest_trainable_depth"] == [16, 22]
    assert evidence["ratio_range"] == pytest.approx([28 / 22, 28 / 16])
    assert result == INCONCLUSIVE and "16..22 (undecided in between)" in evidence["reason"]


def conv_signal(
    slope: float, moving_fraction: float, blocks: int = 40, seeds=(0, 1), noise: float = 0.0
) -> pd.DataFrame:
    """A conv-batchnorm signal frame: pooled skip variance 1 + slope (l - 1), moving variance a fraction of it."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for block in range(1, blocks + 1):
            pooled = 1.0 + slope * (block - 1) + noise * rng.standard_normal()
            moving = pooled * (1.0 if block == 1 else moving_fraction)
            rows.append(
                {
                    "model": "conv-batchnorm",
                    "depth": blocks,
                    "block": block,
                    "seed": seed,
                    "skip_var": moving,
                    "skip_var_pooled": pooled,
                    "branch_var": 0.7,
                    "bn_moving_var": moving,
                }
            )
    return pd.DataFrame(rows)


def judge_conv(signal: pd.DataFrame):
    claim = CLAIMS["signal-conv-bn-moving-var"]
    return CHECKS[claim["check"]](signal, claim["params"])


def test_conv_bn_variances_hold_as_in_figure_2c():
    result, evidence = judge_conv(conv_signal(slope=0.8, moving_fraction=0.85, noise=0.3))
    assert result == REPRODUCED, evidence["reason"]
    assert evidence["pooled_slope"]["mean"] == pytest.approx(0.8, abs=0.05)
    assert evidence["pooled_slope"]["seeds"] == 2 and evidence["pooled_slope"]["ci"][1] < 1.0
    assert evidence["median_moving_over_pooled"]["mean"] == pytest.approx(0.85)
    assert evidence["seeds"] == 2 and evidence["blocks"] == 40


@pytest.mark.parametrize(
    "slope, fraction, failing",
    [
        (1.3, 0.85, "skip_var_pooled"),  # steeper than the paper's slope
        (0.3, 0.85, "skip_var_pooled"),
        (0.8, 1.0, "bn_moving_var / skip_var_pooled"),  # the per-channel statistic: equal by construction
        (0.8, 0.5, "bn_moving_var / skip_var_pooled"),
    ],
)
def test_conv_bn_variances_fail(slope, fraction, failing):
    result, evidence = judge_conv(conv_signal(slope, fraction))
    assert result == NOT_REPRODUCED and evidence["reason"].startswith(failing)


def test_conv_bn_moving_variance_not_proportional_to_depth_fails_by_its_slope_not_by_a_point_r2():
    """A flat moving variance: its R^2 through the origin (a point value, no interval) leaves its part undecided;
    the pooled skip variance's per-seed slope, far below the band, refutes the claim."""
    signal = conv_signal(0.8, 0.85)
    signal["bn_moving_var"] = 5.0 + 0.01 * signal["block"]  # flat: no depth dependence
    signal["skip_var_pooled"] = signal["bn_moving_var"] / 0.85
    result, evidence = judge_conv(signal)
    assert result == NOT_REPRODUCED and evidence["reason"].startswith("skip_var_pooled ~ 0.0118 l")
    assert "through the origin" not in evidence["reason"]


def test_conv_bn_variances_undecidable():
    assert judge_conv(conv_signal(0.8, 0.85).query("model == 'none'"))[0] == NOT_RUN
    result, evidence = judge_conv(conv_signal(0.8, 0.85, blocks=6))
    assert result == INCONCLUSIVE and "fewer than" in evidence["reason"]
    old = conv_signal(0.8, 0.85).drop(columns="skip_var_pooled")  # a signal.parquet from before the column
    result, evidence = judge_conv(old)
    assert result == INCONCLUSIVE and "skip_var_pooled" in evidence["reason"]
