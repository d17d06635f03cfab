"""The throughput benchmark still runs against the engine's interfaces (it times, it asserts nothing about speed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode, graphs", [("cell", False), ("sweep", False), ("cell", True), ("sweep", True)])
def test_benchmark_runs_and_reports_a_ratio(mode, graphs):
    command = [
        sys.executable,
        str(REPO / "bench" / "train_throughput.py"),
        "--mode",
        mode,
        "--steps",
        "1",
        "--warmup",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
    ] + (["--graphs", "--depth", "10"] if graphs else [])
    if mode == "sweep":
        command += ["--cells", "2"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ratio = re.search(r"^ratio=(\d+\.\d+)$", result.stdout, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0
    if graphs:  # on the CPU the option is ignored, and the benchmark says so
        assert "graphed engine: cuda_graphs: ignored on cpu" in result.stdout and "MFU n/a on the CPU" in result.stdout


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_limit_mode_names_its_precision_and_ends_with_the_engine_over_the_bare_loop(precision):
    command = [
        sys.executable,
        str(REPO / "bench" / "train_throughput.py"),
        "--mode",
        "limit",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--depth",
        "10",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--precision",
        precision,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"precision={precision}" in result.stdout.splitlines()[0]
    assert (
        len(
            re.findall(
                r"^repeat \d: engine [\d.]+ img/s, bare loop [\d.]+ img/s, ratio [\d.]+$", result.stdout, re.MULTILINE
            )
        )
        == 2
    )
    assert re.search(r"^ratio=\d+\.\d+$", result.stdout.splitlines()[-1])


def test_the_graphs_equality_check_runs_on_the_cpu_as_a_dry_run(tmp_path):
    """bench/gpu_graphs.sh's first part; on the CPU the option is ignored, so graphed == eager exactly."""
    command = [
        sys.executable,
        str(REPO / "bench" / "graphs_equality.py"),
        "--device",
        "cpu",
        "--depth",
        "10",
        "--width",
        "1",
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "2",
        "--case",
        "cell_ghost_bn_micro_batch",
        "--case",
        "pack8_bn_dropout",
        "--json",
        str(tmp_path / "rows.json"),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [row["case"] for row in rows] == ["cell_ghost_bn_micro_batch", "pack8_bn_dropout"]
    assert all(
        row["passed"] and row["bit_identical"] and row["state"] == "eager (option ignored)" and row["steps"] == 4
        for row in rows
    )
