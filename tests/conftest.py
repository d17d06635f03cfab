import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SLURM_DIR = REPO.parent / "shared" / "slurm"
_CLUSTER: dict[str, str | None] = {}  # "problem": why the SLURM test cluster is not up, None once it is


def start_cluster() -> str | None:
    """Start the single-node SLURM cluster of ../shared/slurm once per session; why it cannot run, or None."""
    if "problem" not in _CLUSTER:
        up = SLURM_DIR / "up.sh"
        if not up.is_file():
            _CLUSTER["problem"] = f"no SLURM test cluster: {up} is missing"
        elif os.geteuid() != 0:
            _CLUSTER["problem"] = "the SLURM test cluster needs root (up.sh installs and starts daemons)"
        else:
            _CLUSTER["problem"] = None
            try:
                started = subprocess.run(
                    [str(up)], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
                )
            except subprocess.TimeoutExpired:
                _CLUSTER["problem"] = "the SLURM test cluster did not start within 600 s (up.sh)"
            else:
                if started.returncode != 0:
                    _CLUSTER["problem"] = (
                        f"the SLURM test cluster did not start (up.sh exit {started.returncode}): "
                        f"{(started.stdout + started.stderr)[-1500:]}"
                    )
    return _CLUSTER["problem"]


@pytest.fixture(scope="session", autouse=True)
def slurm_controller_where_installed():
    """Where SLURM is installed, its test cluster runs for the whole session, stopped at its end (down.sh stops only
    what up.sh started, also after a failed start). Every Snakemake start loads the SLURM executor plugin, which asks
    the controller for its configuration (`scontrol show config`) and waits 9 s where it is down: about 30 Snakemake
    calls of the suite would wait that long each. Where SLURM is not installed, that question fails at once."""
    if shutil.which("scontrol"):
        start_cluster()
    yield
    if "problem" in _CLUSTER and os.geteuid() == 0:
        subprocess.run(
            [str(SLURM_DIR / "down.sh")], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )


@pytest.fixture(scope="session")
def cluster():
    """The SLURM test cluster (started once, for the session), or the test skips saying why."""
    problem = start_cluster()
    if problem:
        pytest.skip(problem)


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


def train_arguments(cells: list[dict], dataset, folder: Path) -> list[str]:
    """`skipinit train` on the CPU, fp32, deterministic, one thread: `cells` on `dataset`, writing result.json and
    ckpt.pt in `folder`."""
    return [
        "train",
        "--cells",
        json.dumps(cells),
        "--dataset",
        str(dataset),
        "--out",
        str(folder / "result.json"),
        "--checkpoint",
        str(folder / "ckpt.pt"),
        *"--device cpu --precision fp32 --deterministic --threads 1".split(),
    ]


def train_command(cells: list[dict], dataset, folder: Path) -> list[str]:
    """`train_arguments` as a process of its own, as a Snakemake job runs it."""
    return [sys.executable, "-m", "skipinit", *train_arguments(cells, dataset, folder)]


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
