"""The CPU engine: precision by what the CPU can do, and a job that trains its cells one after another.

bf16 autocast runs where the CPU multiplies bf16 natively (AVX512-BF16, AMX) and fp32 elsewhere;
every row records what ran. `packing: sequential` trains a job's cells one by one in one process,
each exactly as a job of its own would, and resumes inside the group after a kill.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_preemption import SignalAtStep

from skipinit import data
from skipinit.engine import job, trainer
from skipinit.engine.checkpoint import load_checkpoint
from skipinit.engine.options import EngineOptions
from skipinit.engine.preemption import Preempted
from skipinit.engine.runtime import resolve_precision
from skipinit.grid import make_cell

FP32 = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1)
BF16 = EngineOptions(device="cpu", precision="bf16", deterministic=True, threads=1)
SEQUENTIAL = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1, packing="sequential")
# bf16 rounds every conv input to 8 mantissa bits; over 3 short epochs the mean training loss moved
# by at most 3e-4 relative to fp32 (batch norm and SkipInit, measured): 1e-2 leaves room, and a
# trajectory that does not track fp32 (a wrong cast, BN statistics in bf16) fails it.
BF16_LOSS_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic(train_size=320, test_size=200, num_classes=10, seed=0)  # 10 steps per epoch


def cell(**overrides):
    settings = {"dataset": "synthetic", "depth": 10, "width": 1, "batch_size": 32, "epochs": 2, "lr": 0.05, "seed": 0}
    return make_cell({**settings, **overrides})


def quiet(line: str) -> None:
    pass


@pytest.mark.parametrize(
    "requested, device, native, expected",
    [
        ("auto", "cpu", True, "bf16"),
        ("auto", "cpu", False, "fp32"),
        ("auto", "cuda", False, "bf16"),
        ("bf16", "cpu", False, "bf16"),
        ("fp32", "cpu", True, "fp32"),
        ("fp32", "cuda", True, "fp32"),
    ],
)
def test_precision_follows_the_device(requested, device, native, expected):
    assert resolve_precision(requested, torch.device(device), native_bf16=native) == expected


def test_an_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"precision='fp16' is unknown; allowed: auto, bf16, fp32"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("variant", ["batchnorm", "skipinit"])
def test_bf16_trajectory_tracks_fp32_and_each_row_records_what_ran(dataset, tmp_path, variant):
    cells = [cell(variant=variant, epochs=3)]
    fp32 = trainer.train_pack(cells, dataset, FP32, log=quiet)[0]
    bf16 = trainer.train_pack(cells, dataset, BF16, checkpoint=tmp_path / "bf16.pt", log=quiet)[0]
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    for exact, rounded in zip(fp32["curve"], bf16["curve"]):
        assert rounded["train_loss"] == pytest.approx(exact["train_loss"], rel=BF16_LOSS_TOLERANCE)
        assert rounded["train_loss"] != exact["train_loss"]  # bf16 really ran: its rounding shows
    # Batch-norm statistics and every parameter stay float32 under autocast.
    state = load_checkpoint(tmp_path / "bf16.pt")
    assert state["params"].dtype == torch.float32
    assert all(value.dtype in (torch.float32, torch.int64) for value in state["buffers"].values())


def run_job(cells, dataset, folder, options, lines=None):
    return job.train_cells(cells, dataset, options, folder / "job.pt", log=lines.append if lines is not None else quiet)


def comparable(row: dict) -> dict:
    """A result without what differs between any two runs of the same cell: timings."""
    timings = {"wall_seconds", "images_per_second"}
    curve = [{key: value for key, value in point.items() if key != "seconds"} for point in row["curve"]]
    return {**{key: value for key, value in row.items() if key not in timings}, "curve": curve}


@pytest.fixture(scope="module")
def group_cells():
    return [cell(lr=0.05, dropout=0.2), cell(lr=0.1, dropout=0.2), cell(lr=0.05, seed=1, dropout=0.2)]


@pytest.fixture(scope="module")
def single_jobs(dataset, group_cells, tmp_path_factory):
    return [run_job([one], dataset, tmp_path_factory.mktemp("single"), FP32)[0] for one in group_cells]


def test_a_sequential_group_gives_each_cell_the_result_of_its_own_job(dataset, group_cells, single_jobs, tmp_path):
    lines = []
    grouped = run_job(group_cells, dataset, tmp_path, SEQUENTIAL, lines)
    assert [comparable(row) for row in grouped] == [comparable(row) for row in single_jobs]
    assert all(row["pack_size"] == 1 for row in grouped)
    assert [line for line in lines if line.startswith("member ")] == [
        "member 1/3: lr=0.05 seed=0",
        "member 2/3: lr=0.1 seed=0",
        "member 3/3: lr=0.05 seed=1",
    ]


def test_a_stopped_group_resumes_inside_the_group_and_equals_an_uninterrupted_one(
    dataset, group_cells, single_jobs, tmp_path
):
    steps_per_member = 2 * 10  # 2 epochs of 10 steps
    with SignalAtStep(steps_per_member + 3) as stop, pytest.raises(Preempted, match="saved step 3/10 of epoch 1"):
        job.train_cells(group_cells, dataset, SEQUENTIAL, tmp_path / "job.pt", log=quiet, stop=stop)
    recorded = json.loads((tmp_path / "job.pt.member0.done.json").read_text())
    assert recorded["cell"] == group_cells[0] and load_checkpoint(tmp_path / "job.pt.member1")["partial"]["steps"] == 3

    lines = []
    resumed = run_job(group_cells, dataset, tmp_path, SEQUENTIAL, lines)
    assert any(line.startswith("member 1/3 already finished") for line in lines)
    assert any("resuming from checkpoint" in line and "job.pt.member1" in line for line in lines)
    assert [comparable(row) for row in resumed] == [comparable(row) for row in single_jobs]


def test_a_pack_trainer_refuses_a_sequential_pack(dataset, group_cells):
    with pytest.raises(ValueError, match="one after another"):
        trainer.PackTrainer(group_cells[:2], dataset, SEQUENTIAL, log=quiet)
