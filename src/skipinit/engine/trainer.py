"""The trainer: one pack of cells trained as one batched computation, epoch by epoch, with checkpoints.

`PackTrainer.compute_step` is capture-safe, for whole-step CUDA graphs (`cuda_graphs`, see
`graphs`): `step` copies the batch into static input buffers, and the step counter, the
learning-rate lookup and the divergence bookkeeping are device tensors updated in place, so
forward, backward and SGD update neither rebind a tensor nor read the device from the host.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from skipinit.data.batches import Serving
from skipinit.data.sources import data_kind
from skipinit.engine.checkpoint import CheckpointError, checkpoint_mismatch, load_checkpoint, save_checkpoint
from skipinit.engine.dropout import DropoutNoise
from skipinit.engine.evaluation import evaluate
from skipinit.engine.graphs import GraphBackend, graphed_or_eager
from skipinit.engine.members import Members
from skipinit.engine.options import PACKINGS, EngineOptions, result_settings
from skipinit.engine.outcome import failed_results, pack_results, progress_line
from skipinit.engine.preemption import Preempted, StopSignal
from skipinit.engine.runtime import (
    CompiledOrEager,
    engine_settings,
    is_out_of_memory,
    progress_bar,
    resolve_device,
    resolve_precision,
)
from skipinit.engine.schedule import lr_table
from skipinit.engine.sgd import member_losses, sgd_step
from skipinit.vocab import CELL_DEFAULTS, SCHEDULES, check_pack, micro_batch_size

if TYPE_CHECKING:
    from skipinit.data.canonical import CanonicalDataset
    from skipinit.data.imagenet import ImageNetFolder

DIVERGENCE_POLL_STEPS = 8  # how often a step looks (without waiting) whether every member has diverged


class PackTrainer:
    """Everything one pack needs on the device: its data source, members, schedule, divergence state."""

    def __init__(
        self,
        cells: list[dict],
        dataset: CanonicalDataset | ImageNetFolder,
        options: EngineOptions,
        log: Callable[[str], None] = print,
        stop: StopSignal | None = None,
        graph_backend: GraphBackend | None = None,
    ):
        if not cells:
            raise ValueError("train_pack needs at least one cell")
        self.cells = [dict(cell) for cell in cells]
        self.config = [{**CELL_DEFAULTS, **cell} for cell in cells]
        check_pack(self.config)
        first = self.config[0]
        if first["schedule"] not in SCHEDULES:
            raise ValueError(f"schedule={first['schedule']!r} is unknown; allowed: {', '.join(SCHEDULES)}")
        if options.packing not in PACKINGS:
            raise ValueError(f"packing={options.packing!r} is unknown; allowed: {', '.join(PACKINGS)}")
        if options.packing == "sequential" and len(cells) > 1:
            raise ValueError("packing=sequential trains the members one after another: call engine.job.train_cells")
        self.options, self.log, self.stop = options, log, stop
        self.partial: dict | None = None  # a resumed mid-epoch step: the epoch's running sums and dropout generator
        self.device = resolve_device(options.device)
        self.size = len(cells)
        self.epochs = int(first["epochs"])
        self.batch_size = int(first["batch_size"])
        self.precision = resolve_precision(options.precision, self.device)
        self.use_bf16 = self.precision == "bf16"
        self.micro_batch = micro_batch_size(self.batch_size, options.micro_batch)

        serving = Serving(options.channels_last, options.image_size, options.threads)
        self.data = data_kind(self.config).batches(dataset, self.config, serving, self.device)
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.epochs * self.steps_per_epoch
        self.seeds = [int(cell["seed"]) for cell in self.config]
        self.shared = self.data.shared  # one batch serves every member
        self.members = Members(self.config, self.data.num_classes, self.device, options, log)
        self.noise = DropoutNoise(self.members.dropout_layers, self.seeds, self.batch_size, self.device)
        self.settings = result_settings(options, self.device.type, self.precision, self.micro_batch, self.members.mode)
        self.lrs = lr_table(first["schedule"], [float(c["lr"]) for c in self.config], self.total_steps, self.device)
        self.weight_decay, self.momentum = float(first["weight_decay"]), float(first["momentum"])
        self.nesterov = bool(first["nesterov"])
        self.alive = torch.ones(self.size, dtype=torch.bool, device=self.device)
        self.diverged_at = torch.full((self.size,), -1, dtype=torch.long, device=self.device)
        self.threshold = float(options.divergence_loss)
        self.alive_host = torch.ones(self.size, dtype=torch.bool, pin_memory=self.device.type == "cuda")
        self.alive_copied: torch.cuda.Event | None = None

        # The step's state on the device, updated in place; `step_count` is the host's copy, for bookkeeping between
        # steps.
        self.step_index = torch.zeros(1, dtype=torch.long, device=self.device)
        self.step_losses = torch.zeros(self.size, device=self.device)
        self.step_correct = torch.zeros(self.size, dtype=torch.long, device=self.device)
        self.inputs: torch.Tensor | None = None  # static input buffers, allocated at the first step
        self.labels: torch.Tensor | None = None
        self.epoch, self.step_count = 0, 0
        self.curves: list[list[dict]] = [[] for _ in cells]
        self.final: tuple | None = None  # the last evaluation on the whole test set: losses, accuracies, per-image hits
        self.wall_seconds = self.train_seconds = 0.0
        self.loss_fn, self.update_fn = self.forward_losses, sgd_step
        if options.compile:
            self.loss_fn = CompiledOrEager(self.forward_losses, log, "forward")
            self.update_fn = CompiledOrEager(sgd_step, log, "SGD update")
        self.run_step: Callable[[], None] = self.compute_step
        if options.cuda_graphs:
            self.run_step = graphed_or_eager(self.compute_step, self.device, log, graph_backend)

    # ---- steps ----------------------------------------------------------------------------

    def autocast(self):
        """bf16 autocast where the pack runs in bf16: convs and matmuls in bf16, batch-norm statistics,
        running buffers, the loss and the SGD update in float32 (as autocast leaves them on CUDA and CPU)."""
        if self.use_bf16:
            # A capture must not keep autocast's cast-weight cache (torch.cuda.graphs' AMP notes); each
            # weight is cast once per forward anyway, so the numbers are the same without it.
            return torch.autocast(
                device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=not self.options.cuda_graphs
            )
        return contextlib.nullcontext()

    def forward_losses(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool, noise: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.members.forward(x, shared, noise)
        return member_losses(logits, y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, divergence check and SGD update of every member; no host sync.

        A batch larger than `micro_batch` runs as equal micro-batches whose gradients accumulate in
        the flat gradient buffer, each scaled by 1/chunks: the mean loss of the whole batch, in the
        memory of one micro-batch. Batch norm then normalizes over each micro-batch (and updates its
        running statistics once per micro-batch), as a ghost batch norm of that size would.

        Returns the step's losses and correct counts [N]: buffers that the next step overwrites.
        """
        if self.inputs is None:
            self.inputs, self.labels = torch.empty_like(x), torch.empty_like(y)
        self.inputs.copy_(x)
        self.labels.copy_(y)
        self.noise.draw(self.micro_batch)  # eagerly, into the buffers the step reads (a graph replays them)
        self.run_step()
        return self.step_losses, self.step_correct

    def compute_step(self) -> None:
        """The step on the static buffers alone (what a CUDA graph captures): no argument, no result."""
        self.members.grads.zero_()
        self.step_losses.zero_()
        self.step_correct.zero_()
        chunks = self.batch_size // self.micro_batch
        batches = zip(self.inputs.split(self.micro_batch), self.labels.split(self.micro_batch, dim=-1))
        for index, (inputs, labels) in enumerate(batches):
            part_losses, part_correct = self.loss_fn(
                inputs, labels, self.shared, self.noise.chunk(index, self.micro_batch)
            )
            (part_losses.sum() / chunks).backward()
            self.step_losses.add_(part_losses.detach() / chunks)
            self.step_correct.add_(part_correct)
        bad = ~torch.isfinite(self.step_losses) | (self.step_losses > self.threshold)
        self.diverged_at.copy_(torch.where(bad & self.alive, self.step_index, self.diverged_at))
        self.alive &= ~bad
        lr = self.lrs.index_select(0, self.step_index)[0]
        self.update_fn(
            self.members.params,
            self.members.grads,
            self.members.momentum,
            lr,
            self.alive,
            self.weight_decay,
            self.momentum,
            self.nesterov,
            self.members.lr_scale,
        )
        self.step_index.add_(1)

    def train_epoch(self, epoch: int, checkpoint: str | os.PathLike | None = None) -> dict:
        """One epoch of every member, from the saved step where a mid-epoch checkpoint was resumed; reads the
        device once, at the end. On a stop signal it saves the step it is at and raises `Preempted`."""
        self.members.train(True)
        partial, self.partial = self.partial, None
        if partial is None:
            self.noise.begin_epoch(epoch)  # each member's dropout generator, from its seed and the epoch
            partial = {
                "steps": 0,
                "seconds": 0.0,
                "loss_sum": torch.zeros(self.size, dtype=torch.float64),
                "correct_sum": torch.zeros(self.size, dtype=torch.long),
            }
        else:
            self.noise.load(partial["dropout"])
        loss_sum, correct_sum = partial["loss_sum"].to(self.device), partial["correct_sum"].to(self.device)
        start = time.perf_counter() - partial["seconds"]
        steps = partial["steps"]
        bar = progress_bar(self.steps_per_epoch, f"epoch {epoch + 1}/{self.epochs}", steps)
        for x, y in self.data.train_batches(epoch, start=steps):
            losses, correct = self.step(x, y)
            loss_sum += losses
            correct_sum += correct
            steps += 1
            self.step_count += 1
            bar.update()
            if self.stop is not None and self.stop.poll():
                self.save_mid_epoch(checkpoint, steps, loss_sum, correct_sum, time.perf_counter() - start)
            if steps % DIVERGENCE_POLL_STEPS == 0 and self.all_diverged_lately():
                break  # every member has diverged: the rest of the budget would change nothing
        lr_now = self.lrs[self.step_count - 1].tolist()
        losses = (loss_sum / steps).tolist()  # the one sync of the epoch
        accuracy = (100.0 * correct_sum.double() / (steps * self.batch_size)).tolist()
        seconds = time.perf_counter() - start
        bar.close()
        self.train_seconds += seconds - partial["seconds"]
        return {"train_loss": losses, "train_acc": accuracy, "lr": lr_now, "seconds": seconds, "steps": steps}

    def save_mid_epoch(
        self, checkpoint, steps: int, loss_sum: torch.Tensor, correct_sum: torch.Tensor, seconds: float
    ) -> None:
        """On a stop signal: the state after this step, with the epoch's running sums and dropout generators."""
        if checkpoint is not None:
            partial = {
                "steps": steps,
                "seconds": seconds,
                "loss_sum": loss_sum.cpu(),
                "correct_sum": correct_sum.cpu(),
                "dropout": self.noise.state(),
            }
            save_checkpoint(checkpoint, {**self.state(), "partial": partial})
        where = (
            f"saved step {steps}/{self.steps_per_epoch} of epoch {self.epoch + 1} to {checkpoint}"
            if checkpoint
            else "no checkpoint"
        )
        raise Preempted(f"stopped by {self.stop.received}: {where}; rerun the same command to resume there")

    def all_diverged_lately(self) -> bool:
        """Whether every member had diverged a few steps ago, asked without waiting for the device.

        On the CPU the flags are simply read. On CUDA the flags travel to pinned host memory by a
        non-blocking copy; its value is read only once its event reports completion, so the step
        loop never stalls (the answer is a few steps stale, which only delays the early stop).
        """
        if self.device.type != "cuda":
            return not bool(self.alive.any())
        if self.alive_copied is not None and not self.alive_copied.query():
            return False
        finished = self.alive_copied is not None and not bool(self.alive_host.any())
        self.alive_host.copy_(self.alive, non_blocking=True)
        self.alive_copied = torch.cuda.Event()
        self.alive_copied.record()
        return finished

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "cells": self.cells,
            "settings": self.settings,
            "fingerprint": self.data.fingerprint,
            "layout": [list(entry) for entry in self.members.layout],
            "epoch": self.epoch,
            "step": self.step_count,
            "params": self.members.params.detach().cpu().clone(),
            "momentum": self.members.momentum.cpu().clone(),
            "buffers": self.members.stacked_buffers(),
            "alive": self.alive.cpu().clone(),
            "diverged_at": self.diverged_at.cpu().clone(),
            "curves": self.curves,
            "wall_seconds": self.wall_seconds,
            "train_seconds": self.train_seconds,
        }

    def resume(self, checkpoint: str | os.PathLike | None) -> None:
        """Continue from `checkpoint` if it exists, verifies and belongs to this pack; else start fresh."""
        if checkpoint is None or not Path(checkpoint).exists():
            return
        try:
            state = load_checkpoint(checkpoint)
            mismatch = checkpoint_mismatch(state, self.state(), self.epochs)
        except CheckpointError as error:
            self.log(f"checkpoint {checkpoint} is corrupt: {error}; ignoring it and starting from scratch")
            return
        if mismatch:
            self.log(
                f"checkpoint {checkpoint} belongs to another run ({mismatch}); ignoring it and starting the pack over"
            )
            return
        self.members.load_state(state["params"], state["momentum"], state["buffers"])
        self.alive.copy_(state["alive"])
        self.diverged_at.copy_(state["diverged_at"])
        self.epoch, self.step_count, self.curves = int(state["epoch"]), int(state["step"]), state["curves"]
        self.partial = state.get("partial")
        self.step_index.fill_(self.step_count)
        self.wall_seconds, self.train_seconds = float(state["wall_seconds"]), float(state["train_seconds"])
        within = f", step {self.partial['steps']} of epoch {self.epoch + 1}" if self.partial else ""
        self.log(
            f"resuming from checkpoint {checkpoint} after epoch {self.epoch}/{self.epochs} (step "
            f"{self.step_count}{within})"
        )

    # ---- the loop -------------------------------------------------------------------------

    def run(self, checkpoint: str | os.PathLike | None = None) -> list[dict]:
        """Train every member to its epoch budget (or until all diverge); return one result each."""
        self.resume(checkpoint)
        session_start, session_wall0 = time.perf_counter(), self.wall_seconds
        session_epochs = 0
        while self.epoch < self.epochs and bool(self.alive.any()):
            metrics = self.train_epoch(self.epoch, checkpoint)
            self.epoch += 1
            all_diverged = not bool(self.alive.any())
            last = self.epoch == self.epochs or all_diverged
            due = last or self.epoch % max(1, self.options.eval_every) == 0
            test_loss, test_acc, _ = evaluate(self) if due else ([None] * self.size, [None] * self.size, None)
            if last:
                self.final = evaluate(self, final=True)
            self.wall_seconds = session_wall0 + time.perf_counter() - session_start
            session_epochs += 1
            eta = (time.perf_counter() - session_start) / session_epochs * (self.epochs - self.epoch)
            rate = self.size * metrics["steps"] * self.batch_size / metrics["seconds"]
            diverged_at = self.diverged_at.tolist()
            for i in range(self.size):
                point = {
                    "epoch": self.epoch,
                    "step": self.step_count,
                    "lr": metrics["lr"][i],
                    "train_loss": metrics["train_loss"][i],
                    "train_acc": metrics["train_acc"][i],
                    "test_loss": test_loss[i],
                    "test_acc": test_acc[i],
                    "seconds": self.wall_seconds,
                }
                self.curves[i].append(point)
                self.log(progress_line(self.config[i], point, self.epochs, rate, eta, diverged_at[i]))
            if checkpoint is not None:
                save_checkpoint(checkpoint, self.state())
        if self.final is None and self.epoch > 0:  # resumed after its last epoch: the final evaluation is still due
            self.final = evaluate(self, final=True)
        return pack_results(self)


def train_pack(
    cells: list[dict],
    dataset: CanonicalDataset | ImageNetFolder,
    options: EngineOptions,
    checkpoint: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    stop: StopSignal | None = None,
    graph_backend: GraphBackend | None = None,
) -> list[dict]:
    """Train a pack of cells (differing only in lr and seed) as one batched computation.

    `dataset`: a CanonicalDataset (held on the device) or, for ImageNet cells, an ImageNetFolder
    (streamed from disk, `options.image_size` px crops). Returns one result per cell, in input order:
    the cell's keys plus the `record.RunResult` fields (final test and last-epoch train metrics,
    status 'ok' | 'diverged' | 'failed', the step it diverged at, the pack's throughput, packing as it
    ran, the RESULT_SETTINGS as they ran, and the per-epoch curve with test_* None where not evaluated).

    Divergence never raises: the member stops updating and the others go on; a pack whose members
    have all diverged stops early. With `stop`, a stop signal saves the current step mid-epoch and
    raises `Preempted` (`preemption`); the rerun resumes there. `graph_backend` replaces CUDA's
    graphs where `options.cuda_graphs` is on (the tests emulate capture and replay on the CPU).
    An out-of-memory error marks every member 'failed', with a hint, and returns normally (the job
    then exits non-zero: `job.run_job`). With `checkpoint`, the state is saved atomically after every
    epoch and resumed on restart; a corrupt or foreign checkpoint, or one made under other
    result-affecting settings (`options.result_settings`), is logged in one line and the pack starts over.
    """
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with engine_settings(options, device):
        try:
            return PackTrainer(cells, dataset, options, log, stop, graph_backend).run(checkpoint)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            failure = failed_results(cells, error, device_name, precision)
        # Out of the handler, the traceback (and the device memory its frames hold) is gone.
        if device.type == "cuda":
            torch.cuda.empty_cache()
        log(f"pack of {len(cells)} cell(s) failed on {device_name}: {failure[0]['error']}")
        return failure
