import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def snakemake(*args: str, cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the venv's Snakemake as a user would (a subprocess in a copy of the workflow)."""
    command = [sys.executable, "-m", "snakemake", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed "
            f"({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def copy_workflow(destination: Path) -> Path:
    """A fresh checkout-like copy of the workflow (sources, configs, rules), without results."""
    for item in ("Snakefile", "workflow", "config", "src", "bench"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, destination / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / item)
    return destination


class Killed(BaseException):
    """Stands for a kill -9: nothing in the trainer handles it, as nothing handles a SIGKILL."""


def kill_in_second_epoch(start_training) -> None:
    """Run `start_training(log)` and 'kill' it at its first line of epoch 2: the epoch-1 checkpoint is on disk,
    epoch 2's is not yet (the trainer logs an epoch before it saves it)."""

    def log(line: str) -> None:
        if line.startswith("epoch 2/"):
            raise Killed

    with pytest.raises(Killed):
        start_training(log)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke profile run once end to end through Snakemake; tests read its outputs."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", cwd=workdir)
    return workdir, result
