"""Faults and reruns lose nothing: kill -9 mid-training, rerun, same results; clear errors for bad storage."""

import errno
import os
import resource
import signal
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, copy_workflow, snakemake

METRICS = [
    "cell_id",
    "status",
    "diverged",
    "diverged_step",
    "test_acc",
    "test_loss",
    "train_loss",
    "train_acc",
    "epochs_completed",
    "steps",
]


def metrics(workdir):
    return (
        pd.read_parquet(workdir / "results" / "smoke" / "runs.parquet")[METRICS]
        .sort_values("cell_id")
        .reset_index(drop=True)
    )


@pytest.mark.slow
def test_kill_then_rerun_keeps_finished_cells_and_resumes_the_rest(tmp_path, smoke_run):
    workdir = copy_workflow(tmp_path)
    cells = workdir / "results" / "smoke" / "cells"
    checkpoints = workdir / "results" / "smoke" / "checkpoints"
    # The second training job kills the whole run with SIGKILL in its epoch 2 (tests/signal_hook).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "signal_hook"), os.environ.get("PYTHONPATH", "")]),
        "SIGNAL_ON_LINE": "epoch 2/",
        "SIGNAL_NAME": "SIGKILL",
        "SIGNAL_TO": "group",
        "SIGNAL_AFTER": "results/*/cells/**/result.json",
    }
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config/smoke.yaml"],
        cwd=workdir,
        start_new_session=True,
        capture_output=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
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
        assert path.stat().st_mtime_ns == mtime or "restoring its recorded result" in log, (
            "a finished cell was retrained"
        )
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


def limit_file_size():
    """In the child: files may not grow beyond 64 KiB, and a write past that fails (Python ignores SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


def test_full_disk_during_a_command_is_one_clear_error(tmp_path):
    """A real failed write (the file-size limit stops it as a full disk would): one line, no partial file."""
    out = tmp_path / "out.npz"
    command = [
        sys.executable,
        "-m",
        "skipinit",
        "prepare-data",
        "--source",
        "synthetic",
        "--name",
        "synthetic",
        "--out",
        str(out),
        "--no-download",
        "--synthetic-train-size",
        "512",
        "--synthetic-test-size",
        "256",
        "--synthetic-seed",
        "0",
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: cannot write {out}: {os.strerror(errno.EFBIG)}"), result.stderr
    assert "rerun the same command" in message and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # the atomic write left nothing half-written


def test_bad_config_is_refused_under_dry_run_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", "pack=0", cwd=workdir, check=False)
    assert result.returncode != 0
    assert "pack=0 must be a positive integer" in result.stdout + result.stderr
    assert not (workdir / "resources").exists() or not any((workdir / "resources").rglob("*.npz"))
