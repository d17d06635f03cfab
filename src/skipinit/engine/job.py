"""One `skipinit train` job's whole life: from its cells and dataset path to result.json.

A job restores the result a finished pack recorded (Snakemake killed between the pack's end and
its bookkeeping), else opens the data, trains (resuming from its checkpoint), stamps every result
with the code's git commit and the dataset's sha256, records the finished pack next to the
checkpoint, and deletes the checkpoint only once both results are written.

With `packing: sequential` the members of a pack train one after another in this one process,
each exactly as a job of its own would (same code, same numbers): the start-up (imports, the
dataset onto the device) is paid once per job, not once per cell. Each member keeps its own
checkpoint and, once finished, its own recorded result, so a killed job resumes inside the group.

A stop signal (a cluster's time limit or preemption: `preemption`) saves the current step and ends
the job with one line; rerunning it resumes at that step.

A pack that failed for a reason other than training (out of memory, a device error) is no evidence:
the job writes every result it has, records nothing of the failed members as finished, and exits
non-zero naming them, so Snakemake (`retries:`, `--keep-going`), SLURM and a rerun see a failed job
and retrain that pack alone (a sequential job's finished members are restored, not retrained).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from skipinit.data.imagenet import ImageNetLayoutError
from skipinit.data.sources import data_kind
from skipinit.engine.options import EngineOptions
from skipinit.engine.preemption import Preempted, StopSignal
from skipinit.engine.trainer import train_pack
from skipinit.fileio import write_json
from skipinit.record import FAILED


def git_commit() -> str:
    """The commit of the code that produced a result (`unknown` outside a git checkout)."""
    here = Path(__file__).parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True, cwd=here
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=here
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_job(
    cells: list[dict],
    dataset_path: str | os.PathLike,
    out: str | os.PathLike,
    checkpoint: str | os.PathLike,
    options: EngineOptions,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train `cells` as one pack on the data at `dataset_path`; write and return their results."""
    request = {"cells": cells, "options": dataclasses.asdict(options)}
    finished = Path(f"{checkpoint}.done.json")
    if finished.exists():
        recorded = json.loads(finished.read_text())
        if {key: value for key, value in recorded.items() if key != "results"} == request:
            # The rerun after such a kill deletes result.json as incomplete; the recorded result restores it.
            log(f"pack already finished; restoring its recorded result from {finished}")
            write_json(out, recorded["results"])
            return recorded["results"]
    kind = data_kind(cells)
    try:
        dataset = kind.open(dataset_path)
    except ImageNetLayoutError as error:
        raise SystemExit(f"error: {error}") from None
    try:
        with StopSignal() as stop:
            results = train_cells(cells, dataset, options, checkpoint, log, stop)
    except Preempted as error:
        raise SystemExit(f"preempted: {error}") from None
    commit, dataset_sha256 = git_commit(), kind.sha256(dataset)
    for result in results:
        result["git_commit"] = commit
        result["dataset_sha256"] = dataset_sha256
    if failed := [result for result in results if result["status"] == FAILED]:
        write_json(out, results)
        lrs_seeds = ", ".join(f"lr={result['lr']:g} seed={result['seed']}" for result in failed)
        raise SystemExit(
            f"error: {len(failed)} of {len(results)} cell(s) failed, not for a reason of training "
            f"({lrs_seeds}): {failed[0]['error']}; results written to {out}, none recorded as finished: "
            "rerun the same command to retrain them"
        )
    write_json(finished, {**request, "results": results})
    write_json(out, results)
    Path(checkpoint).unlink(missing_ok=True)
    for index in range(len(cells)):
        member = member_checkpoint(checkpoint, index)
        member.unlink(missing_ok=True)
        Path(f"{member}.done.json").unlink(missing_ok=True)
    return results


def member_checkpoint(checkpoint: str | os.PathLike, index: int) -> Path:
    return Path(f"{checkpoint}.member{index}")


def train_cells(
    cells: list[dict],
    dataset,
    options: EngineOptions,
    checkpoint: str | os.PathLike,
    log: Callable[[str], None] = print,
    stop: StopSignal | None = None,
) -> list[dict]:
    """The job's cells as one pack, or (`packing: sequential`) one after another, each a pack of one."""
    if options.packing != "sequential" or len(cells) == 1:
        return train_pack(cells, dataset, options, checkpoint=checkpoint, log=log, stop=stop)
    results = []
    for index, cell in enumerate(cells):
        member = member_checkpoint(checkpoint, index)
        done = Path(f"{member}.done.json")
        recorded = json.loads(done.read_text()) if done.exists() else None
        if recorded is not None and recorded["cell"] == cell:
            log(f"member {index + 1}/{len(cells)} already finished; restoring its recorded result from {done}")
            results += recorded["results"]
            continue
        log(f"member {index + 1}/{len(cells)}: lr={cell['lr']:g} seed={cell['seed']}")
        rows = train_pack([cell], dataset, options, checkpoint=member, log=log, stop=stop)
        if all(row["status"] != FAILED for row in rows):  # a failed member is retrained by the rerun
            write_json(done, {"cell": cell, "results": rows})
        results += rows
    return results
