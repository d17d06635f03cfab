"""A result is what the cell did, and nothing else (issue: evidence).

- A run that failed for a reason other than training (a real out-of-memory on the CPU) is never
  scored: no claim counts it as a failure to train, the claim that needs it is inconclusive and
  names it, the train command exits non-zero, and a rerun trains only that pack.
- A cell's numbers do not depend on its pack: dropout draws from a generator of each member's own.
- A resume never mixes result-affecting settings.

Everything trains WRN-10-1 on synthetic images on the CPU in float32, deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from skipinit import data
from skipinit.claims.judge import NO_SIGNAL, judge, load_spec
from skipinit.engine import trainer
from skipinit.engine.checkpoint import load_checkpoint
from skipinit.engine.options import EngineOptions
from skipinit.grid import cell_id, make_cell
from skipinit.report import aggregate, tables

from conftest import REPO, copy_workflow, kill_in_second_epoch, snakemake, train_command

DETERMINISTIC = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1)
OOM_WIDTH = 4000  # WRN width 4000: one convolution's weights ask the CPU allocator for ~150 GB


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic(train_size=320, test_size=200, num_classes=10, seed=0)  # 10 steps of 32 per epoch


def cell(**overrides):
    settings = {
        "dataset": "synthetic",
        "depth": 10,
        "width": 1,
        "batch_size": 32,
        "epochs": 2,
        "lr": 0.05,
        "seed": 0,
        "weight_decay": 5e-4,
        "schedule": "halving",
        "dropout": 0.2,
    }
    return make_cell({**settings, **overrides})


def train(cells, dataset, options=DETERMINISTIC, checkpoint=None, lines=None):
    return trainer.train_pack(
        cells, dataset, options, checkpoint=checkpoint, log=lines.append if lines is not None else print
    )


METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")


def metrics(row: dict) -> dict:
    return {key: row[key] for key in METRICS}


def member_params(checkpoint, member: int) -> torch.Tensor:
    return load_checkpoint(checkpoint)["params"][member]


# ---------------------------------------------------------------------------------------------
# A cell's numbers do not depend on its pack
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("packing", ["channels", "vmap"])
def test_a_dropout_cell_gives_the_same_numbers_beside_any_pack_mate(dataset, tmp_path, packing):
    """Seed 0 beside seed 1 and beside seed 2: the same losses, accuracies and parameters, bit for bit."""
    options = dataclasses.replace(DETERMINISTIC, packing=packing)
    beside_1 = train([cell(seed=0), cell(seed=1)], dataset, options, tmp_path / "a.pt")
    beside_2 = train([cell(seed=0), cell(seed=2)], dataset, options, tmp_path / "b.pt")
    assert beside_1[0]["packing"] == beside_2[0]["packing"] == packing
    assert metrics(beside_1[0]) == metrics(beside_2[0])
    assert torch.equal(member_params(tmp_path / "a.pt", 0), member_params(tmp_path / "b.pt", 0))
    assert metrics(beside_1[1]) != metrics(beside_2[1])  # the mates themselves differ


def test_dropout_is_drawn_and_differs_between_seeds(dataset):
    """Guards the test above against a dropout that does nothing: without it the cell trains otherwise."""
    with_dropout, without = train([cell()], dataset)[0], train([cell(dropout=0.0)], dataset)[0]
    assert metrics(with_dropout) != metrics(without)


def test_a_packed_dropout_cell_differs_from_itself_alone_only_by_rounding(dataset, tmp_path):
    """Channel-packed against sequential (alone): the same masks, so only the rounding of a grouped against a plain
    convolution remains. Measured on this data (fp32, dropout 0.2): after one step the parameters are 2.3e-9 apart
    relative to their norm (1.6e-9 without dropout); after 20 steps 1.0e-5, grown by the chaotic amplification of
    single ReLU flips that tests/test_train.py describes (3e-6..1.2e-5 there without dropout). The same cell with
    other masks (dropout 0.25 instead of 0.2) ends 1.8e-3 apart: a mask drawn from the pack's seeds would show."""
    one_step = data.synthetic(train_size=32, test_size=64, num_classes=10, seed=0)
    cells = [cell(seed=0, lr=0.02, epochs=1), cell(seed=1, lr=0.01, epochs=1)]
    train(cells, one_step, checkpoint=tmp_path / "pack1.pt", lines=[])
    train(cells[:1], one_step, checkpoint=tmp_path / "alone1.pt", lines=[])
    a, b = member_params(tmp_path / "pack1.pt", 0), member_params(tmp_path / "alone1.pt", 0)
    assert (a - b).norm().item() <= 1e-7 * b.norm().item()

    packed = train([cell(seed=0, lr=0.02), cell(seed=1, lr=0.01)], dataset, checkpoint=tmp_path / "pack.pt", lines=[])
    alone = train([cell(seed=0, lr=0.02)], dataset, checkpoint=tmp_path / "alone.pt", lines=[])
    a, b = member_params(tmp_path / "pack.pt", 0), member_params(tmp_path / "alone.pt", 0)
    assert (a - b).norm().item() <= 1e-4 * b.norm().item()
    for key in ("test_loss", "train_loss"):
        assert math.isclose(packed[0][key], alone[0][key], rel_tol=1e-4), key
    assert abs(packed[0]["test_acc"] - alone[0]["test_acc"]) <= 0.5


# ---------------------------------------------------------------------------------------------
# A resume never mixes settings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [{"precision": "bf16"}, {"micro_batch": 16}], ids=["precision", "micro_batch"])
def test_a_pack_stopped_under_one_setting_starts_over_under_another(dataset, tmp_path, change):
    cells = [cell(epochs=3, seed=0), cell(epochs=3, seed=1, lr=0.1)]
    path = tmp_path / "ckpt.pt"
    kill_in_second_epoch(lambda log: trainer.train_pack(cells, dataset, DETERMINISTIC, checkpoint=path, log=log))
    assert load_checkpoint(path)["settings"]["precision"] == "fp32"
    changed = dataclasses.replace(DETERMINISTIC, **change)
    lines = []
    resumed = train(cells, dataset, changed, path, lines)
    ((key, value),) = change.items()
    assert any(
        f"other result-affecting settings: {key}" in line and "starting the pack over" in line for line in lines
    ), lines
    assert not any("resuming from checkpoint" in line for line in lines)
    fresh = train(cells, dataset, changed, tmp_path / "fresh.pt")
    assert [metrics(row) for row in resumed] == [metrics(row) for row in fresh]
    assert all(row[key] == value for row in resumed)


def test_a_pack_resumed_under_the_same_settings_continues(dataset, tmp_path):
    cells = [cell(epochs=3)]
    path = tmp_path / "ckpt.pt"
    kill_in_second_epoch(lambda log: trainer.train_pack(cells, dataset, DETERMINISTIC, checkpoint=path, log=log))
    lines = []
    train(cells, dataset, DETERMINISTIC, path, lines)
    assert any("resuming from checkpoint" in line for line in lines)


def write_packs(folder, packs: list[list[dict]]) -> list:
    paths = []
    folder.mkdir()
    for index, rows in enumerate(packs):
        (folder / f"pack{index}").mkdir()
        paths.append(folder / f"pack{index}" / "result.json")
        paths[-1].write_text(json.dumps(rows))
    return paths


def parquet_in(folder: Path) -> tuple[Path, Path]:
    return folder / "runs.parquet", folder / "curves.parquet"


def manifest_of(runs: list[dict]) -> dict:
    ids = [cell_id({key: row[key] for key in cell()}) for row in runs]
    return {"name": "t", "experiments": {"depth": {"kind": "depth", "description": "", "cells": ids}}}


def test_aggregate_refuses_seeds_of_one_cell_made_under_different_precisions(dataset, tmp_path):
    """Two seeds of one cell, one recorded as run in bf16 (a requeue onto a node where `auto` resolves otherwise)."""
    rows = [train([cell(seed=seed)], dataset, lines=[])[0] for seed in (0, 1)]
    assert all(row["precision"] == "fp32" and row["micro_batch"] == 32 and row["packing"] == "plain" for row in rows)
    runs = aggregate.collect(
        write_packs(tmp_path / "same", [[rows[0]], [rows[1]]]), manifest_of(rows), *parquet_in(tmp_path / "same")
    )
    assert list(runs["precision"]) == ["fp32", "fp32"] and list(runs["deterministic"]) == [True, True]
    mixed = write_packs(tmp_path / "mixed", [[rows[0]], [{**rows[1], "precision": "bf16"}]])
    with pytest.raises(aggregate.MixedSettings, match=r"different precision \('fp32': .*s0; 'bf16': .*s1\)"):
        aggregate.collect(mixed, manifest_of(rows), *parquet_in(tmp_path / "mixed"))
    assert not (tmp_path / "mixed" / "curves.parquet").exists()  # nothing written from runs that cannot be pooled
    # Another cell (another depth) may run otherwise; a setting an older version did not record is unknown, not
    # different.
    other = {**rows[1], "depth": 16, "precision": "bf16"}
    older = {key: value for key, value in rows[1].items() if key != "channels_last"}
    aggregate.check_settings([{**row, "cell_id": str(index)} for index, row in enumerate([rows[0], other, older])])


# ---------------------------------------------------------------------------------------------
# Failed runs are no evidence
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oom_job(tmp_path_factory):
    """The train command on a pack that runs out of memory for real, and two packs that train."""
    folder = tmp_path_factory.mktemp("oom")
    canonical = folder / "synthetic.npz"
    data.save_canonical(data.synthetic(train_size=320, test_size=200, num_classes=10, seed=0), canonical)
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    base = {"dropout": 0.0, "epochs": 1, "depth": 10}
    packs = {
        "oom": [cell(**base, variant="unnormalized", width=OOM_WIDTH, lr=lr) for lr in (0.05, 0.1)],
        "bn": [cell(**base, variant="batchnorm", lr=lr) for lr in (0.05, 0.1)],
        "skipinit": [cell(**base, variant="skipinit", alpha_init="0", lr=lr) for lr in (0.05, 0.1)],
    }
    runs = {}
    for name, cells in packs.items():
        (folder / name).mkdir()
        runs[name] = subprocess.run(
            train_command(cells, canonical, folder / name), capture_output=True, text=True, env=environment, timeout=600
        )
    return folder, runs


def test_the_train_command_exits_non_zero_on_out_of_memory_after_writing_its_results(oom_job):
    folder, runs = oom_job
    run = runs["oom"]
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: 2 of 2 cell(s) failed, not for a reason of training")
        and "can't allocate memory" in last
    )
    assert "rerun the same command" in last and "Traceback" not in run.stderr
    rows = json.loads((folder / "oom" / "result.json").read_text())
    assert [row["status"] for row in rows] == ["failed", "failed"] and all(row["test_acc"] is None for row in rows)
    assert not (folder / "oom" / "ckpt.pt.done.json").exists()  # nothing recorded as finished: a rerun retrains
    assert runs["bn"].returncode == 0 and runs["skipinit"].returncode == 0


def test_no_claim_counts_an_out_of_memory_run_as_a_failure_to_train(oom_job):
    """The trainability check would read a missing accuracy as 'fails': the failed runs must never reach it."""
    folder, _ = oom_job
    paths = [folder / name / "result.json" for name in ("oom", "bn", "skipinit")]
    runs = aggregate.collect(
        paths, manifest_of([row for path in paths for row in json.loads(path.read_text())]), *parquet_in(folder)
    )
    failed_ids = sorted(runs.loc[runs["status"] == "failed", "cell_id"])
    assert len(failed_ids) == 2
    spec = load_spec(REPO / "config" / "claims.yaml")
    claim = next(c for c in spec["claims"] if c["id"] == "depth-unnormalized-fails")
    claim = {**claim, "params": {**claim["params"], "min_depth": 10, "must_fail": ["unnormalized"]}}
    entry = judge(claim, runs, NO_SIGNAL, {"depth": {"kind": "depth"}}, spec["models"], noise=spec["noise"])
    assert entry["verdict"] == "inconclusive"
    assert sorted(f["cell_id"] for f in entry["evidence"]["failed_runs"]) == failed_ids
    assert all(cell_id in entry["evidence"]["reason"] for cell_id in failed_ids)
    assert "can't allocate memory" in entry["evidence"]["reason"]
    # A claim that does not need the failed model is judged as before, without them.
    other = {**claim, "params": {**claim["params"], "must_fail": [], "must_train": ["batchnorm", "skipinit"]}}
    entry = judge(other, runs, NO_SIGNAL, {"depth": {"kind": "depth"}}, spec["models"], noise=spec["noise"])
    assert "failed_runs" not in entry["evidence"]
    # The tables leave them out.
    table = tables.summary(runs[runs["status"] != "failed"], "depth", "depth")
    assert "unnormalized" not in set(table.get("model", []))


def test_a_rerun_trains_only_the_failed_pack(tmp_path):
    """Through Snakemake: the out-of-memory job fails (the run exits non-zero, the other job's results stay), and
    the next run schedules that one training job alone."""
    workdir = copy_workflow(tmp_path)
    profile = {
        "name": "oom",
        "dataset": "synthetic",
        "data_source": "synthetic",
        "data_path": None,
        "synthetic": {"train_size": 64, "test_size": 32, "seed": 0},
        "device": "cpu",
        "precision": "fp32",
        "threads": 1,
        "training": {"arch": "wrn", "width": 1, "epochs": 1, "batch_size": 32, "depth": 10},
        "experiments": {
            "depth": {
                "kind": "depth",
                "description": "one pack that fits, one that does not",
                "grid": {"lr": [0.1], "seed": [0]},
                "models": [{"variant": "batchnorm"}, {"variant": "unnormalized", "width": OOM_WIDTH}],
            }
        },
    }
    (workdir / "config" / "oom.yaml").write_text(json.dumps(profile))
    first = snakemake(
        "--cores", "1", "--keep-going", "--configfile", "config/oom.yaml", "--until", "train", cwd=workdir, check=False
    )
    assert first.returncode != 0
    results = sorted((workdir / "results" / "oom" / "cells").rglob("result.json"))
    assert len(results) == 1 and "batchnorm" in str(results[0])
    kept = results[0].stat().st_mtime_ns
    again = snakemake("--cores", "1", "--configfile", "config/oom.yaml", "--until", "train", "--dry-run", cwd=workdir)
    stats = again.stdout.split("Job stats:")[1].split("Reasons:")[0]
    assert re.findall(r"^(\w+)\s+(\d+)$", stats, re.M) == [("train", "1"), ("total", "1")], again.stdout
    logs = {
        path.parent.parent.name: path.read_text()
        for path in (workdir / "results" / "oom" / "logs" / "train").rglob("*.log")
    }
    assert "failed, not for a reason of training" in logs["unnormalized"].strip().splitlines()[-1]
    assert results[0].stat().st_mtime_ns == kept
