"""Whole-step CUDA graphs: a few eager warm-up steps, then the training step captured once and replayed.

At batch 64 a WRN-16-4 step is ~250 small kernels whose launches, not their arithmetic, set the
pace (bench/RESULTS.md). `PackTrainer.compute_step` reads and writes only tensors that live as
long as the trainer (static input buffers, the flat parameter/gradient/momentum buffers, BN
buffers, step counter, lr table, divergence state), so one capture of it replays as every later
step. `GraphedStep` holds the order of things (torch.cuda.graphs' whole-network recipe):

1. `GRAPH_WARMUP_STEPS` eager steps on a side stream: real training steps, which also run the
   lazy work a capture must not see (cuDNN autotuning, cuBLAS workspaces, torch.compile).
2. One capture. A capture records kernels and runs none, so the captured step is then replayed:
   each step is applied exactly once, whether it was captured or not.
3. Replays. If the capture raises, one log line says why and the step, and every later one, runs
   eagerly: a capture problem never fails a job.

Dropout draws no random numbers inside the step: each member's masks are drawn eagerly before
it, from the member's own generator, into static buffers the captured step reads
(`dropout.DropoutNoise`), so graphed and eager steps see the same masks without capturing a
generator (bench/graphs_equality.py's fp32 deterministic case checks it on a GPU).

The device-specific half is `CudaGraphs`, behind a two-method interface, so the order and the
fallback are tested on the CPU with a stand-in (tests/test_graphs.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import torch

GRAPH_WARMUP_STEPS = 3  # torch.cuda.graphs' recipe warms up with 3 iterations


class GraphBackend(Protocol):
    def warmup_stream(self) -> contextlib.AbstractContextManager: ...

    def capture(self, body: Callable[[], None]) -> Callable[[], None]: ...


class CudaGraphs:
    """Warm-up on a side stream and capture into a `torch.cuda.CUDAGraph`, on one CUDA device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    @contextlib.contextmanager
    def warmup_stream(self) -> Iterator[None]:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            yield
        current.wait_stream(self.stream)

    def capture(self, body: Callable[[], None]) -> Callable[[], None]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
        return graph.replay


class GraphedStep:
    """`body()` eagerly for `warmup` calls, then captured once and replayed; eager for good if capture fails.

    `state` says where it stands: 'warmup', 'graphed' or 'eager' (the capture failed).
    """

    def __init__(
        self,
        body: Callable[[], None],
        backend: GraphBackend,
        log: Callable[[str], None],
        warmup: int = GRAPH_WARMUP_STEPS,
    ):
        self.body, self.backend, self.log, self.warmup = body, backend, log, warmup
        self.warmed = 0
        self.replay: Callable[[], None] | None = None
        self.state = "warmup"

    def __call__(self) -> None:
        if self.state == "graphed":
            self.replay()
        elif self.state == "eager":
            self.body()
        elif self.warmed < self.warmup:
            with self.backend.warmup_stream():
                self.body()
            self.warmed += 1
        else:
            self.capture_and_step()

    def capture_and_step(self) -> None:
        try:
            self.replay = self.backend.capture(self.body)
        except Exception as error:  # whatever broke the capture, the eager step does not depend on it
            reason = (str(error).strip().splitlines() or [""])[0]
            self.log(
                f"cuda_graphs: capturing the training step failed ({type(error).__name__}: {reason}); training on "
                "eagerly"
            )
            self.state = "eager"
            self.body()
            return
        self.state = "graphed"
        self.log(f"cuda_graphs: training step captured in a CUDA graph after {self.warmed} eager warm-up steps")
        self.replay()


def graphed_or_eager(
    body: Callable[[], None], device: torch.device, log: Callable[[str], None], backend: GraphBackend | None = None
) -> Callable[[], None]:
    """`body` as a GraphedStep on a CUDA device; anywhere else `body` itself, after one log line.

    A given `backend` (an emulation of capture and replay, for the tests on the CPU) is used on any device.
    """
    if backend is not None:
        return GraphedStep(body, backend, log)
    if device.type != "cuda":
        log(f"cuda_graphs: ignored on {device.type} (CUDA graphs need a CUDA device); the training step runs eagerly")
        return body
    return GraphedStep(body, CudaGraphs(device), log)
