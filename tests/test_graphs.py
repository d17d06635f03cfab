"""Whole-step CUDA graphs, on the CPU: the order warm-up -> capture -> replay, the eager fallback, the trainer's wiring.

The device half (`graphs.CudaGraphs`) needs a GPU (bench/gpu_graphs.sh checks it there). Here an
emulated backend stands in for it: its capture runs nothing, and its replay reruns the step with
every op that reads a device value back to the host forbidden, as a CUDA stream capture forbids
it. The trainer then has to reproduce the recorded eager engine (tests/fixtures/step_reference*.json)
bit for bit, which only holds if warm-up steps are real steps, each step runs exactly once, and the
captured step takes everything from the trainer's static buffers.
"""

import contextlib

import pytest
import torch
from test_step_reference import CASES, assert_repeats, cell, record
from torch.utils._python_dispatch import TorchDispatchMode

from skipinit import data
from skipinit.engine import graphs, trainer
from skipinit.engine.options import EngineOptions

HOST_READS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::unique_consecutive",
    "aten::_unique2",
}


class NoHostReads(TorchDispatchMode):
    """Raises on any op that waits for a device value on the host (`.item()`, `bool(t)`, data-dependent shapes)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in HOST_READS:
            raise AssertionError(f"{func._schema.name} inside the captured step would read the device from the host")
        return func(*args, **(kwargs or {}))


class EmulatedGraphs:
    """`graphs.CudaGraphs` on the CPU: a capture runs nothing (or raises `fail`), a replay reruns the body."""

    def __init__(self, fail: Exception | None = None):
        self.fail, self.events = fail, []

    @contextlib.contextmanager
    def warmup_stream(self):
        self.events.append("warmup")
        yield

    def capture(self, body):
        self.events.append("capture")
        if self.fail is not None:
            raise self.fail

        def replay():
            self.events.append("replay")
            with NoHostReads():
                body()

        return replay


def counting_step(backend, lines):
    calls = []
    step = graphs.GraphedStep(lambda: calls.append(len(calls)), backend, lines.append)
    return step, calls


def test_the_step_warms_up_eagerly_then_is_captured_once_and_replayed_each_step_exactly_once():
    backend, lines = EmulatedGraphs(), []
    step, calls = counting_step(backend, lines)
    for _ in range(6):
        step()
    assert backend.events == ["warmup"] * graphs.GRAPH_WARMUP_STEPS + ["capture"] + ["replay"] * 3
    assert calls == list(range(6)) and step.state == "graphed"
    assert lines == ["cuda_graphs: training step captured in a CUDA graph after 3 eager warm-up steps"]


def test_a_failed_capture_runs_that_step_and_every_later_one_eagerly_after_one_log_line():
    backend, lines = (
        EmulatedGraphs(fail=RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")),
        [],
    )
    step, calls = counting_step(backend, lines)
    for _ in range(7):
        step()
    assert backend.events == ["warmup"] * 3 + ["capture"]  # tried once, never again
    assert calls == list(range(7)) and step.state == "eager"
    assert lines == [
        "cuda_graphs: capturing the training step failed (RuntimeError: operation not permitted when stream is "
        "capturing); training on eagerly"
    ]


def test_the_replayed_step_is_checked_for_host_reads():
    backend, lines = EmulatedGraphs(), []
    flag = torch.zeros(1)
    step = graphs.GraphedStep(lambda: bool(flag.add_(1).sum() > 0), backend, lines.append, warmup=0)
    with pytest.raises(AssertionError, match="_local_scalar_dense"):
        step()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_graphed_trainer_reproduces_the_recorded_eager_engine_bit_for_bit(case):
    backend = EmulatedGraphs()
    cells, options = CASES[case]
    got = record(cells, {**options, "cuda_graphs": True}, graph_backend=backend)
    assert_repeats(case, got)
    assert backend.events.count("capture") == 1
    assert backend.events.count("replay") == got["step"] - graphs.GRAPH_WARMUP_STEPS


def test_a_trainer_whose_capture_fails_trains_on_eagerly_to_the_same_numbers():
    lines = []
    cells, options = CASES["micro_batch_ghost_bn_dropout"]
    backend = EmulatedGraphs(fail=RuntimeError("capture broke"))
    assert_repeats(
        "micro_batch_ghost_bn_dropout",
        record(cells, {**options, "cuda_graphs": True}, graph_backend=backend, log=lines.append),
    )
    assert [line for line in lines if line.startswith("cuda_graphs")] == [
        "cuda_graphs: capturing the training step failed (RuntimeError: capture broke); training on eagerly"
    ]


def test_on_the_cpu_the_option_changes_nothing_but_one_log_line():
    dataset = data.synthetic(train_size=160, test_size=100, num_classes=10, seed=2)
    cells = [cell(variant="batchnorm", dropout=0.2, epochs=1)]
    runs = {}
    for graphed in (False, True):
        lines = []
        options = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1, cuda_graphs=graphed)
        runs[graphed] = (trainer.train_pack(cells, dataset, options, log=lines.append), lines)
    (eager, eager_lines), (graphed, graphed_lines) = runs[False], runs[True]

    def strip(rows):
        return [
            {k: v for k, v in row.items() if k not in ("wall_seconds", "images_per_second", "curve")} for row in rows
        ]

    assert strip(graphed) == strip(eager)
    assert [line for line in graphed_lines if "cuda_graphs" in line] == [
        "cuda_graphs: ignored on cpu (CUDA graphs need a CUDA device); the training step runs eagerly"
    ]
    assert len(graphed_lines) == len(eager_lines) + 1


def test_resuming_loads_every_tensor_a_graph_holds_in_place(tmp_path):
    """A graph captured before a load would replay on the loaded values: load_state must not rebind a tensor."""
    dataset = data.synthetic(train_size=160, test_size=100, num_classes=10, seed=2)
    cells = [cell(variant="batchnorm", epochs=2, seed=0), cell(variant="batchnorm", epochs=2, lr=0.05, seed=1)]
    options = EngineOptions(device="cpu", precision="fp32", threads=1)
    first = trainer.PackTrainer(cells, dataset, options, log=lambda line: None)
    first.train_epoch(0)
    first.epoch = 1
    checkpoint = tmp_path / "pack.pt"
    trainer.save_checkpoint(checkpoint, first.state())

    fresh = trainer.PackTrainer(cells, dataset, options, log=lambda line: None)

    def addresses(t):
        held = [t.members.params, t.members.grads, t.members.momentum, t.step_index, t.alive, t.diverged_at, t.lrs]
        held += list(t.members.buffers.values()) + list(t.members.leaves.values())
        held += [leaf.grad for leaf in t.members.leaves.values()]
        return [tensor.data_ptr() for tensor in held]

    before = addresses(fresh)
    fresh.resume(checkpoint)
    assert fresh.epoch == 1 and addresses(fresh) == before
    assert torch.equal(fresh.members.params, first.members.params)
    assert all(torch.equal(fresh.members.buffers[name], first.members.buffers[name]) for name in first.members.buffers)
