"""The training step against a committed record of the engine before the step became capture-safe.

`tests/fixtures/step_reference.json` holds, for a few small deterministic CPU runs (two epochs of
WRN-10-1 on synthetic data), sha256 digests of the final parameters, momenta and BN buffers, the
per-epoch losses as exact float hex, and where each member diverged. It was written by the engine
of commit 8db6c0a (Python-int step counter, rebound `diverged_at`); regenerate it only on purpose:

    PYTHONPATH=src python tests/test_step_reference.py > tests/fixtures/step_reference.json
"""

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from skipinit import data
from skipinit.engine import trainer
from skipinit.engine.checkpoint import load_checkpoint
from skipinit.engine.options import EngineOptions
from skipinit.grid import make_cell

FIXTURE = Path(__file__).parent / "fixtures" / "step_reference.json"
OPTIONS = dict(device="cpu", precision="fp32", deterministic=True, threads=1)


def cell(**overrides):
    settings = {"dataset": "synthetic", "depth": 10, "width": 1, "batch_size": 32, "epochs": 2, "lr": 0.02, "seed": 0,
                "weight_decay": 5e-4, "schedule": "halving"}
    return make_cell({**settings, **overrides})


CASES = {
    "one_cell": ([cell(variant="batchnorm")], {}),
    "pack_of_3_one_diverges": ([cell(variant="unnormalized", seed=0), cell(variant="unnormalized", lr=1e4, seed=1),
                                cell(variant="unnormalized", lr=0.05, seed=2)], {}),
    "micro_batch_ghost_bn_dropout": ([cell(variant="batchnorm", ghost_batch_size=8, dropout=0.2)], {"micro_batch": 16}),
    "fixup_shared_seed": ([cell(variant="fixup", lr=0.05), cell(variant="fixup", lr=0.1)], {}),
}


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def record(cells: list[dict], options: dict) -> dict:
    dataset = data.synthetic(train_size=320, test_size=200, num_classes=10, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "pack.pt"
        results = trainer.train_pack(cells, dataset, EngineOptions(**OPTIONS, **options), checkpoint=checkpoint, log=lambda line: None)
        state = load_checkpoint(checkpoint)
    return {
        "params": digest(state["params"]), "momentum": digest(state["momentum"]),
        "buffers": {name: digest(value) for name, value in sorted(state["buffers"].items())},
        "diverged_at": state["diverged_at"].tolist(), "step": state["step"],
        "train_loss": [[float(point["train_loss"]).hex() for point in result["curve"]] for result in results],
        "test_loss": [[float(point["test_loss"]).hex() for point in result["curve"]] for result in results],
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_step_reproduces_the_recorded_engine_bit_for_bit(case):
    expected = json.loads(FIXTURE.read_text())[case]
    assert record(*CASES[case]) == expected


if __name__ == "__main__":
    json.dump({case: record(*CASES[case]) for case in sorted(CASES)}, sys.stdout, indent=1, sort_keys=True)
    print()
