"""The throughput benchmark still runs against the engine's interfaces (it times, it asserts nothing about speed)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode", ["cell", "sweep"])
def test_benchmark_runs_and_reports_a_ratio(mode):
    command = [sys.executable, str(REPO / "bench" / "train_throughput.py"), "--mode", mode, "--steps", "1", "--warmup", "1",
               "--workers", "0", "--device", "cpu"]
    if mode == "sweep":
        command += ["--cells", "2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    ratio = re.search(r"^ratio=(\d+\.\d+)$", result.stdout, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0
