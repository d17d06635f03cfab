"""How the workflow's bookkeeping grows with the sweep: 10^3 to 10^5 cells, no training.

For each size it writes a synthetic profile (the batch-size study over many seeds and learning
rates, on the synthetic data source), then times as separate processes, with each one's peak
memory:

- `job parse`: one training job's own Snakemake parse, as a cluster job makes it
  (`--target-jobs train:... --allowed-rules train --mode remote`, dry-run);
- `dry run`: `snakemake -n` of the whole workflow before any job ran;
- `aggregate`, `claims` and `figure`: the package's CLI on SYNTHETIC result files (made-up
  accuracies and 200-point curves, `torch_version` "synthetic (bench/scale.py)"), written into a
  temporary folder, never into results/.

It prints one row per size and step, then each step's growth exponent between sizes
(log(time ratio) / log(size ratio)): 0 is constant, 1 linear. Run from the repository root:

    .venv/bin/python bench/scale.py                      # 10^3, 10^4, 10^5 cells
    .venv/bin/python bench/scale.py --sizes 1000 10000   # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from skipinit import profile  # noqa: E402  (after the path above: the checkout's package)
from skipinit.grid import cell_id  # noqa: E402

MODELS = [{"variant": "batchnorm"}, {"variant": "skipinit"}, {"variant": "skipinit", "dropout": 0.2}]
BATCH_SIZES = [16, 64, 256]
LRS = [0.0125 * 2**k for k in range(10)]  # one pack per (model, batch size, seed): pack 10
EPOCHS = 200  # curve points per cell


def write_profile(cells: int, folder: Path) -> Path:
    """A batch-size study of about `cells` cells: 3 models x 3 batch sizes x 10 lrs x seeds."""
    seeds = max(1, round(cells / (len(MODELS) * len(BATCH_SIZES) * len(LRS))))
    spec = {
        "name": f"synthetic_scale_{cells}",
        "dataset": "synthetic",
        "data_source": "synthetic",
        "data_path": None,
        "synthetic": {"train_size": 512, "test_size": 128, "seed": 0},
        "device": "cpu",
        "precision": "fp32",
        "claims": str(REPO / "config" / "claims.yaml"),
        "pack": len(LRS),
        "eval_every": 1,
        "training": {"arch": "wrn", "width": 1, "epochs": EPOCHS, "batch_size": 64, "schedule": "halving"},
        "experiments": {
            "batch_size": {
                "kind": "batch_size",
                "description": "Synthetic scale benchmark (bench/scale.py): no training, made-up results.",
                "grid": {"depth": [16], "batch_size": BATCH_SIZES, "lr": LRS, "seed": list(range(seeds))},
                "models": MODELS,
            }
        },
        "signal": {"models": []},
    }
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def synthetic_results(resolved: profile.Resolved, root: Path) -> None:
    """One result.json per pack, in the layout the train rule writes, with made-up numbers."""
    rng = random.Random(0)
    for key, members in resolved.packs.items():
        rows = []
        for cell in members:
            final = max(10.0, 60 - 8 * abs(math.log2(cell["lr"] / 0.1)) + rng.gauss(0, 1))
            curve = [
                {
                    "epoch": e + 1,
                    "step": (e + 1) * 8,
                    "lr": cell["lr"],
                    "train_loss": 2.3 / (e + 1),
                    "train_acc": final * (e + 1) / EPOCHS + 5,
                    "test_loss": 2.3 / (e + 1),
                    "test_acc": final * (e + 1) / EPOCHS,
                    "seconds": 0.5 * (e + 1),
                }
                for e in range(EPOCHS)
            ]
            rows.append(
                {
                    **cell,
                    "status": "ok",
                    "diverged": False,
                    "diverged_step": None,
                    "error": None,
                    "test_acc": final,
                    "test_loss": 1.0,
                    "test_images": 128,
                    "train_loss": 0.9,
                    "train_acc": final + 5,
                    "epochs_completed": EPOCHS,
                    "steps": 8 * EPOCHS,
                    "wall_seconds": 100.0,
                    "images_per_second": 1000.0,
                    "pack_size": len(members),
                    "device": "cpu",
                    "packing": "sequential",
                    "precision": "fp32",
                    "micro_batch": 64,
                    "channels_last": True,
                    "deterministic": False,
                    "image_size": 32,
                    "fixup_scalar_lr": None,
                    "torch_version": "synthetic (bench/scale.py)",
                    "git_commit": None,
                    "dataset_sha256": None,
                    "curve": curve,
                }
            )
        path = root / "results" / resolved.name / "cells" / key / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows))


def measure(command: list[str], workdir: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `command` as one child process; its failure stops the benchmark."""
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({' '.join(command[:6])} ...):\n{output.decode(errors='replace')[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def run_size(cells: int, folder: Path) -> dict[str, tuple[float, float]]:
    folder.mkdir(parents=True)
    (folder / "config").symlink_to(REPO / "config")  # the claims file and the paper's numbers the rules read
    prof = write_profile(cells, folder)
    resolved = profile.resolve([prof], workdir=folder)
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(prof),
        "--cores",
        "1",
        "--quiet",
        "all",
    ]
    first = next(iter(resolved.packs))
    dataset, net, model, hyper, members = first.split("/")
    target = f"train:name={resolved.name},dataset={dataset},net={net},model={model},hyper={hyper},members={members}"
    results = folder / "results" / resolved.name
    figures = results / "figures"
    figures.mkdir(parents=True)
    steps = {
        # As the SLURM executor starts a job: its own target, its rule, remote mode (here dry).
        "job parse": [*snakemake[:-2], "--target-jobs", target, *"--allowed-rules train --mode remote -n".split()],
        "dry run": [*snakemake, "-n"],
    }
    cli = [sys.executable, "-m", "skipinit"]
    manifest = results / "manifest.json"
    # First, as in the workflow: the manifest step, which writes each job's pack file.
    times = {"manifest": measure([*cli, "manifest", str(prof), "--out", str(manifest)], folder)}
    times.update({name: measure(command, folder) for name, command in steps.items()})
    # Snakemake's own start-up (its plugins, the SLURM one's status probe included), for the workflow's share:
    empty = folder / "empty.smk"
    empty.write_text('rule empty:\n    output:\n        "empty.txt"\n    shell:\n        "touch {output}"\n')
    startup = measure(
        [
            *snakemake[:3],
            "--snakefile",
            str(empty),
            "--directory",
            str(folder),
            "--target-jobs",
            "empty:",
            "--allowed-rules",
            "empty",
            "--mode",
            "remote",
            "--cores",
            "1",
            "--quiet",
            "-n",
        ],
        folder,
    )
    times["workflow's share of the job parse"] = (times["job parse"][0] - startup[0], times["job parse"][1])
    synthetic_results(resolved, folder)
    later = {
        "aggregate": [
            *cli,
            "aggregate",
            "--manifest",
            str(manifest),
            "--runs",
            str(results / "runs.parquet"),
            "--curves",
            str(results / "curves.parquet"),
        ],
        "claims": [
            *cli,
            "claims",
            "--runs",
            str(results / "runs.parquet"),
            "--curves",
            str(results / "curves.parquet"),
            "--claims-config",
            str(REPO / "config" / "claims.yaml"),
            "--json",
            str(results / "claims.json"),
            "--md",
            str(results / "claims.md"),
        ],
        "figure": [
            *cli,
            "figure",
            "--runs",
            str(results / "runs.parquet"),
            "--curves",
            str(results / "curves.parquet"),
            "--experiment",
            "batch_size",
            "--png",
            str(figures / "batch_size.png"),
            "--pdf",
            str(figures / "batch_size.pdf"),
        ],
    }
    for name, command in later.items():
        times[name] = measure(command, folder)
    assert len(resolved.cells) == sum(1 for key in resolved.packs for _ in resolved.packs[key])
    assert all(cell_id(cell) for cell in resolved.cells.values())
    return {"cells": len(resolved.cells), "jobs": len(resolved.packs), **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="skipinit-scale-synthetic-"))
    env = os.environ
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; synthetic results under {root}"
    )
    rows = []
    try:
        for size in args.sizes:
            row = run_size(size, root / str(size))
            rows.append(row)
            for step, (seconds, megabytes) in (
                (step, value) for step, value in row.items() if step not in ("cells", "jobs")
            ):
                print(
                    f"{row['cells']:>7} cells {row['jobs']:>6} jobs  {step:<34} {seconds:8.2f} s  "
                    f"{megabytes:8.0f} MB peak",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    steps = [step for step in rows[0] if step not in ("cells", "jobs")]
    print("\ngrowth exponent, log(time ratio) / log(cells ratio):")
    for small, large in zip(rows, rows[1:]):
        ratio = math.log(large["cells"] / small["cells"])
        line = ", ".join(f"{step} {math.log(large[step][0] / small[step][0]) / ratio:+.2f}" for step in steps)
        print(f"  {small['cells']} -> {large['cells']}: {line}")


if __name__ == "__main__":
    main()
