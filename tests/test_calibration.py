"""Calibration of the intervals and the verdict rule: they decide no more often than 95% allows.

Each simulation runs the package's own code on generated numbers, DRAWS = 2,000 times; a fraction
estimated from 2,000 draws has a Monte-Carlo standard error of at most sqrt(0.25 / 2000) = 0.011
(0.0049 near 95% or 5%), and each bound allows three of those (MC_SLACK).

(a) Coverage: the true mean lies in the 95% interval in at least 95% of draws, for 1, 2, 3 and 5 seeds:
    an accuracy and a paired gap whose true spread equals the floor measured for their setting (the
    floor itself an estimate on 10 or 12 degrees of freedom, drawn anew each time); the same in a
    setting where no floor was measured, when the true spread is as large as the claims file's
    widening allows; a per-seed fit (t over seeds).
(b) A/A learning-rate sweep: every lr equally good, so an optimal-lr trend is never true nor false;
    it is decided in at most 5% of draws.
(c) A 4-part claim with every part on its band's edge (the claim false in the limit): decided in at most
    5% of draws, not 4 x 5%.
(d) A/A through the real checks: two names for one model; a claim that they are alike is never refuted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from skipinit.claims import CHECKS, stats
from skipinit.claims.judge import judged_as_a_family
from skipinit.claims.registry import Finding, verdict_of
from skipinit.claims.selection import held_out, lr_ratio_range, near_best

from test_claims import CLAIM, SPEC
from test_tables import run_row, runs_frame

DRAWS = 2000
MC_SLACK = 3 * math.sqrt(0.95 * 0.05 / DRAWS)  # 0.0146: three Monte-Carlo standard errors at 95% (or 5%)
SIGMA = 1.0  # pp: the true seed-to-seed sd in every simulation


def floor_estimate(rng: np.random.Generator, sigma: float, df: int) -> float:
    """A floor as a measurement gives it: the true sd times sqrt(chi2(df) / df)."""
    return sigma * math.sqrt(rng.chisquare(df) / df)


def coverage(interval, seeds: int, rng: np.random.Generator) -> float:
    """The fraction of draws whose interval holds the true mean 0, data ~ N(0, SIGMA^2) on `seeds` seeds."""
    hits = 0
    for _ in range(DRAWS):
        low, high = interval(pd.Series(SIGMA * rng.standard_normal(seeds), index=range(seeds)))["ci95"]
        hits += low <= 0.0 <= high
    return hits / DRAWS


@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
def test_accuracy_and_gap_intervals_cover_when_the_true_spread_is_the_measured_floor(seeds):
    rng = np.random.default_rng(seeds)

    def accuracy(values):
        floor = stats.Floor(1.0, 12, floor_estimate(rng, SIGMA, 10), 10, "simulation")
        return stats.accuracy(values, floor)

    def gap(values):
        floor = stats.Floor(floor_estimate(rng, SIGMA, 12), 12, 1.0, 10, "simulation")
        return stats.paired_gap(values, pd.Series(0.0, index=values.index), floor)

    assert coverage(accuracy, seeds, rng) >= 0.95 - MC_SLACK
    assert coverage(gap, seeds, rng) >= 0.95 - MC_SLACK


@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
def test_intervals_cover_in_an_unmeasured_setting_whose_spread_is_as_wide_as_the_stated_widening(seeds):
    """The floors measured at one setting (estimated anew), judged at another whose true sd is widening x theirs."""
    rng = np.random.default_rng(10 + seeds)
    widening = float(SPEC["noise"]["unmeasured_widening"])
    elsewhere = pd.DataFrame({"depth": [100], "seed": [0]})

    def accuracy(values):
        measured = {
            "where": {"depth": 16},
            "gap_sd_pp": floor_estimate(rng, SIGMA / widening, 12),
            "gap_df": 12,
            "accuracy_sd_pp": floor_estimate(rng, SIGMA / widening, 10),
            "accuracy_df": 10,
            "source": "simulation",
        }
        noise = stats.NoiseModel.from_spec({**SPEC["noise"], "floors": [measured]})
        return stats.accuracy(values, noise.floor_for(elsewhere))

    assert coverage(accuracy, seeds, rng) >= 0.95 - MC_SLACK


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_a_per_seed_fit_interval_covers(seeds):
    rng = np.random.default_rng(20 + seeds)
    assert coverage(lambda values: stats.over_seeds(values.to_numpy()), seeds, rng) >= 0.95 - MC_SLACK


def decided_share(verdicts: list[str]) -> float:
    return sum(verdict in ("reproduced", "not_reproduced") for verdict in verdicts) / len(verdicts)


def judge(claim_id: str, runs: pd.DataFrame, **overrides) -> str:
    """The claim as the judge decides it (its parts at the family's level), with the claims file's noise model."""
    claim = CLAIM[claim_id]
    params = {
        "models": SPEC["models"],
        "noise": SPEC["noise"],
        "curves": pd.DataFrame(),
        **claim["params"],
        **overrides,
    }
    return judged_as_a_family(CHECKS[claim["check"]], runs, params)[0]


A_A_LRS = (0.025, 0.05, 0.1, 0.2, 0.4)
UNMEASURED = stats.NoiseModel.from_spec(SPEC["noise"]).floor_for(pd.DataFrame({"depth": [-1]}))  # the widened floor


def flat_sweep(rng: np.random.Generator, seeds: int = 3) -> pd.DataFrame:
    """One model's runs over five lrs, every lr equally good (60%), seed-paired (a seed's data order shared)."""
    rows = []
    for seed in range(seeds):
        shared = SIGMA / math.sqrt(2) * rng.standard_normal()
        for lr in A_A_LRS:
            rows.append(
                {
                    "lr": lr,
                    "seed": seed,
                    "diverged": False,
                    "depth": 16,
                    "test_acc": 60.0 + shared + SIGMA / math.sqrt(2) * rng.standard_normal(),
                }
            )
    return pd.DataFrame(rows)


def trend_verdict(rng: np.random.Generator) -> str:
    """batch-optimal-lr-grows' decision on a flat sweep at two batch sizes, per model (its code path: the lrs within
    noise of the best, the optimum's range, the ratio's range against the bound, two parts at the family's level)."""
    params = {"noise": SPEC["noise"]}
    bound = CLAIM["batch-optimal-lr-grows"]["params"]["min_lr_ratio"]
    findings = []
    with stats.family(2):
        for _ in ("batchnorm", "skipinit"):
            rows = []
            for _ in (16, 64):
                sweep = flat_sweep(rng)
                best = float(sweep.groupby("lr")["test_acc"].mean().idxmax())
                near = near_best(sweep, params, best)
                rows.append(
                    pd.Series(
                        {
                            "best_lr": best,
                            "lr_low": min(near),
                            "lr_high": max(near),
                            "lr_min": min(A_A_LRS),
                            "lr_max": max(A_A_LRS),
                        }
                    )
                )
            low, high = lr_ratio_range(rows[1], rows[0])
            findings.append(Finding(True if low >= bound else False if high < bound else None, ""))
    return verdict_of(findings, {})[0]


def test_an_a_a_lr_sweep_decides_an_optimal_lr_trend_at_most_5_percent_of_the_time():
    """Where every lr is as good as the best, the lrs within noise of the best span the grid: a trend in the optimal
    lr is a range that no bound can place, whatever the arg-max says. The arg-max alone would call it in every draw."""
    rng = np.random.default_rng(30)
    assert decided_share([trend_verdict(rng) for _ in range(DRAWS)]) <= 0.05 + MC_SLACK


def edge_verdict(
    rng: np.random.Generator, gap: float, bound: float, parts: int = 4, seeds: int = 3, floor: stats.Floor = UNMEASURED
) -> str:
    """depth-skipinit-matches-bn's decision over `parts` depths (its code path: a paired gap per depth against the
    bound, at the family's level), each true gap `gap`, paired sd SIGMA, the floor of an unmeasured setting unless
    `floor` is given."""
    findings = []
    with stats.family(parts):
        for _ in range(parts):
            gaps = pd.Series(gap + SIGMA * rng.standard_normal(seeds))
            estimate = stats.paired_gap(gaps, pd.Series(0.0, index=gaps.index), floor)
            findings.append(Finding(stats.within(estimate, high=bound), ""))
    return verdict_of(findings, {})[0]


def test_a_four_part_claim_with_every_part_on_its_band_edge_is_decided_at_most_5_percent_of_the_time():
    """Each part's true gap exactly its bound: without the family's level each part alone would be decided wrongly up
    to 5% of the time and the claim up to 1 - 0.95^4 = 19%; with it, at most 5%."""
    rng = np.random.default_rng(40)
    bound = CLAIM["depth-skipinit-matches-bn"]["params"]["max_gap_pp"]
    assert decided_share([edge_verdict(rng, bound, bound) for _ in range(DRAWS)]) <= 0.05 + MC_SLACK
    # and it can decide: with no true gap, the true spread measured (a floor of SIGMA on 12 df) and 16 paired seeds,
    # most draws reproduce the claim
    measured = stats.Floor(SIGMA, 12, SIGMA, 12, "simulation: the true spread, measured")
    inside = [edge_verdict(rng, 0.0, bound, seeds=16, floor=measured) for _ in range(200)]
    assert inside.count("reproduced") >= 0.8 * len(inside)


END_TO_END = 50  # draws through the real checks and the judge (about 0.3 s each)


def flat_lr_runs(rng: np.random.Generator) -> pd.DataFrame:
    """Batch norm and SkipInit at batch sizes 16 and 64 over five equally good lrs, seeds paired, as runs.parquet
    rows."""
    rows = []
    for batch_size in (16, 64):
        for variant in ("batchnorm", "skipinit"):
            for _, row in flat_sweep(rng).iterrows():
                rows.append(
                    run_row(
                        row["test_acc"],
                        variant=variant,
                        lr=row["lr"],
                        seed=int(row["seed"]),
                        batch_size=batch_size,
                        experiments=("batch_size",),
                    )
                )
    return runs_frame(rows)


def test_end_to_end_the_a_a_trend_and_the_edge_claim_are_rarely_decided():
    """The same two simulations through the judge and the real checks, fewer draws: at most 5 of 50 decided each
    (2.5 expected at most; more than 5 has probability about 4% at a true 5%)."""
    rng = np.random.default_rng(50)
    bound = CLAIM["depth-skipinit-matches-bn"]["params"]["max_gap_pp"]
    trends = [judge("batch-optimal-lr-grows", flat_lr_runs(rng), min_epochs=1) for _ in range(END_TO_END)]
    edges = [judge("depth-skipinit-matches-bn", edge_runs(rng, bound), min_epochs=1) for _ in range(END_TO_END)]
    assert decided_share(trends) <= 0.10 and decided_share(edges) <= 0.10


def edge_runs(rng: np.random.Generator, gap: float, depths=(16, 28, 40, 100), seeds: int = 3) -> pd.DataFrame:
    """Batch norm `gap` pp ahead of SkipInit at each depth, one lr, paired seeds: the paired gap's sd is SIGMA."""
    rows = []
    for depth in depths:
        for seed in range(seeds):
            shared = 80.0 + SIGMA * rng.standard_normal()  # what a seed's data order does to both models
            own = SIGMA / math.sqrt(2) * rng.standard_normal(2)
            rows.append(run_row(shared + gap + own[0], variant="batchnorm", depth=depth, seed=seed))
            rows.append(run_row(shared + own[1], variant="skipinit", alpha_init=0, depth=depth, seed=seed))
    return runs_frame(rows)


A_A_DRAWS = 100  # each draw runs two real checks end to end


def same_model_twice(rng: np.random.Generator, experiment="batch_size") -> pd.DataFrame:
    """Batch norm's runs, and the same model's runs again under SkipInit's name: independent seed noise."""
    rows = []
    for lr in A_A_LRS:
        truth = 60.0 - 4.0 * abs(np.log2(lr / 0.1))  # one optimum, at 0.1
        for seed in range(3):
            for variant in ("batchnorm", "skipinit"):
                rows.append(
                    run_row(
                        truth + SIGMA * rng.standard_normal(),
                        variant=variant,
                        lr=lr,
                        seed=seed,
                        batch_size=64,
                        experiments=(experiment,),
                    )
                )
    runs = runs_frame(rows)
    runs["train_acc"] = runs["test_acc"] + 10.0  # both overfit alike, so the regularization checks decide
    return runs


def test_a_a_a_claim_that_they_are_alike_is_never_refuted():
    rng = np.random.default_rng(0)
    verdicts = [judge("batch-small-similar", same_model_twice(rng)) for _ in range(A_A_DRAWS)]
    assert "not_reproduced" not in verdicts


def test_a_a_a_claim_that_one_leads_is_rarely_reproduced():
    rng = np.random.default_rng(1)
    verdicts = [
        judge("regularization-bn-edge-small-batch", same_model_twice(rng, "regularization")) for _ in range(A_A_DRAWS)
    ]
    assert verdicts.count("reproduced") <= 0.025 * A_A_DRAWS


@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
def test_a_gap_growth_interval_covers(seeds):
    """batch-gap-grows: per seed, the lead at one batch size minus the lead at another, pooled with sqrt(2) gap floors;
    true sd sqrt(2) x the gap floor, the floor estimated on 12 df."""
    rng = np.random.default_rng(60 + seeds)

    def growth(values):
        floor = floor_estimate(rng, SIGMA, 12)
        return stats.pooled(
            math.sqrt(2) * values.to_numpy(), math.sqrt(2) * floor, 12, 0.0, "paired seeds", "simulation"
        )

    assert coverage(growth, seeds, rng) >= 0.95 - MC_SLACK


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_a_speedup_from_steps_read_at_evaluations_covers(seeds):
    """convergence_speedup's interval: true steps to the target 350 (reference) and 700 (candidate) with log-normal
    seed noise (sd 0.1), read at evaluations every 100 steps (rounded up), as `earlier_by` widens them."""
    from skipinit.claims.speed_checks import earlier_by

    rng = np.random.default_rng(70 + seeds)
    curve = pd.Series(0.0, index=np.arange(100, 1501, 100))
    hits = 0
    for _ in range(DRAWS):
        true = {
            name: base * np.exp(0.1 * rng.standard_normal(seeds)) for name, base in (("ref", 350.0), ("cand", 700.0))
        }
        read = {name: np.ceil(steps / 100) * 100 for name, steps in true.items()}
        bracket = (
            np.mean([earlier_by(curve, s) for s in read["cand"]]),
            np.mean([earlier_by(curve, s) for s in read["ref"]]),
        )
        low, high = stats.over_seeds(np.log(read["cand"] / read["ref"]), "paired seeds", bracket)["ci95"]
        hits += low <= math.log(2.0) <= high
    assert hits / DRAWS >= 0.95 - MC_SLACK


def test_each_seeds_lr_is_chosen_on_the_other_seeds():
    """Seed 0 peaks at lr 0.4 by luck; seeds 1 and 2 prefer 0.1 clearly enough that every pair of seeds picks 0.1:
    seed 0's score is taken at 0.1 (50, not its lucky 58)."""
    rows = pd.DataFrame(
        [
            {"seed": seed, "lr": lr, "diverged": False, "test_acc": acc}
            for seed, scores in {0: (50.0, 58.0), 1: (55.0, 45.0), 2: (56.0, 46.0)}.items()
            for lr, acc in zip((0.1, 0.4), scores, strict=True)
        ]
    )
    scores, picked = held_out(rows)
    assert picked == {0: 0.1, 1: 0.1, 2: 0.1} and list(scores) == [50.0, 55.0, 56.0]
    assert held_out(rows[rows["seed"] == 0]) is None  # one seed: nothing to choose on


def test_held_out_selection_removes_the_winners_curse():
    """Two models alike, one tried at 5 equally good lrs: the gap at its arg-max is biased up by about E[max of 5
    normals] (1.16 sd, less the pairing), while the gap with each seed's lr chosen on the other seeds is not."""
    rng = np.random.default_rng(80)
    biased, held = [], []
    for _ in range(500):
        sweep = flat_sweep(rng)
        reference = pd.Series(60.0 + SIGMA * rng.standard_normal(3))
        best = float(sweep.groupby("lr")["test_acc"].mean().idxmax())
        biased.append((sweep[sweep["lr"] == best].set_index("seed")["test_acc"] - reference).mean())
        held.append((held_out(sweep)[0] - reference).mean())
    assert np.mean(biased) > 0.5 and abs(np.mean(held)) < 0.15  # Monte-Carlo sd of the held-out mean: about 0.05


def sequential_run(rng: np.random.Generator, true_gap: float, band: tuple[float, float], looks: int) -> bool:
    """One adaptive run of a paired gap (skipinit.rounds' rule): one seed, then, if undecided, the seeds its interval
    asks for (at most 4) added once; True where either look decides it. Every interval at 1 - 0.05/looks."""
    floor = stats.Floor(floor_estimate(rng, SIGMA, 12), 12, 1.0, 12, "simulation")
    differences = list(true_gap + SIGMA * rng.standard_normal(1))
    with stats.family(1, looks):
        for look in range(2):
            gap = stats.paired_gap(pd.Series(differences), pd.Series(0.0, index=range(len(differences))), floor)
            if stats.within(gap, *band) is not None:
                return True
            wanted = stats.seeds_to_decide(gap, *band)
            if look or wanted is None:
                return False
            differences += list(true_gap + SIGMA * rng.standard_normal(min(wanted, 4) - len(differences)))
    return False


@pytest.mark.parametrize("edge", ["low", "high"])
def test_adding_seeds_where_undecided_decides_an_edge_effect_at_most_5_percent_of_the_time(edge):
    """The true gap on a band's edge (regularization-no-l2-trains' band, -0.5..3.5 pp): a sequential run looks after
    round 1 and again after the seeds it added, and decides in at most 5% of draws with each look at 1 - 0.05/2.
    Judged at 95% at each look instead (no correction for looking twice), the same runs decide more often."""
    band = (-0.5, 3.5)
    true_gap = band[0] if edge == "low" else band[1]
    corrected = np.mean([sequential_run(np.random.default_rng(i), true_gap, band, looks=2) for i in range(DRAWS)])
    naive = np.mean([sequential_run(np.random.default_rng(i), true_gap, band, looks=1) for i in range(DRAWS)])
    assert corrected <= 0.05 + MC_SLACK
    assert naive > corrected
    # and it decides an effect well inside the band: most sequential runs reproduce a true gap of 1.5 pp
    inside = np.mean([sequential_run(np.random.default_rng(i), 1.5, band, looks=2) for i in range(200)])
    assert inside >= 0.5
