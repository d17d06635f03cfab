"""A cluster's time limit or preemption: stop at the next step, save it, exit, resume there.

SLURM sends SIGTERM (or the signal `--signal` names, e.g. SIGUSR1) some time before it kills a
job. `StopSignal` turns those signals into a flag that the trainer polls after every step; the
trainer then saves a mid-epoch checkpoint (the step's state, the epoch's running sums and each
member's dropout generator) and raises `Preempted`, and the job exits non-zero so that the scheduler
requeues or Snakemake retries it. The resumed run repeats the uninterrupted one bit for bit.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on a signal after saving its current step; rerunning the job resumes there."""


class StopSignal:
    """While entered, STOP_SIGNALS set `requested` instead of ending the process (main thread only)."""

    def __init__(self):
        self.requested = False
        self.received: str | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self.handle) for number in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def handle(self, number: int, frame) -> None:
        self.requested, self.received = True, signal.Signals(number).name

    def poll(self) -> bool:
        """Whether a stop signal has arrived (checked after every training step)."""
        return self.requested
