"""A cluster's time limit: the stop signal mid-epoch saves the current step, and the resumed run equals an
uninterrupted one bit for bit (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch

from skipinit import data
from skipinit.engine import trainer
from skipinit.engine.checkpoint import load_checkpoint
from skipinit.engine.options import EngineOptions
from skipinit.engine.preemption import Preempted, StopSignal
from skipinit.grid import make_cell

from conftest import REPO, train_command

DETERMINISTIC = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1)
STEPS_PER_EPOCH = 10


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic(train_size=32 * STEPS_PER_EPOCH, test_size=100, num_classes=10, seed=3)


def cells():
    """Two members with their own seeds and dropout: batches, masks and BN statistics all must resume exactly."""
    base = {"dataset": "synthetic", "depth": 10, "width": 1, "batch_size": 32, "epochs": 3, "dropout": 0.2}
    return [make_cell({**base, "lr": 0.05, "seed": 0}), make_cell({**base, "lr": 0.1, "seed": 1})]


class SignalAtStep(StopSignal):
    """The real handler, with SIGTERM sent to this process at the `step`-th poll (after that many steps)."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.polls = step, 0

    def poll(self) -> bool:
        self.polls += 1
        if self.polls == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().poll()


def comparable(rows):
    return [
        {
            **row,
            "wall_seconds": None,
            "images_per_second": None,
            "curve": [{k: v for k, v in point.items() if k != "seconds"} for point in row["curve"]],
        }
        for row in rows
    ]


def test_a_stop_signal_mid_epoch_saves_the_step_and_the_resumed_run_is_bit_identical(dataset, tmp_path):
    expected = trainer.train_pack(
        cells(), dataset, DETERMINISTIC, checkpoint=tmp_path / "full.pt", log=lambda line: None
    )
    path = tmp_path / "ckpt.pt"
    with (
        SignalAtStep(STEPS_PER_EPOCH + 4) as stop,
        pytest.raises(Preempted, match="stopped by SIGTERM: saved step 4/10 of epoch 2"),
    ):
        trainer.train_pack(cells(), dataset, DETERMINISTIC, checkpoint=path, log=lambda line: None, stop=stop)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the context
    saved = load_checkpoint(path)
    assert (saved["epoch"], saved["step"], saved["partial"]["steps"]) == (1, STEPS_PER_EPOCH + 4, 4)
    assert len(saved["partial"]["dropout"]) == 2  # each member's own dropout generator, mid-epoch

    lines = []
    resumed = trainer.train_pack(cells(), dataset, DETERMINISTIC, checkpoint=path, log=lines.append)
    assert any("resuming from checkpoint" in line and "step 4 of epoch 2" in line for line in lines)
    assert comparable(resumed) == comparable(expected)
    final, uninterrupted = load_checkpoint(path), load_checkpoint(tmp_path / "full.pt")
    for key in ("params", "momentum", "alive", "diverged_at"):
        assert torch.equal(final[key], uninterrupted[key]), key
    for name, value in uninterrupted["buffers"].items():
        assert torch.equal(final["buffers"][name], value), name


def test_the_train_command_exits_on_the_signal_in_one_line_and_its_rerun_equals_an_uninterrupted_one(tmp_path):
    """The real process: SIGTERM arrives as epoch 1 ends (tests/signal_hook), so the stop falls inside epoch 2 of 3."""
    canonical = tmp_path / "synthetic.npz"
    data.save_canonical(data.synthetic(train_size=4000, test_size=100, num_classes=10, seed=4), canonical)
    cell = make_cell(
        {"dataset": "synthetic", "depth": 10, "width": 1, "batch_size": 25, "epochs": 3, "lr": 0.05, "seed": 0}
    )

    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def train_to_the_end(folder: str) -> None:
        subprocess.run(
            train_command([cell], canonical, tmp_path / folder),
            check=True,
            capture_output=True,
            env=environment,
            timeout=600,
        )

    train_to_the_end("full")
    cue = {
        "PYTHONPATH": f"{REPO / 'tests' / 'signal_hook'}{os.pathsep}{REPO / 'src'}",
        "SIGNAL_ON_LINE": "epoch 1/",
        "SIGNAL_NAME": "SIGTERM",
        "SIGNAL_TO": "self",
    }
    run = subprocess.run(
        train_command([cell], canonical, tmp_path / "cut"),
        capture_output=True,
        text=True,
        env={**environment, **cue},
        timeout=600,
    )
    stderr = run.stderr
    assert run.returncode != 0, "the run ended before the signal arrived"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("preempted: stopped by SIGTERM: saved step ") and "of epoch 2 to " in last, stderr[-2000:]
    assert "Traceback" not in stderr
    assert 0 < load_checkpoint(tmp_path / "cut" / "ckpt.pt")["partial"]["steps"] < 160

    train_to_the_end("cut")  # resumes from the checkpoint the signal left
    got, want = (json.loads((tmp_path / name / "result.json").read_text()) for name in ("cut", "full"))
    assert comparable(got) == comparable(want) and np.isfinite(got[0]["test_acc"])
