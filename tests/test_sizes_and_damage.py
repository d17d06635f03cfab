"""Settings only the dataset's size can judge, and damaged results: one line naming the key or file, nothing lost.

- A subset larger than the dataset, a batch larger than the images a cell trains on, a ghost batch that
  does not divide the batch: refused at plan time where the size is known (synthetic sizes, a prepared
  canonical file's header), else by the `check_sizes` job before any training job.
- A truncated or foreign result.json: aggregation names it, moves it aside, keeps every other cell; a
  damaged runs.parquet or curves.parquet is refused by `report`/`scorecard` before any work.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from skipinit import cli, data, manifest, profile
from skipinit.config import size_problem, size_requirements
from skipinit.engine import trainer
from skipinit.engine.options import EngineOptions
from skipinit.grid import cell_id
from skipinit.report import aggregate
from skipinit.vocab import CELL_KEYS

from conftest import REPO, copy_workflow
from test_profiles import SMOKE, refusal, smoke_with

DETERMINISTIC = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("sizes"))


def with_training(**changes) -> str:
    return smoke_with(training={**SMOKE["training"], **changes})


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"train_subset": 300},
            "experiments.depth: train_subset=300 exceeds the 256 training images of synthetic; use at most 256",
        ),
        (
            {"test_subset": 200},
            "experiments.depth: test_subset=200 exceeds the 128 test images of synthetic; use at most 128",
        ),
        ({"batch_size": 512}, "experiments.depth: batch_size=512 exceeds the 256 training images a cell trains on"),
        (
            {"train_subset": 100, "batch_size": 128},
            "batch_size=128 exceeds the 100 training images a cell trains on (train_subset 100)",
        ),
    ],
)
def test_sizes_the_synthetic_profile_knows_are_refused_at_plan_time(workdir, changes, expected):
    assert expected in refusal(workdir, with_training(**changes))


def test_a_ghost_batch_that_does_not_divide_the_batch_is_refused(workdir):
    text = smoke_with(
        experiments={
            "depth": {**SMOKE["experiments"]["depth"], "models": [{"variant": "batchnorm", "ghost_batch_size": 12}]}
        }
    )
    line = refusal(workdir, text)
    assert (
        "ghost_batch_size=12 does not divide batch_size=32; choose a divisor of 32, or 0 for plain batch norm" in line
    )


def canonical_profile(tmp_path, data_checked: bool = True, **training) -> profile.Resolved:
    """A profile on a prepared canonical file of 200 train and 50 test images, resolved as the workflow resolves it."""
    config = yaml.safe_load(
        smoke_with(dataset="tiny", data_source="synthetic", training={**SMOKE["training"], **training})
    )
    config["data_source"] = "cifar10"  # not synthetic: the size comes from the prepared file alone
    config["data_path"] = str(tmp_path)
    config["data_download"] = False
    config["claims"] = str(
        REPO / "config" / "claims.yaml"
    )  # this workdir holds no workflow: its claims file is the checkout's
    prepared = tmp_path / "resources" / "datasets" / "tiny.npz"
    prepared.parent.mkdir(parents=True, exist_ok=True)
    if not prepared.exists():
        data.save_canonical(data.synthetic(train_size=200, test_size=50, seed=1), prepared)
    path = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return profile.resolve([path], workdir=tmp_path, data=data_checked)


def test_a_prepared_canonical_file_judges_the_sizes_from_its_header(tmp_path):
    with pytest.raises(profile.ProfileError, match="train_subset=300 exceeds the 200 training images of tiny"):
        canonical_profile(tmp_path, train_subset=300)
    canonical_profile(tmp_path, train_subset=160)  # fits: no error


def test_the_check_sizes_job_refuses_in_one_line_and_keeps_the_dataset(tmp_path):
    """Where the size is not known at plan time: the job after data preparation, before any training."""
    prepared = tmp_path / "resources" / "datasets" / "tiny.npz"
    experiments = canonical_profile(
        tmp_path, data_checked=False, batch_size=256
    ).experiments  # as before the file exists
    marker = tmp_path / "sizes.ok"
    requirements = json.dumps(size_requirements(experiments))
    with pytest.raises(SystemExit, match=r"^error: experiments.depth: batch_size=256 exceeds the 200 training images"):
        cli.main(
            [
                "check-sizes",
                "--dataset",
                str(prepared),
                "--name",
                "tiny",
                "--requirements",
                requirements,
                "--out",
                str(marker),
            ]
        )
    assert prepared.exists() and not marker.exists()
    fitting = json.dumps(size_requirements(canonical_profile(tmp_path, batch_size=32).experiments))
    cli.main(
        ["check-sizes", "--dataset", str(prepared), "--name", "tiny", "--requirements", fitting, "--out", str(marker)]
    )
    assert marker.exists()
    assert size_problem(size_requirements(experiments), 256, 50, "tiny") is None


# --- damaged results -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The smoke profile's depth-10 cells, trained for real and laid out as the workflow lays them out."""
    smoke = profile.resolve([REPO / "config" / "smoke.yaml"])
    content = smoke.manifest()
    folder = tmp_path_factory.mktemp("cells")
    (folder / "manifest.json").write_text(json.dumps(content))
    dataset = data.synthetic(train_size=256, test_size=128, seed=0)
    paths = []
    for cell in [c for c in smoke.experiments["depth"] if c["depth"] == 10]:
        rows = trainer.train_pack([cell], dataset, DETERMINISTIC, log=lambda line: None)
        path = folder / "cells" / cell_id(cell) / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rows))
        paths.append(path)
    return content, paths


def copy_cells(trained, tmp_path):
    content, paths = trained
    shutil.copytree(paths[0].parents[5], tmp_path / "cells")
    (tmp_path / "manifest.json").write_text(json.dumps(content))
    return content, [tmp_path / path.relative_to(paths[0].parents[5].parent) for path in paths]


def test_curves_carry_each_cells_settings_exactly_as_runs(trained, tmp_path, monkeypatch):
    content, paths = trained
    monkeypatch.setattr(aggregate, "_BATCH_POINTS", 3)  # curves streamed in many batches, as a large sweep's are
    runs = aggregate.collect(paths, content, tmp_path / "runs.parquet", tmp_path / "curves.parquet")
    curves = pd.read_parquet(tmp_path / "curves.parquet")
    assert len(curves) == sum(len(row["curve"]) for path in paths for row in json.loads(path.read_text()))
    assert all(list(names) == ["depth"] for names in runs["experiments"])  # membership: the manifest's
    shared = [*CELL_KEYS, "net", "model", "label"]  # every cell setting and identity column both files carry
    assert set(shared) <= set(curves.columns) and "lr_now" in curves.columns
    merged = curves.merge(runs[["cell_id", *shared]], on="cell_id", suffixes=("", "_run"))
    for column in shared:
        assert merged[column].equals(merged[f"{column}_run"]), column
    last_lr = curves.groupby("cell_id")["lr_now"].min()
    assert (
        last_lr < runs.set_index("cell_id")["lr"].loc[last_lr.index]
    ).all()  # the schedule's own lr, in its own column


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda text: text[: len(text) // 2], "is truncated or not JSON"),
        (lambda text: json.dumps([{"status": "ok"}]), "lacks "),
        (lambda text: "{}", "not a list of results"),
    ],
)
def test_a_damaged_result_is_named_moved_aside_and_the_rest_kept(trained, tmp_path, damage, reason):
    _, paths = copy_cells(trained, tmp_path)
    paths[1].write_text(damage(paths[1].read_text()))
    kept = {path: path.read_text() for path in (paths[0], *paths[2:])}
    with pytest.raises(SystemExit) as refused:
        cli.main(
            [
                "aggregate",
                *map(str, paths),
                "--runs",
                str(tmp_path / "runs.parquet"),
                "--curves",
                str(tmp_path / "curves.parquet"),
                "--manifest",
                str(tmp_path / "manifest.json"),
            ]
        )
    message = str(refused.value)
    assert message.startswith(f"error: {paths[1]} ") and reason in message and "rerun the same command" in message
    assert (
        len(message.splitlines()) == 1 and not paths[1].exists() and paths[1].with_name("result.json.damaged").exists()
    )
    assert all(path.read_text() == text for path, text in kept.items())


def test_a_result_of_other_cells_is_refused_as_foreign(trained, tmp_path):
    content, paths = copy_cells(trained, tmp_path)
    paths[0].write_text(paths[1].read_text())  # another pack's cells in this pack's folder
    with pytest.raises(aggregate.DamagedResults, match="not the ones its folder names"):
        aggregate.collect(paths, content, tmp_path / "runs.parquet", tmp_path / "curves.parquet")
    assert not (tmp_path / "curves.parquet").exists() and not (tmp_path / "runs.parquet").exists()


def test_a_damaged_manifest_is_refused_in_one_line(trained, tmp_path):
    _, paths = copy_cells(trained, tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "smoke"}))
    with pytest.raises(
        SystemExit, match=r"^error: .*manifest.json lacks profile_files, overrides, experiments, packs, config"
    ):
        cli.main(
            [
                "aggregate",
                *map(str, paths),
                "--runs",
                str(tmp_path / "runs.parquet"),
                "--curves",
                str(tmp_path / "curves.parquet"),
                "--manifest",
                str(tmp_path / "manifest.json"),
            ]
        )
    assert manifest.KEYS[0] == "name" and all(path.exists() for path in paths)


@pytest.mark.parametrize("name", ["runs.parquet", "curves.parquet"])
def test_a_damaged_parquet_is_refused_before_any_report(tmp_path, name):
    reference = REPO / "results" / "reference" / "default"
    for part in ("runs.parquet", "curves.parquet", "signal.parquet"):
        shutil.copy2(reference / part, tmp_path / part)
    blob = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(blob[: len(blob) // 3])
    with pytest.raises(SystemExit, match=rf"^error: {tmp_path / name} is not a readable Parquet file"):
        cli.main(["report", "--results", str(tmp_path)])
    assert not (tmp_path / "figures").exists() and not (tmp_path / "claims.json").exists()
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / name)  # another file under the name
    with pytest.raises(SystemExit, match=rf"^error: {tmp_path / name} lacks the columns cell_id"):
        cli.main(
            [
                "claims",
                "--runs",
                str(tmp_path / "runs.parquet"),
                "--curves",
                str(tmp_path / "curves.parquet"),
                "--claims-config",
                str(REPO / "config" / "claims.yaml"),
                "--json",
                str(tmp_path / "c.json"),
                "--md",
                str(tmp_path / "c.md"),
            ]
        )
    assert not (tmp_path / "c.json").exists()
