"""config/paper.yaml plans the paper's grid: the job counts of a dry run, computed by hand here."""

import re

import pytest

from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.slow

# Training runs of the paper profile (pack: 1, so one job each), counted from its grids.
DEPTH = 3 * 7 * 7 * 3  # depths 16/100/1000 x 7 models x lrs 2^-6..2^0 x 3 seeds
BATCH_SIZE = 9 * 3 * 12 * 3  # batch sizes 2^4..2^12 x (BN, SkipInit, SkipInit + dropout) x lrs 2^-8..2^3 x 3 seeds
# Regularization: 5 models at batch 64 on the batch-size study's lr grid and seeds; its batch norm,
# SkipInit and SkipInit + dropout cells are the batch-size study's at batch 64 and train once.
REGULARIZATION = 5 * 12 * 3 - 3 * 12 * 3
# Trainability: plain and unnormalized nets over 8 depths x lrs 2^-6..2^-2 x 2 seeds; the unnormalized
# cells at depths 16 and 100 (lrs 2^-6..2^-2, seeds 0 and 1) are the depth study's and train once.
TRAINABILITY = 8 * 2 * 5 * 2 - 2 * 5 * 2
IMAGENET = (
    3 * 4 * 6 * 1
)  # batch sizes 256/1024/4096 x (BN, Fixup, Fixup + dropout, SkipInit + dropout) x lrs 2^-4..2^1 x 1 seed
EXPERIMENTS = 5  # depth, trainability, batch_size, regularization, imagenet: one figure and one table job each
# The CIFAR archive need not exist here: synthetic data of CIFAR-10's size (the largest batch, 4096, fits),
# as a second profile file (`--config` would pass the nested sizes as strings).
SELF_CONTAINED = (
    "data_source: synthetic\ndataset: synthetic\nsynthetic: {train_size: 50000, test_size: 10000, seed: 0}\n"
)


def job_counts(output: str) -> dict[str, int]:
    """The dry run's `Job stats:` table as {rule: count}."""
    table = output.split("Job stats:", 1)[1]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("paper"))


def dry_run(workdir, *config: str, profile: str = "config/paper.yaml") -> dict[str, int]:
    (workdir / "self_contained.yaml").write_text(SELF_CONTAINED)
    overrides = ("--config", *config) if config else ()
    result = snakemake(
        "-n", "--configfile", profile, "self_contained.yaml", *overrides, "--quiet", "rules", cwd=workdir
    )
    return job_counts(result.stdout + result.stderr)


def test_paper_profile_plans_every_training_run_once(workdir):
    counts = dry_run(workdir)
    assert counts["train"] == DEPTH + BATCH_SIZE + REGULARIZATION + TRAINABILITY == 1625
    assert counts["figure"] == counts["table"] == EXPERIMENTS - 1  # no ImageNet figure or table without imagenet.root
    assert counts["aggregate"] == counts["signal"] == counts["prepare_data"] == 1


def test_gpu_profile_plans_the_trainability_sweep_beside_the_committed_packs(workdir):
    """config/gpu.yaml: 14 depth-study packs (7 models x 2 depths, 4 lrs each); the batch-size study's 8 lrs x 4
    seeds in packs of 8 (2 models x 2 batch sizes x 4 packs); SkipInit without L2 and with dropout, 4 lrs x 4
    seeds (2 packs each; batch norm and SkipInit share the batch-size study's); plain and unnormalized WRN-n-1
    at 6 depths, whose unnormalized depths 16 and 100 are the depth study's packs (12 - 2)."""
    counts = dry_run(workdir, profile="config/gpu.yaml")
    assert counts["train"] == 14 + 16 + 4 + 10
    assert counts["figure"] == counts["table"] == 4


def test_imagenet_root_adds_the_imagenet_runs(workdir, tmp_path):
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split).mkdir(parents=True)
    counts = dry_run(workdir, f"imagenet={{root: {tmp_path / 'imagenet'}}}")
    assert counts["train"] == DEPTH + BATCH_SIZE + REGULARIZATION + TRAINABILITY + IMAGENET
    assert counts["figure"] == counts["table"] == EXPERIMENTS
