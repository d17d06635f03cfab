"""The training step against a committed record of the engine before the step became capture-safe.

`tests/fixtures/step_reference*.json` hold, for a few small deterministic CPU runs (two epochs of
WRN-10-1 on synthetic data), sha256 digests of the final parameters, momenta and BN buffers, the
per-epoch losses as exact float hex, and where each member diverged, one file per kind of CPU
(`recorded.py`: AMD EPYC in `step_reference.json`, an AVX-512 Xeon in
`step_reference.genuineintel-avx512.json`). All were written by the engine of commit 2b90e6f
(Python-int step counter, rebound `diverged_at`); record another CPU only from that commit:

    git worktree add /tmp/old 2b90e6f && cd /tmp/old && PYTHONPATH=src python tests/test_step_reference.py \
        > <repo>/tests/fixtures/step_reference.<cpu>.json    # <cpu>: recorded.cpu_label()

On a CPU with no record the losses must agree within a relative 1e-4 (and divergence exactly).
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

from recorded import assert_repeats_a_record, variants

OPTIONS = dict(device="cpu", precision="fp32", deterministic=True, threads=1)


def cell(**overrides):
    settings = {
        "dataset": "synthetic",
        "depth": 10,
        "width": 1,
        "batch_size": 32,
        "epochs": 2,
        "lr": 0.02,
        "seed": 0,
        "weight_decay": 5e-4,
        "schedule": "halving",
    }
    return make_cell({**settings, **overrides})


CASES = {
    "one_cell": ([cell(variant="batchnorm")], {}),
    "pack_of_3_one_diverges": (
        [
            cell(variant="unnormalized", seed=0),
            cell(variant="unnormalized", lr=1e4, seed=1),
            cell(variant="unnormalized", lr=0.05, seed=2),
        ],
        {},
    ),
    "micro_batch_ghost_bn_dropout": ([cell(variant="batchnorm", ghost_batch_size=8, dropout=0.2)], {"micro_batch": 16}),
    "fixup_shared_seed": ([cell(variant="fixup", lr=0.05), cell(variant="fixup", lr=0.1)], {}),
}


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def record(cells: list[dict], options: dict, graph_backend=None, log=lambda line: None) -> dict:
    """A deterministic run's digest; `graph_backend` stands in for CUDA graphs (tests/test_graphs.py)."""
    dataset = data.synthetic(train_size=320, test_size=200, num_classes=10, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "pack.pt"
        results = trainer.train_pack(
            cells,
            dataset,
            EngineOptions(**OPTIONS, **options),
            checkpoint=checkpoint,
            log=log,
            graph_backend=graph_backend,
        )
        state = load_checkpoint(checkpoint)
    return {
        "params": digest(state["params"]),
        "momentum": digest(state["momentum"]),
        "buffers": {name: digest(value) for name, value in sorted(state["buffers"].items())},
        "diverged_at": state["diverged_at"].tolist(),
        "step": state["step"],
        "train_loss": [[float(point["train_loss"]).hex() for point in result["curve"]] for result in results],
        "test_loss": [[float(point["test_loss"]).hex() for point in result["curve"]] for result in results],
    }


def records(case: str) -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())[case]) for path in variants("step_reference", ".json")]


def close(got: dict, expected: dict) -> bool:
    """Another CPU's rounding: the same divergence and step count, every loss within a relative 1e-4."""

    def losses(run):
        return [float.fromhex(value) for key in ("train_loss", "test_loss") for member in run[key] for value in member]

    return (
        (got["diverged_at"], got["step"]) == (expected["diverged_at"], expected["step"])
        and len(losses(got)) == len(losses(expected))
        and all(abs(a - b) <= 1e-4 * abs(b) for a, b in zip(losses(got), losses(expected)))
    )


def assert_repeats(case: str, got: dict) -> None:
    """`got` is one of the recorded engine's runs of `case`, bit for bit (or close, on an unrecorded CPU)."""

    def show(got, expected):
        assert got == expected

    assert_repeats_a_record(got, records(case), lambda a, b: a == b, close, show)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_step_reproduces_the_recorded_engine_bit_for_bit(case):
    assert_repeats(case, record(*CASES[case]))


def test_a_changed_step_is_caught_on_any_cpu():
    """The tolerance for unrecorded CPUs is far below what a real change does: one more lr step fails it."""
    cells, options = CASES["one_cell"]
    changed = record([{**cells[0], "lr": cells[0]["lr"] * 1.01}], options)
    assert not any(close(changed, expected) for _, expected in records("one_cell"))


if __name__ == "__main__":
    json.dump({case: record(*CASES[case]) for case in sorted(CASES)}, sys.stdout, indent=1, sort_keys=True)
    print()
