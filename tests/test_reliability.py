"""Faults and reruns lose nothing: kill -9 mid-training, rerun, same results; clear errors for bad storage."""

import errno
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import copy_workflow, snakemake
from skipinit import cli

METRICS = ["cell_id", "status", "diverged", "diverged_step", "test_acc", "test_loss", "train_loss", "train_acc", "epochs_completed", "steps"]


def metrics(workdir):
    return pd.read_parquet(workdir / "results" / "smoke" / "runs.parquet")[METRICS].sort_values("cell_id").reset_index(drop=True)


@pytest.mark.slow
def test_kill_then_rerun_keeps_finished_cells_and_resumes_the_rest(tmp_path, smoke_run):
    workdir = copy_workflow(tmp_path)
    cells = workdir / "results" / "smoke" / "cells"
    checkpoints = workdir / "results" / "smoke" / "checkpoints"
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"],
        cwd=workdir, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and run.poll() is None:
        if any(cells.rglob("result.json")) and any(checkpoints.rglob("*.pt")):
            break
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before a cell was caught mid-training"
    os.killpg(run.pid, signal.SIGKILL)  # the whole process tree, as a preemption would
    run.wait()
    finished = {path: (path.read_text(), path.stat().st_mtime_ns) for path in cells.rglob("result.json")}
    interrupted = [str(path.relative_to(checkpoints))[: -len(".pt")] for path in checkpoints.rglob("*.pt")]
    assert finished and interrupted

    snakemake("--unlock", "--configfile", "config/smoke.yaml", cwd=workdir)
    snakemake("--cores", "2", "--configfile", "config/smoke.yaml", "--rerun-incomplete", cwd=workdir)

    logs = workdir / "results" / "smoke" / "logs" / "train"
    for path, (content, mtime) in finished.items():
        assert path.read_text() == content, "a finished cell's result changed"
        log = (logs / f"{path.parent.relative_to(cells)}.log").read_text()
        # Either Snakemake had recorded the job (not rerun), or the rerun restored the recorded result.
        assert path.stat().st_mtime_ns == mtime or "restoring its recorded result" in log, "a finished cell was retrained"
    for cell in interrupted:
        assert "resuming from checkpoint" in (logs / f"{cell}.log").read_text()
    pd.testing.assert_frame_equal(metrics(workdir), metrics(smoke_run[0]))


def test_unwritable_results_folder_is_one_clear_error(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "results").mkdir()
    (workdir / "results" / "smoke").write_text("not a folder")  # as root, permissions cannot make it unwritable
    result = snakemake("-n", "--configfile", "config/smoke.yaml", cwd=workdir, check=False)
    assert result.returncode != 0
    assert "cannot write to results/smoke/" in result.stdout + result.stderr


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_full_disk_during_a_command_is_one_clear_error(tmp_path, monkeypatch, code):
    def disk_full(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "out.npz"))

    monkeypatch.setattr("skipinit.data.save_canonical", disk_full)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["prepare-data", "--source", "synthetic", "--name", "synthetic", "--out", str(tmp_path / "out.npz")])
    message = str(exit_info.value)
    assert message.startswith(f"error: cannot write {tmp_path / 'out.npz'}: {os.strerror(code)}")
    assert "rerun the same command" in message


def test_bad_config_is_refused_under_dry_run_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", "pack=0", cwd=workdir, check=False)
    assert result.returncode != 0
    assert "pack=0 must be a positive integer" in result.stdout + result.stderr
    assert not (workdir / "resources").exists() or not any((workdir / "resources").rglob("*.npz"))
