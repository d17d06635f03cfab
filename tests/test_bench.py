"""The throughput benchmark still runs against the engine's interfaces (it times, it asserts nothing about speed)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode, graphs", [("cell", False), ("sweep", False), ("cell", True), ("sweep", True)])
def test_benchmark_runs_and_reports_a_ratio(mode, graphs):
    command = [sys.executable, str(REPO / "bench" / "train_throughput.py"), "--mode", mode, "--steps", "1", "--warmup", "1",
               "--workers", "0", "--device", "cpu"] + (["--graphs", "--depth", "10"] if graphs else [])
    if mode == "sweep":
        command += ["--cells", "2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    ratio = re.search(r"^ratio=(\d+\.\d+)$", result.stdout, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0
    if graphs:  # on the CPU the option is ignored, and the benchmark says so
        assert "graphed engine: cuda_graphs: ignored on cpu" in result.stdout and "MFU n/a on the CPU" in result.stdout
