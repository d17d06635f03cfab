"""The whole DAG through Snakemake on the smoke profile: artifacts, schemas, idempotence, lint."""

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from skipinit.record import CURVES_SCHEMA, RUNS_SCHEMA
from skipinit.runtable import read_experiment_meta

from conftest import REPO, snakemake

pytestmark = pytest.mark.slow


def test_smoke_profile_writes_every_artifact(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results" / "smoke"
    expected = [
        "runs.parquet",
        "curves.parquet",
        "signal.parquet",
        "figures/signal_propagation.png",
        "figures/signal_propagation.pdf",
    ]
    expected += ["claims.json", "claims.md"]
    expected += [f"figures/depth.{ext}" for ext in ("png", "pdf")] + [
        f"tables/depth.{ext}" for ext in ("md", "tex", "csv")
    ]
    for relative in expected:
        path = results / relative
        assert path.is_file() and path.stat().st_size > 0, relative


def test_an_adaptive_profile_looks_twice_and_merges_its_rounds(smoke_run):
    """The smoke profile has adaptive rounds: round 1's runs are aggregated and judged, the add_seeds checkpoint
    writes round 2's manifest (no smoke claim needs seeds: it adds nothing), and every claim is judged at the
    last look's alpha."""
    workdir, _ = smoke_run
    results = workdir / "results" / "smoke"
    first = pd.read_parquet(results / "rounds" / "1" / "runs.parquet")
    second = json.loads((results / "rounds" / "2" / "manifest.json").read_text())
    assert second["round"] == 2 and second["packs"] == {} and (results / "rounds" / "2" / "packs").is_dir()
    final = pd.read_parquet(results / "runs.parquet")
    assert sorted(final["cell_id"]) == sorted(first["cell_id"])
    assert {meta["looks"] for meta in read_experiment_meta(results / "runs.parquet").values()} == {2}
    # round 1's runs are the first look (alpha 0.005), the merged ones the last (0.04)
    assert {meta["look"] for meta in read_experiment_meta(results / "rounds" / "1" / "runs.parquet").values()} == {1}
    assert {meta["look"] for meta in read_experiment_meta(results / "runs.parquet").values()} == {2}
    judged = [c for c in json.loads((results / "claims.json").read_text()) if c["evidence"].get("experiments")]
    assert judged and all("holds at one-sided alpha 0.04" in c["evidence"]["interval_level"] for c in judged)
    assert all("at look 2 of 2" in c["evidence"]["interval_level"] for c in judged)


def test_runs_and_curves_parquet_schemas(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results" / "smoke"
    runs = pq.read_table(results / "runs.parquet")
    assert runs.schema.remove_metadata() == RUNS_SCHEMA
    assert runs.num_rows == 2 * 2 * 3  # depths x lrs x models
    frame = runs.to_pandas()
    assert frame["cell_id"].is_unique
    assert set(frame["status"]) <= {"ok", "diverged"}
    assert (frame["experiments"].map(list) == frame["experiments"].map(lambda _: ["depth"])).all()
    assert frame.loc[frame["status"] == "ok", "test_acc"].between(0, 100).all()
    assert (frame["device"] == "cpu").all() and frame["torch_version"].str.len().gt(0).all()
    assert json.loads(runs.schema.metadata[b"skipinit.experiments"])["depth"]["kind"] == "depth"
    curves = pq.read_table(results / "curves.parquet")
    assert curves.schema.remove_metadata() == CURVES_SCHEMA
    per_cell = curves.to_pandas().groupby("cell_id")["epoch"].max()
    completed = frame.set_index("cell_id")["epochs_completed"]
    assert (per_cell.reindex(completed.index) == completed).all()


def test_signal_parquet_schema(smoke_run):
    workdir, _ = smoke_run
    signal = pq.read_table(workdir / "results" / "smoke" / "signal.parquet").to_pandas()
    assert list(signal.columns) == [
        "model",
        "depth",
        "block",
        "seed",
        "skip_var",
        "skip_var_pooled",
        "branch_var",
        "bn_moving_var",
    ]
    assert set(signal["model"]) == {
        "linear-unnormalized",
        "linear-batchnorm",
        "conv-batchnorm",
        "conv-skipinit",
        "conv-unnormalized",
    }
    assert signal.loc[signal["model"] == "linear-unnormalized", "bn_moving_var"].isna().all()
    assert signal.loc[signal["model"] == "linear-batchnorm", "bn_moving_var"].notna().all()


def test_second_run_does_nothing(smoke_run):
    workdir, _ = smoke_run
    result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", "--dry-run", cwd=workdir)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_report_html_bundles_the_outputs(smoke_run):
    workdir, _ = smoke_run
    report = workdir / "results" / "smoke" / "report.html"
    snakemake("--configfile", "config/smoke.yaml", "--report", str(report), cwd=workdir)
    assert report.stat().st_size > 10_000


def test_snakemake_lint_is_clean():
    result = snakemake("--lint", cwd=REPO, check=False)
    assert result.returncode == 0 and "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_check_passes():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Columns that record when and where a run happened rather than what it computed.
VOLATILE_RUN_COLUMNS = ["wall_seconds", "images_per_second", "git_commit"]


def test_smoke_runs_equal_the_committed_fixture(smoke_run):
    """Deterministic CPU mode: every computed value of the smoke runs repeats bit for bit.

    The fixtures `tests/fixtures/smoke_runs*.parquet`, one per kind of CPU (`recorded.py`), were
    written by the code before the engine was split into modules (c8481b3, `make smoke` then
    results/smoke/runs.parquet); a refactoring that changes any loss, accuracy or divergence step
    fails here. On a CPU with no record, losses agree within a relative 1e-3, accuracies within 1 pp.
    """
    import pandas as pd

    from recorded import assert_repeats_a_record, variants

    workdir, _ = smoke_run

    def comparable(frame):
        return frame.drop(columns=VOLATILE_RUN_COLUMNS).sort_values("cell_id", ignore_index=True)

    records = [(path, comparable(pd.read_parquet(path))) for path in variants("smoke_runs", ".parquet")]
    columns = records[0][1].columns  # columns added later are not compared
    produced = comparable(pd.read_parquet(workdir / "results" / "smoke" / "runs.parquet"))[columns]

    accuracies = [column for column in columns if column.endswith("_acc")]

    def equal(got, expected):
        return got.equals(expected)

    def close(got, expected):
        """Another CPU's rounding: losses within a relative 1e-3, accuracies within 1 pp (an image or two)."""
        try:
            pd.testing.assert_frame_equal(got.drop(columns=accuracies), expected.drop(columns=accuracies), rtol=1e-3)
            pd.testing.assert_frame_equal(got[accuracies], expected[accuracies], rtol=0, atol=1.0)
        except AssertionError:
            return False
        return True

    def show(got, expected):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)

    assert_repeats_a_record(produced, records, equal, close, show)


def test_a_dry_run_writes_nothing(tmp_path):
    """`snakemake -n` on a fresh copy: the workflow writes no file (no results/, resources/, manifest); only
    Snakemake's own bookkeeping folder .snakemake/ (git-ignored) appears, as with any Snakemake call."""
    from conftest import copy_workflow

    (tmp_path / "repo").mkdir()
    workdir = copy_workflow(tmp_path / "repo")
    before = {path.relative_to(workdir) for path in workdir.rglob("*")}
    result = snakemake("-n", "--cores", "1", "--configfile", "config/smoke.yaml", cwd=workdir)
    assert "manifest" in result.stdout and "train" in result.stdout  # it did plan the whole DAG
    new = {path.relative_to(workdir) for path in workdir.rglob("*")} - before
    assert all(path.parts[0] == ".snakemake" for path in new if "__pycache__" not in path.parts), sorted(new)
    assert "/.snakemake/" in (REPO / ".gitignore").read_text().split()


def test_a_cluster_jobs_parse_reads_its_pack_file_and_expands_no_grid(smoke_run, tmp_path):
    """A SLURM job re-parses the workflow (`--mode remote`, its own target): it takes its cells from the pack file the
    manifest step wrote, so its parse does not grow with the sweep (bench/scale.py). Shown by a profile whose grid
    only expansion can refuse (depth 17 is no Wide-ResNet): the job's parse goes through, the whole workflow's does
    not."""
    import json

    workdir, _ = smoke_run
    content = json.loads((workdir / "results" / "smoke" / "manifest.json").read_text())
    key = next(iter(content["packs"]))
    assert json.loads((workdir / "results" / "smoke" / "packs" / f"{key}.json").read_text())[0]["depth"] in (10, 16)
    dataset, net, model, hyper, members = key.split("/")
    target = f"train:name=smoke,dataset={dataset},net={net},model={model},hyper={hyper},members={members}"
    unexpandable = tmp_path / "depth17.yaml"
    unexpandable.write_text("experiments:\n  depth:\n    grid:\n      depth: [10, 17]\n")
    job = "--allowed-rules train --mode remote --cores 1 -n -p --forceall".split()  # as the SLURM executor starts it
    result = snakemake(
        "--configfile", "config/smoke.yaml", str(unexpandable), "--target-jobs", target, *job, cwd=workdir
    )
    assert f"--cells-file results/smoke/packs/{key}.json" in result.stdout + result.stderr
    whole = snakemake("-n", "--configfile", "config/smoke.yaml", str(unexpandable), cwd=workdir, check=False)
    assert whole.returncode != 0 and "depth=17 is not a Wide-ResNet depth" in whole.stdout + whole.stderr
