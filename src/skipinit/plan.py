"""The compute plan of a profile: jobs, GPU-hours, wall time on K GPUs, disk, and SLURM time limits.

Every training job (one pack of cells) is costed by the throughput model of `skipinit.cost`
from what it will do: its steps (epochs x full batches of the training set), its test-set
evaluations (`eval_every` and the last epoch) and its shape. The same prediction sets the job's
SLURM time limit (`runtime_minutes`), so the plan and the submitted `--time` agree.
"""

from __future__ import annotations

import csv
import heapq
import math
from dataclasses import dataclass
from pathlib import Path

from skipinit import cost, grid
from skipinit.config import known_sizes
from skipinit.profile import ProfileError, Resolved, resolve

# Dataset sizes where the profile cannot say: the standard splits (a built canonical file is read instead).
STANDARD_SIZES = {"cifar10": (50000, 10000), "imagenet": (1281167, 50000)}
# Bytes per cell of result.json and log: a fixed part and one curve point / log line per epoch
# (fitted to results/reference/gpu: 1, 3 and 10 epochs; checked in tests/test_plan.py).
RESULT_BYTES_PER_CELL = 900
RESULT_BYTES_PER_EPOCH = 450
CHECKPOINT_BYTES_PER_PARAMETER = 8  # fp32 weights and momentum per member; buffers and curves are small beside them
NOT_MODELLED = (
    "torch.compile (the profile's `compile`) is not measured: predictions are eager-mode speed",
    "ImageNet JPEG decoding on the CPU is not modelled: ImageNet predictions assume the GPU is the bottleneck",
)


@dataclass(frozen=True)
class Job:
    key: str
    cells: tuple[dict, ...]
    work: cost.Work
    seconds: float
    epochs: int
    params: int

    @property
    def checkpoint_bytes(self) -> int:
        return CHECKPOINT_BYTES_PER_PARAMETER * self.params * len(self.cells)

    @property
    def result_bytes(self) -> int:
        return len(self.cells) * (RESULT_BYTES_PER_CELL + RESULT_BYTES_PER_EPOCH * self.epochs)


def device_class(config: dict) -> str:
    """The profile's device class: `resources.device_class`, where `auto` is cpu for `device: cpu`, else h100."""
    chosen = config["resources"]["device_class"]
    if chosen != "auto":
        return chosen
    return "cpu" if config["device"] == "cpu" else cost.REFERENCE_CLASS


def dataset_sizes(config: dict, dataset: str) -> tuple[int, int]:
    """(train, test) images of a dataset: where known before any job (`config.known_sizes`), else the standard split."""
    if dataset == "imagenet":
        return STANDARD_SIZES["imagenet"]
    return known_sizes(config) or STANDARD_SIZES["cifar10"]


def evaluations(epochs: int, eval_every: int) -> int:
    """Test-set evaluations of a run: every `eval_every` epochs and after the last (as the engine does)."""
    every = max(1, eval_every)
    return epochs // every + (epochs % every != 0)


def pack_work(cells: list[dict], config: dict) -> tuple[cost.Work, int]:
    """What one training job does, and its epochs."""
    first = cells[0]
    train, test = dataset_sizes(config, first["dataset"])
    train = min(train, first["train_subset"] or train)
    test = min(test, first["test_subset"] or test)
    epochs = int(first["epochs"])
    micro = int(config["micro_batch"])
    # A sequential pack is one process training its members one after another: one start-up, n cells' work.
    pack, runs = (1, len(cells)) if config["packing"] == "sequential" else (len(cells), 1)
    work = cost.Work(
        first["arch"],
        int(first["depth"]),
        int(first["width"]),
        first["variant"],
        int(first["batch_size"]),
        pack,
        runs * epochs * (train // int(first["batch_size"])),
        runs * evaluations(epochs, int(config["eval_every"])),
        test,
        micro if 0 < micro < int(first["batch_size"]) else 0,
    )
    return work, epochs


def pack_seconds(cells: list[dict], config: dict) -> float:
    work, _ = pack_work(cells, config)
    return cost.model_for(device_class(config)).seconds(work)


def runtime_minutes(cells: list[dict], config: dict) -> int:
    """The SLURM time limit of one training job: prediction x safety, rounded up, clamped to [min, max].

    A fixed `resources.train_runtime` (minutes) overrides the prediction. A job predicted beyond
    `train_runtime_max` gets the maximum and continues across retries from its epoch checkpoints.
    """
    resources = config["resources"]
    fixed = resources["train_runtime"]
    if fixed != "auto":
        return int(fixed)
    minutes = math.ceil(pack_seconds(cells, config) * float(resources["train_runtime_safety"]) / 60)
    return max(int(resources["train_runtime_min"]), min(int(resources["train_runtime_max"]), minutes))


def jobs(resolved: Resolved) -> tuple[dict[str, Job], dict[str, list[str]]]:
    """Every training job of the profile, ImageNet ones awaiting `imagenet.root` too, and the job keys of each
    experiment (shared jobs are in each)."""
    config = resolved.config
    model = cost.model_for(device_class(config))
    table, owner = {}, {}
    for key, members in grid.packs(grid.unique_cells(resolved.planned), config["pack"]).items():
        work, epochs = pack_work(members, config)
        shape = cost.shape_cost(work.arch, work.depth, work.width, work.variant)
        table[key] = Job(key, tuple(members), work, model.seconds(work), epochs, shape.params)
        for cell in members:
            owner[grid.cell_id(cell)] = key
    experiments = {
        name: sorted({owner[grid.cell_id(cell)] for cell in cells}) for name, cells in resolved.planned.items()
    }
    return table, experiments


def makespan(seconds: list[float], gpus: int) -> float:
    """Wall seconds of `seconds`-long jobs on `gpus` GPUs, longest first onto the first free GPU (LPT)."""
    free = [0.0] * max(1, gpus)
    for length in sorted(seconds, reverse=True):
        heapq.heapreplace(free, free[0] + length)
    return max(free)


def summarize(resolved: Resolved, gpus: int) -> list[dict]:
    """One row per experiment and a `total` row (each job counted once)."""
    table, experiments = jobs(resolved)
    rows = []
    for name, keys in [*experiments.items(), ("total", sorted(table))]:
        selected = [table[key] for key in keys]
        if not selected:
            continue
        seconds = [job.seconds for job in selected]
        biggest = sorted((job.checkpoint_bytes for job in selected), reverse=True)
        rows.append(
            {
                "experiment": name,
                "jobs": len(selected),
                "cells": sum(len(job.cells) for job in selected),
                "gpu_hours": sum(seconds) / 3600,
                "wall_hours": makespan(seconds, gpus) / 3600,
                "longest_job_hours": max(seconds) / 3600,
                "checkpoint_gb_peak": sum(biggest[:gpus]) / 1e9,
                "checkpoint_gb_all": sum(biggest) / 1e9,
                "results_mb": sum(job.result_bytes for job in selected) / 1e6,
                "note": "runs once imagenet.root is set"
                if name in resolved.planned and name not in resolved.experiments
                else "",
            }
        )
    return rows


COLUMNS = (
    ("experiment", "experiment", "{}"),
    ("jobs", "jobs", "{:,}"),
    ("cells", "cells", "{:,}"),
    ("gpu_hours", "GPU-h", "{:,.1f}"),
    ("wall_hours", "wall h", "{:,.1f}"),
    ("longest_job_hours", "longest job h", "{:,.2f}"),
    ("checkpoint_gb_peak", "ckpt GB (K running)", "{:,.2f}"),
    ("checkpoint_gb_all", "ckpt GB (all)", "{:,.1f}"),
    ("results_mb", "results MB", "{:,.1f}"),
    ("note", "note", "{}"),
)


def format_table(rows: list[dict]) -> str:
    cells = [[title for _, title, _ in COLUMNS]] + [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            value.rjust(width) if 0 < i < len(COLUMNS) - 1 else value.ljust(width)
            for i, (value, width) in enumerate(zip(line, widths))
        ).rstrip()
        for line in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, [key for key, _, _ in COLUMNS])
        writer.writeheader()
        writer.writerows(rows)


def limits(resolved: Resolved, retries: int) -> list[str]:
    """What the SLURM time limits of the profile come to, and the jobs that would run out of retries."""
    config = resolved.config
    resources = config["resources"]
    table, _ = jobs(resolved)
    minutes = {key: runtime_minutes(list(job.cells), config) for key, job in table.items()}
    lines = [
        f"SLURM --time per training job: {min(minutes.values())}..{max(minutes.values())} minutes"
        f" (prediction x {resources['train_runtime_safety']}, within [{resources['train_runtime_min']}, "
        f"{resources['train_runtime_max']}])"
        if resources["train_runtime"] == "auto"
        else f"SLURM --time per training job: {resources['train_runtime']} minutes (fixed by resources.train_runtime)"
    ]
    safety = float(resources["train_runtime_safety"])
    capped = {key: math.ceil(table[key].seconds * safety / 60 / minutes[key]) for key in table}
    over = {key: attempts for key, attempts in capped.items() if attempts > 1}
    if over:
        lines.append(
            f"{len(over)} jobs are predicted beyond their time limit: each continues from its epoch checkpoint when "
            f"Snakemake resubmits it; they need up to {max(over.values())} attempts, the SLURM profile allows "
            f"{1 + retries} (retries: {retries})"
        )
        if max(over.values()) > 1 + retries:
            lines.append(
                f"warning: raise --retries to at least {max(over.values()) - 1}, or resources.train_runtime_max"
            )
    stuck = [key for key, job in table.items() if job.seconds / max(1, job.epochs) > 60 * minutes[key]]
    if stuck:
        lines.append(
            f"warning: {len(stuck)} jobs are predicted to take longer per epoch than their time limit, so no "
            f"attempt would reach a checkpoint (e.g. {stuck[0]}): raise resources.train_runtime_max"
        )
    return lines


class PlanError(ValueError):
    """A profile or option the plan cannot use: one line naming it and the fix."""


REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"


def rounds_lines(config: dict, total: dict, gpus: int) -> list[str]:
    """The worst case of every round (profile key adaptive:): round 1 trains the grid (the table's total); each
    further round adds seeds until its `minutes` are spent, and never more (skipinit.rounds)."""
    adaptive = config["adaptive"]
    if adaptive["rounds"] <= 1:
        return []
    hours = adaptive["minutes"] / 60
    lines = [
        f"round 1: the grid, {total['cells']:,} cells, {total['gpu_hours']:,.2f} device-h, {total['wall_hours']:,.2f} "
        f"wall h on {gpus}"
    ]
    lines += [
        f"round {number}: at most {adaptive['minutes']:g} device-minutes ({hours:.2f} device-h, at most "
        f"{hours:.2f} wall h), seeds added only where a claim is undecided (at most {adaptive['max_seeds']} per cell)"
        for number in range(2, adaptive["rounds"] + 1)
    ]
    worst = total["gpu_hours"] + (adaptive["rounds"] - 1) * hours
    lines += [
        f"worst case, all rounds: {worst:,.2f} device-h (alpha 0.005 at each look before the last, the rest less "
        "0.005 at the last)",
        "",
    ]
    return lines


def profile_retries() -> int:
    import yaml

    return int(yaml.safe_load(SLURM_PROFILE.read_text()).get("retries", 0)) if SLURM_PROFILE.is_file() else 0


def report(
    profile: str | Path,
    gpus: int = 1,
    device: str | None = None,
    csv_path: str | None = None,
    retries: int | None = None,
) -> str:
    """The plan as printed by `python -m skipinit plan`; also written to `csv_path`."""
    if gpus < 1:
        raise PlanError(f"--gpus {gpus}: give at least 1")
    try:
        resolved = resolve([profile], {"resources": {"device_class": device}} if device else None, data=False)
    except ProfileError as error:
        raise PlanError(f"--profile {error}") from None
    try:
        model = cost.model_for(device_class(resolved.config))
        rows = summarize(resolved, gpus)
    except (ValueError, FileNotFoundError) as error:
        raise PlanError(str(error)) from None
    if not rows:
        raise PlanError(f"--profile {profile} plans no training jobs (its `experiments` are empty)")
    if csv_path:
        write_csv(rows, csv_path)
    lines = [
        f"compute plan of {profile} on {gpus} GPU(s) of class {model.device_class}",
        f"throughput model: {model.describe()}",
        "",
        format_table(rows),
        "",
    ]
    lines += rounds_lines(resolved.config, rows[-1], gpus)
    lines += limits(resolved, profile_retries() if retries is None else retries)
    lines += [f"not modelled: {item}" for item in NOT_MODELLED]
    return "\n".join(lines)
