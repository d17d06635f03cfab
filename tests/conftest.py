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
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
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


class Killed(Exception):
    """Stands for a kill -9 right after a checkpoint was written."""


def kill_after_first_checkpoint(monkeypatch, train_module, start_training) -> None:
    """Run `start_training()` until its first checkpoint is on disk, then 'kill' it."""
    real_save = train_module.save_checkpoint

    def save_then_die(target, state):
        real_save(target, state)
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            start_training()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke profile run once end to end through Snakemake; tests read its outputs."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", cwd=workdir)
    return workdir, result
