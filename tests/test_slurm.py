"""The SLURM workflow profile (workflow/profiles/slurm) against a real single-node SLURM cluster.

`../shared/slurm/up.sh` starts slurmctld, slurmd and slurmdbd on this machine (root and
Debian's package registry needed; the test skips, saying why, where it cannot), and
`down.sh` stops them afterwards. The node has no GPU (no GRES), so the end-to-end run maps
`gpu` to 0; the GPU request of training jobs is checked in the sbatch call the plugin makes,
which this cluster then refuses.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from skipinit import plan
from skipinit.profile import resolve

from conftest import REPO, copy_workflow

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = "workflow/profiles/slurm"
# Columns that differ between any two runs: timing and the code's commit.
NOT_COMPARED = {"wall_seconds", "images_per_second", "git_commit", "seconds"}
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", re.MULTILINE)


def slurm_command(*args: str) -> tuple[list[str], dict]:
    """Snakemake with the SLURM profile, as a user would call it, with fast status checks.

    The venv's bin comes first on PATH: jobs inherit the environment (sbatch --export=ALL),
    so `python -m skipinit` in a job is the venv's interpreter.
    """
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("SLURM_JOB_ID", None)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        PROFILE,
        "--configfile",
        "config/smoke.yaml",
        "--slurm-init-seconds-before-status-checks",
        "1",
        *args,
    ]
    return command, env


def slurm_snakemake(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    command, env = slurm_command(*args)
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise AssertionError(failure(args, result.returncode, result.stdout + result.stderr, cwd))
    return result


def failure(args, returncode: int, output: str, cwd: Path) -> str:
    logs = "\n".join(
        f"--- {path}\n{path.read_text()[-1500:]}" for path in sorted(cwd.glob(".snakemake/slurm_logs/**/*.log"))[-4:]
    )
    return f"snakemake {' '.join(args)} failed ({returncode}):\n{output[-10000:]}\n{logs}"


def no_gpu_overrides() -> list[str]:
    """This GRES-less cluster: the profile with train:gpu=0.

    A command-line --set-resources replaces the profile's whole list, so it is rebuilt
    from the profile with only train:gpu changed.
    """
    profile = yaml.safe_load((REPO / PROFILE / "config.yaml").read_text())
    resources = [
        f"{rule}:{name}={0 if (rule, name) == ('train', 'gpu') else value}"
        for rule, values in profile["set-resources"].items()
        for name, value in values.items()
    ]
    return ["--set-resources", *resources]


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=[column for column in frame.columns if column in NOT_COMPARED])
    keys = [column for column in ("cell_id", "epoch") if column in frame.columns]
    frame = frame.sort_values(keys).reset_index(drop=True)
    if "experiments" in frame.columns:
        frame["experiments"] = frame["experiments"].map(list)
    return frame


def default_partition() -> str:
    listed = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout.split()
    return next(name.rstrip("*") for name in listed if name.endswith("*"))


def smoke_runtime() -> int:
    """The planned SLURM minutes of a smoke cell (all alike: the floor)."""
    smoke = resolve([REPO / "config" / "smoke.yaml"], data=False)
    minutes = {plan.runtime_minutes(cells, smoke.config) for cells in smoke.packs.values()}
    assert len(minutes) == 1, minutes
    return minutes.pop()


def limit_minutes(limit: str) -> int:
    """sacct's Timelimit, [days-]hours:minutes:seconds, in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, minutes, _ = map(int, clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + minutes


def test_training_jobs_ask_slurm_for_a_gpu(cluster, tmp_path):
    """The profile's requests reach sbatch: one GPU and `threads` CPUs per training job, requeue,
    memory from the config and runtime from the compute plan, per job or per group of cells. This GRES-less node
    refuses GPU jobs, so they fail at submission."""
    workdir = copy_workflow(tmp_path)
    data = (
        workdir / "resources" / "datasets" / "synthetic.npz"
    )  # a stand-in: only the training jobs' sbatch calls matter
    data.parent.mkdir(parents=True)
    data.write_bytes(b"placeholder")
    data.with_name(data.name + ".sha256").write_text("0\n")
    checked = workdir / "results" / "smoke" / "logs" / "dataset_sizes.ok"  # the size check's marker, for the stand-in
    checked.parent.mkdir(parents=True)
    checked.write_text("stand-in\n")
    partition = default_partition()
    calls = {}
    for components in ("default", "8"):
        grouping = [] if components == "default" else ["--group-components", f"train={components}"]
        result = slurm_snakemake(
            "--until",
            "train",
            *grouping,
            "--config",
            "threads=4",
            "--retries",
            "0",
            "--verbose",
            cwd=workdir,
            check=False,
            timeout=180,
        )
        assert result.returncode != 0, "a GPU job cannot run on this GRES-less cluster"
        calls[components] = re.findall(r"sbatch call: (sbatch .*)", result.stdout + result.stderr)
    for call in calls["default"] + calls["8"]:
        assert "--gpus=1" in call and "--cpus-per-task=4" in call and "--requeue" in call, call
        assert "--signal=TERM@120" in call, call  # the stop signal ahead of the time limit (engine.preemption)
        assert f" -p {partition} " in call and " --mem 4000 " in call, call
    # The profile's default: one job per cell (12 smoke cells), each its planned runtime (tiny cells: the floor).
    minutes = smoke_runtime()
    assert len(calls["default"]) == 12 and all(f" -t {minutes} " in call for call in calls["default"]), calls["default"]
    # Groups of up to 8 cells: two jobs, still one GPU each, cells one after another (8 and 4 x one cell's runtime).
    assert sorted(int(re.search(r" -t (\d+) ", call).group(1)) for call in calls["8"]) == [4 * minutes, 8 * minutes], (
        calls["8"]
    )


@pytest.fixture(scope="module")
def slurm_smoke(cluster, tmp_path_factory):
    """The smoke profile through SLURM, its 12 cells in two groups, started in the background so that
    the local reference run (`smoke_run`, when the session has not made it yet) overlaps it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-smoke"))
    args = (
        "--jobs",
        "4",
        "--retries",
        "0",
        "--slurm-keep-successful-logs",
        "--group-components",
        "train=6",
        *no_gpu_overrides(),
    )
    command, env = slurm_command(*args)
    log = workdir / "snakemake-slurm.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        yield workdir, process, log, args
    finally:
        if process.poll() is None:  # the test failed early: stop it (Snakemake cancels its SLURM jobs)
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_smoke_run_through_slurm_matches_a_local_run(slurm_smoke, request):
    workdir, process, log, args = slurm_smoke
    local, _ = request.getfixturevalue("smoke_run")  # the local run of the same profile, made meanwhile if needed
    returncode = process.wait(timeout=900)
    output = log.read_text()
    if returncode != 0:
        raise AssertionError(failure(args, returncode, output, workdir))

    submitted = {int(slurm_id): job_log for _, slurm_id, job_log in SUBMITTED.findall(output)}
    kinds = {
        slurm_id: Path(job_log).relative_to(workdir / ".snakemake" / "slurm_logs").parts[0]
        for slurm_id, job_log in submitted.items()
    }
    print(f"{len(submitted)} sbatch jobs: {sorted(kinds.values())}")
    assert sum(kind.startswith("group_train") for kind in kinds.values()) == 2, kinds  # 12 cells in groups of 6
    assert "rule_aggregate" in kinds.values(), kinds
    assert not re.search(r"^localrule (train|aggregate):", output, re.MULTILINE)
    # SLURM's accounting knows every job, and each completed.
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,State,AllocCPUS,Timelimit", "-j", ",".join(map(str, submitted))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {int(line.split("|")[0]): line.split("|")[1:] for line in sacct.splitlines() if line}
    assert set(rows) == set(submitted), sacct
    assert {state for state, _, _ in rows.values()} == {"COMPLETED"}, sacct
    # A group runs its 6 cells one after another: one cell's CPU, 6 x one cell's planned runtime.
    groups = [rows[slurm_id] for slurm_id, kind in kinds.items() if kind.startswith("group_train")]
    assert all(cpus == "1" and limit_minutes(limit) == 6 * smoke_runtime() for _, cpus, limit in groups), sacct
    for job_log in submitted.values():  # the plugin's job logs (kept with --slurm-keep-successful-logs)
        assert Path(job_log).is_file(), job_log

    for name in ("runs.parquet", "curves.parquet"):
        mine = comparable(pd.read_parquet(workdir / "results" / "smoke" / name))
        reference = comparable(pd.read_parquet(local / "results" / "smoke" / name))
        assert len(mine) > 0
        pd.testing.assert_frame_equal(mine, reference, check_exact=True)

    # Nothing left to do: rerunning the same command (how a run resumes) submits nothing.
    again = slurm_snakemake(*args, "--dry-run", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr


# Two experiments of one tiny cell each, of different cost: on the cluster's CPU a 1-epoch WRN-10-1
# and a 20-epoch WRN-16-1. The large safety factor turns their seconds into distinct minutes (the
# short one at the floor of 3, room for a slow start on a busy machine).
RUNTIME_PROFILE = {
    "name": "runtimes",
    "dataset": "synthetic",
    "data_source": "synthetic",
    "data_path": None,
    "synthetic": {"train_size": 256, "test_size": 64, "seed": 0},
    "device": "cpu",
    "precision": "fp32",
    "threads": 1,
    "resources": {"device_class": "cpu", "train_runtime_min": 3, "train_runtime_safety": 200},
    "training": {"arch": "wrn", "width": 1, "batch_size": 64, "lr": 0.1, "seed": 0},
    "experiments": {
        "short": {"grid": {"depth": [10], "epochs": [1]}, "models": [{"variant": "skipinit"}]},
        "long": {"grid": {"depth": [16], "epochs": [20]}, "models": [{"variant": "skipinit"}]},
    },
}


def test_training_jobs_get_the_time_limits_of_the_plan(cluster, tmp_path):
    """Two training jobs of different predicted cost reach SLURM with the --time the compute plan gives each."""
    workdir = copy_workflow(tmp_path)
    profile = workdir / "config" / "runtimes.yaml"
    profile.write_text(yaml.safe_dump(RUNTIME_PROFILE))
    resolved = resolve([profile], data=False)
    planned = {key: plan.runtime_minutes(cells, resolved.config) for key, cells in resolved.packs.items()}
    assert len(planned) == 2 and len(set(planned.values())) == 2, planned  # different costs, different limits

    command, env = slurm_command("--until", "train", "--jobs", "2", "--retries", "0", "--verbose", *no_gpu_overrides())
    command[command.index("config/smoke.yaml")] = "config/runtimes.yaml"
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60))  # this run's jobs only, in sacct
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(failure(["--until", "train"], result.returncode, output, workdir))
    submitted = {int(slurm_id): job_log for _, slurm_id, job_log in SUBMITTED.findall(output)}
    kinds = {
        slurm_id: Path(job_log).relative_to(workdir / ".snakemake" / "slurm_logs").parts[0]
        for slurm_id, job_log in submitted.items()
    }
    training = [slurm_id for slurm_id, kind in kinds.items() if kind.startswith(("rule_train", "group_train"))]
    assert len(training) == 2, kinds
    print(f"sbatch jobs: {kinds}")
    sacct = subprocess.run(
        [
            "sacct",
            "-X",
            "-n",
            "-P",
            "-S",
            started,
            "--format=JobID,State,Timelimit,Elapsed",
            "-j",
            ",".join(map(str, training)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {int(line.split("|")[0]): line.split("|")[1:] for line in sacct.splitlines() if line}
    assert set(rows) == set(training), sacct
    limits = sorted(limit_minutes(limit) for _, limit, _ in rows.values())
    print(f"planned minutes {planned}; SLURM time limits {limits}")
    assert limits == sorted(planned.values()), sacct
    assert {state for state, _, _ in rows.values()} == {"COMPLETED"}, sacct
