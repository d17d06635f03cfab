"""Tables and figures in the paper's form, and `python -m skipinit report` rebuilding every output from Parquet
alone."""

import hashlib
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from skipinit import cli, grid, runtable, vocab
from skipinit.claims import VERDICTS
from skipinit.record import CURVES_SCHEMA, RUNS_SCHEMA
from skipinit.report import figures, style, tables
from skipinit.runtable import write_parquet

from conftest import REPO


def run_row(test_acc: float, diverged: bool = False, experiments: tuple = ("depth",), **settings) -> dict:
    """One runs.parquet row: a cell from `settings` and its result (a diverged run has no accuracy)."""
    cell = grid.make_cell({"dataset": "synthetic", "epochs": 20, **settings})
    return {
        "cell_id": grid.cell_id(cell),
        **cell,
        "net": grid.net_slug(cell),
        "model": grid.model_slug(cell),
        "label": grid.model_label(cell),
        "experiments": list(experiments),
        "status": "diverged" if diverged else "ok",
        "diverged": diverged,
        "diverged_step": 3 if diverged else None,
        "error": None,
        "test_acc": math.nan if diverged else test_acc,
        "test_loss": math.nan if diverged else 1.0,
        "test_images": 1_000_000,  # the whole test set (test_subset 0): no test-set term, the checks on clear numbers
        "test_correct": None,
        "train_loss": math.nan if diverged else 0.5,
        "train_acc": math.nan if diverged else test_acc,
        "epochs_completed": cell["epochs"],
        "steps": 100,
        "wall_seconds": 1.0,
        "images_per_second": 1000.0,
        "pack_size": 1,
        "micro_batch": cell["batch_size"],
        "device": "cpu",
        "packing": "plain",
        "precision": "fp32",
        "channels_last": True,
        "deterministic": True,
        "image_size": 224,
        "fixup_scalar_lr": 0.1,
        "torch_version": "test",
        "git_commit": "test",
        "dataset_sha256": "0" * 64,
    }


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def curves_of(runs: pd.DataFrame) -> pd.DataFrame:
    """Two evaluated epochs per run, ending at its final accuracy."""
    identity = ["cell_id", *vocab.CELL_KEYS, "net", "model", "label"]
    rows = [
        {
            **run[identity].to_dict(),
            "epoch": epoch,
            "step": 50 * epoch,
            "lr_now": run["lr"],
            "train_loss": 1.0,
            "train_acc": 50.0,
            "test_loss": 1.0,
            "test_acc": run["test_acc"] * epoch / 2,
            "seconds": float(epoch),
        }
        for _, run in runs.iterrows()
        for epoch in (1, 2)
    ]
    return pd.DataFrame(rows)


def depth_runs() -> pd.DataFrame:
    """Depths 16 and 100, two lrs, two seeds: BN and SkipInit train, the unnormalized net diverges at depth 100."""
    rows = []
    for depth in (16, 100):
        for lr in (0.05, 0.1):
            for seed in (0, 1):
                bonus = 1.0 if lr == 0.1 else 0.0
                rows.append(run_row(90 + bonus + seed * 0.2, depth=depth, lr=lr, seed=seed, variant="batchnorm"))
                rows.append(run_row(89 + bonus + seed * 0.2, depth=depth, lr=lr, seed=seed, variant="skipinit"))
                rows.append(
                    run_row(80 + bonus, depth=depth, lr=lr, seed=seed, variant="unnormalized", diverged=depth == 100)
                )
    return runs_frame(rows)


def test_depth_table_has_a_row_per_model_and_a_column_per_depth():
    runs = depth_runs()
    frame = tables.summary(runs, "depth", "depth")
    wide = tables.paper_form(frame, "depth", model_order=["BatchNorm", "SkipInit (alpha=0)", "Unnormalized"])
    assert list(wide.columns) == ["model", "depth 16", "depth 100"]
    assert list(wide["model"]) == ["BatchNorm", "SkipInit (alpha=0)", "Unnormalized"]
    bn = wide.set_index("model").loc["BatchNorm", "depth 100"]
    assert bn == "91.1 ± 0.1 (n=2, lr 0.1)"  # mean of 91.0 and 91.2 at the best lr, with it
    assert wide.set_index("model").loc["Unnormalized", "depth 100"] == "diverged"
    assert wide.set_index("model").loc["Unnormalized", "depth 16"] == "81.0 ± 0.0 (n=2, lr 0.1)"


def test_one_seed_has_no_spread_and_partial_divergence_is_counted():
    runs = runs_frame(
        [
            run_row(70, lr=0.1, seed=0),
            run_row(60, lr=0.2, seed=0),
            run_row(0, lr=0.2, seed=1, diverged=True),
            run_row(75, lr=0.1, seed=1),
        ]
    )
    row = runtable.best_lr_summary(runs, ["label"]).iloc[0]
    assert tables.cell_text(row) == "72.5 ± 3.5 (n=2, lr 0.1)"
    single = runtable.best_lr_summary(runs[runs["seed"] == 0], ["label"]).iloc[0]
    assert tables.cell_text(single) == "70.0 (n=1, lr 0.1)"
    shaky = runtable.best_lr_summary(runs[runs["lr"] == 0.2], ["label"]).iloc[0]
    assert tables.cell_text(shaky) == "30.0 ± 42.4 (n=2, lr 0.2; 1/2 diverged)"


def test_latex_escapes_text_and_typesets_plus_minus():
    frame = tables.paper_form(tables.summary(depth_runs(), "depth", "depth"), "depth")
    tex = tables.render(frame, "tex", "depth_study: accuracy in % & more")
    assert r"$\pm$" in tex and "±" not in tex
    assert r"depth\_study: accuracy in \% \& more" in tex
    assert r"\begin{tabular}" in tex


def test_regularization_and_imagenet_tables_have_a_column_per_batch_size():
    rows = [
        run_row(acc, batch_size=batch, variant=variant, weight_decay=wd, experiments=("regularization",))
        for batch, acc in ((64, 90), (1024, 80))
        for variant, wd in (("batchnorm", 5e-4), ("skipinit", 0.0))
    ]
    frame = tables.summary(runs_frame(rows), "regularization", "regularization")
    wide = tables.paper_form(frame, "regularization")
    assert list(wide.columns) == ["model", "batch 64", "batch 1024"]
    assert set(wide["model"]) == {"BatchNorm", "SkipInit (alpha=0), no L2"}


def batch_runs() -> pd.DataFrame:
    """Batch sizes 16 and 256 with a 6-point lr grid: BN's optimal lr grows faster with batch size, and wins at 256."""
    rows = []
    for batch, bn_best, si_best, si_peak in ((16, 0.05, 0.05, 90), (256, 0.4, 0.1, 87)):
        for lr in (0.025, 0.05, 0.1, 0.2, 0.4, 0.8):
            for variant, best, peak in (("batchnorm", bn_best, 90), ("skipinit", si_best, si_peak)):
                rows.append(
                    run_row(
                        peak - 3 * abs(np.log2(lr / best)),
                        batch_size=batch,
                        lr=lr,
                        variant=variant,
                        experiments=("batch_size",),
                    )
                )
    return runs_frame(rows)


def test_batch_size_figure_has_accuracy_and_best_lr_panels():
    runs = batch_runs()
    figure = figures.plot_experiment(runs, curves_of(runs), "batch_size", "batch_size", PROFILE)
    accuracy, best_lr = figure.axes[:2]
    assert accuracy.get_xlabel() == "batch size" and "accuracy" in accuracy.get_ylabel()
    assert best_lr.get_ylabel() == "best learning rate"
    lines = {container.get_label(): container.lines[0] for container in best_lr.containers}
    assert set(lines) == {"BatchNorm", "SkipInit (alpha=0)"}
    assert list(lines["BatchNorm"].get_ydata()) == [0.05, 0.4]
    assert list(lines["SkipInit (alpha=0)"].get_ydata()) == [0.05, 0.1]


def test_depth_figure_draws_accuracy_against_depth_and_curves():
    runs = depth_runs()
    figure = figures.plot_experiment(runs, curves_of(runs), "depth", "depth", PROFILE)
    accuracy, curves = figure.axes[:2]
    assert accuracy.get_xlabel() == "depth (layers)"
    assert curves.get_ylabel() == "test accuracy (%)" and curves.get_lines()


def signal_frame() -> pd.DataFrame:
    """Figure 2's laws, exactly: unnormalized 2^(l-1); BN skip l, branch 1; conv BN skip 1 + (l-1)/2, branch 1/2."""
    rows = []
    for block in range(1, 21):
        rows.append(
            {
                "model": "linear-unnormalized",
                "skip_var": 2.0 ** (block - 1),
                "branch_var": 2.0 ** (block - 1),
                "bn_moving_var": math.nan,
            }
        )
        rows.append(
            {"model": "linear-batchnorm", "skip_var": float(block), "branch_var": 1.0, "bn_moving_var": float(block)}
        )
        rows.append(
            {
                "model": "conv-batchnorm",
                "skip_var": 1 + (block - 1) / 2,
                "branch_var": 0.5,
                "bn_moving_var": 1 + (block - 1) / 2,
            }
        )
        rows[-3:] = [{**row, "block": block} for row in rows[-3:]]
    frame = pd.DataFrame(rows).assign(depth=20, seed=0)
    # Across channels the conv net's skip path also holds the spread of its channel means: a little above.
    frame["skip_var_pooled"] = frame["skip_var"] * np.where(frame["model"] == "conv-batchnorm", 1.1, 1.0)
    return frame[["model", "depth", "block", "seed", "skip_var", "skip_var_pooled", "branch_var", "bn_moving_var"]]


def write_results(folder, runs: pd.DataFrame, experiments: dict, signal: pd.DataFrame | None = None) -> None:
    """A results folder as the workflow leaves it: runs/curves Parquet with their metadata (and signal.parquet)."""
    metadata = {runtable.METADATA_KEY: json.dumps(experiments).encode()}
    write_parquet(runs, folder / "runs.parquet", PROFILE, RUNS_SCHEMA, metadata)
    write_parquet(curves_of(runs), folder / "curves.parquet", PROFILE, CURVES_SCHEMA, metadata)
    if signal is not None:
        write_parquet(signal, folder / "signal.parquet", PROFILE)


PROFILE = "hand-made"
EXPERIMENTS = {
    "depth": {"kind": "depth", "description": "hand-made"},
    "batch_size": {"kind": "batch_size", "description": "hand-made"},
}


@pytest.mark.slow
def test_report_rebuilds_figures_tables_and_claims_from_parquet_alone(tmp_path):
    """`make tables RESULTS=<dir>`: no training, no Snakemake, only the Parquet files."""
    write_results(tmp_path, pd.concat([depth_runs(), batch_runs()], ignore_index=True), EXPERIMENTS, signal_frame())
    command = [
        sys.executable,
        "-m",
        "skipinit",
        "report",
        "--results",
        str(tmp_path),
        "--claims-config",
        str(REPO / "config" / "claims.yaml"),
    ]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=300)
    expected = [
        f"figures/{name}.{ext}" for name in (*EXPERIMENTS, "signal_propagation") for ext in style.FIGURE_FORMATS
    ]
    expected += [f"tables/{name}.{ext}" for name in EXPERIMENTS for ext in tables.TABLE_FORMATS] + [
        "claims.json",
        "claims.md",
    ]
    for relative in expected:
        assert (tmp_path / relative).stat().st_size > 0, relative
    verdicts = {claim["id"]: claim["verdict"] for claim in json.loads((tmp_path / "claims.json").read_text())}
    assert set(verdicts.values()) <= set(VERDICTS)
    assert verdicts["signal-bn-skip-linear"] == "inconclusive"  # one seed: a law's worst factor has no interval
    assert verdicts["imagenet-competitive"] == "not_run"


def test_experiment_figures_leave_the_signal_figure_to_the_signal_rule(tmp_path):
    """The figure rule's command writes only the outputs it is given; `report --only signal` redraws Figure 2."""
    write_results(tmp_path, depth_runs(), {"depth": EXPERIMENTS["depth"]}, signal_frame())
    out = tmp_path / "elsewhere"
    cli.main(
        [
            "figure",
            "--runs",
            str(tmp_path / "runs.parquet"),
            "--curves",
            str(tmp_path / "curves.parquet"),
            "--experiment",
            "depth",
            "--png",
            str(out / "a.png"),
            "--pdf",
            str(out / "b.pdf"),
        ]
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.pdf"] and not (tmp_path / "figures").exists()
    cli.main(["report", "--results", str(tmp_path), "--only", "signal"])
    assert (tmp_path / "figures" / "signal_propagation.png").stat().st_size > 0
    assert (tmp_path / "figures" / "signal_propagation.pdf").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["default", "gpu"])
def test_make_tables_rebuilds_each_committed_reference_to_its_committed_claims(tmp_path, reference):
    """A committed reference re-reports without training, and today's code and claims file judge it exactly as its
    committed claims.json says (every verdict, number and reason, and the claims file's sha256): a threshold or a
    check changed without rebuilding the references fails here."""
    folder = REPO / "results" / "reference" / reference
    for name in ("runs.parquet", "curves.parquet", "signal.parquet"):
        if (folder / name).exists():
            shutil.copy2(folder / name, tmp_path / name)
    command = [
        sys.executable,
        "-m",
        "skipinit",
        "report",
        "--results",
        str(tmp_path),
        "--only",
        "claims",
        "--claims-config",
        "config/claims.yaml",
    ]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=300)
    rebuilt, committed = (json.loads((path / "claims.json").read_text()) for path in (tmp_path, folder))
    assert rebuilt == committed
    digest = hashlib.sha256((REPO / "config" / "claims.yaml").read_bytes()).hexdigest()
    assert {entry["claims_sha256"] for entry in committed} == {digest}
    reasons = {claim["id"]: claim["evidence"]["reason"] for claim in committed}
    assert all(reasons.values())


@pytest.mark.slow
def test_make_tables_draws_the_default_references_figures_and_tables(tmp_path):
    reference = REPO / "results" / "reference" / "default"
    for name in ("runs.parquet", "curves.parquet", "signal.parquet"):
        shutil.copy2(reference / name, tmp_path / name)
    command = [sys.executable, "-m", "skipinit", "report", "--results", str(tmp_path), "--only", "figures", "tables"]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=300)
    for name in ("depth", "batch_size", "regularization"):
        for relative in (
            f"figures/{name}.png",
            f"figures/{name}.pdf",
            f"tables/{name}.md",
            f"tables/{name}.tex",
            f"tables/{name}.csv",
        ):
            assert (tmp_path / relative).stat().st_size > 0, relative


def test_caption_says_seeds_and_the_budget_the_table_reflects():
    runs = depth_runs()
    frame = tables.summary(runs, "depth", "depth")
    caption = tables.caption_of("depth", {"description": "hand-made"}, frame, runs)
    assert "mean ± sd over n = 2 seeds" in caption
    assert "Budget: 20 epoch(s) on the full training set, 2 seed(s) per cell. hand-made" in caption
    short = runs.assign(epochs=2, train_subset=2560, seed=0)
    caption = tables.caption_of("depth", {}, tables.summary(short, "depth", "depth"), short)
    assert (
        "from a single seed" in caption
        and "Budget: 2 epoch(s) on a training subset of 2,560 images, 1 seed(s)" in caption
    )


def test_a_diverged_run_scores_zero_even_with_the_chance_accuracy_the_engine_recorded():
    """The engine evaluates a diverged member (NaN logits: chance); ranking must not prefer it to a live run."""
    live = run_row(7.25, lr=0.005, variant="unnormalized")
    dead = {**run_row(10.0, lr=0.02, variant="unnormalized"), "diverged": True, "test_acc": 10.0}
    best = runtable.best_lr_summary(runs_frame([live, dead]), ["depth"])
    assert (
        best.loc[0, "best_lr"] == 0.005 and best.loc[0, "test_acc_mean"] == 7.25 and best.loc[0, "diverged_runs"] == 0
    )
    assert runtable.scored(runs_frame([live, dead]))["score"].tolist() == [7.25, 0.0]


def test_the_markdown_table_shows_the_papers_numbers_beside_ours(tmp_path):
    """The depth study's table ends with v1 Table 1 (config/paper_v1.yaml); a kind the paper's tables lack gets none."""
    write_results(tmp_path, pd.concat([depth_runs(), batch_runs()], ignore_index=True), EXPERIMENTS)
    paper = REPO / "config" / "paper_v1.yaml"
    for experiment in ("depth", "batch_size"):
        outputs = {fmt: tmp_path / f"{experiment}.{fmt}" for fmt in tables.TABLE_FORMATS}
        tables.write_tables(tmp_path / "runs.parquet", experiment, outputs, paper)
    depth = (tmp_path / "depth.md").read_text()
    assert (
        "The paper's numbers (v1 Table 1)" in depth
        and "| SkipInit, alpha = 0 | 93.3 ± 0.1 (2^-2) | 94.2 ± 0.1 (2^-2) |" in depth
    )
    assert "v1" not in (tmp_path / "batch_size.md").read_text() and "v1" not in (tmp_path / "depth.tex").read_text()
