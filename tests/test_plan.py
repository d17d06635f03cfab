"""The compute plan: the throughput model against the committed measurements, the plan's numbers, SLURM time limits."""

import csv
import json
import math
import re
import statistics
import subprocess
import sys

import pytest
import torch

from skipinit import cost, grid, models, plan, profile

from conftest import REPO

# Leave-one-out on the committed H100 jobs (bench/THROUGHPUT.md, README): median 10.4%, worst 21.4%.
LOO_MEDIAN_BOUND, LOO_WORST_BOUND = 0.12, 0.25


def test_leave_one_out_predicts_each_measured_job_within_the_stated_error():
    rows = cost.read_measurements()
    predictions = cost.leave_one_out(rows, "h100")
    assert len(predictions) >= 10  # the committed reference jobs (results/reference/gpu/benchmarks)
    errors = [abs(predicted / row["seconds"] - 1) for row, predicted in predictions]
    print(f"leave-one-out relative error: median {statistics.median(errors):.1%}, worst {max(errors):.1%}")
    assert statistics.median(errors) <= LOO_MEDIAN_BOUND and max(errors) <= LOO_WORST_BOUND, errors


def test_macs_agree_with_torch_flop_counter():
    """The hook count of conv and linear MACs is what torch's own FLOP counter finds (2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    for depth, width in ((10, 1), (16, 2)):
        model = models.wide_resnet(depth, width, "batchnorm")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        assert cost.shape_cost("wrn", depth, width, "batchnorm").macs * 2 == counter.get_total_flops()


@pytest.mark.parametrize("variant", ["batchnorm", "fixup", "unnormalized"])
def test_deep_wrn_counts_are_extrapolated_exactly(variant):
    counted = cost._count("wrn", 100, 1, variant)
    assert cost.shape_cost("wrn", 100, 1, variant) == counted
    model = models.wide_resnet(100, 1, variant)
    assert counted.params == sum(p.numel() for p in model.parameters())


def test_fit_reproduces_known_coefficients():
    """Rows generated from known coefficients are fitted back to them (the fit, not the data)."""
    truth = cost.ThroughputModel("test", (20.0, 2e-4, 3e-15, 8e-15), 0)
    shapes = [("wrn", 16, 1), ("wrn", 16, 4), ("wrn", 100, 1), ("wrn", 22, 2)]
    rows = []
    for (arch, depth, width), batch, pack, job in [
        (s, b, p, j) for s in shapes for b, p, j in ((64, 1, False), (512, 8, True), (128, 4, True))
    ]:
        work = cost.Work(
            arch, depth, width, "batchnorm", batch, pack, 200, 2 if job else 0, 10000 if job else 0, job=job
        )
        rows.append(
            {"device_class": "test", "kind": "job" if job else "steps", "work": work, "seconds": truth.seconds(work)}
        )
    fitted = cost.fit(rows, "test")
    assert fitted.coefficients == pytest.approx(truth.coefficients, rel=1e-6)


def test_unmeasured_device_classes():
    rows = cost.read_measurements()
    h100, a100 = cost.fit(rows, "h100"), cost.fit(rows, "a100")
    work = cost.Work("wrn", 16, 4, "batchnorm", 1024, 1, 100, job=False)
    assert h100.seconds(work) < a100.seconds(work)  # a compute-bound shape: slower by up to the peak ratio
    assert a100.seconds(work) <= h100.seconds(work) * cost.PEAK_TFLOPS["h100"] / cost.PEAK_TFLOPS["a100"]
    with pytest.raises(ValueError, match=r"device_class='tpu'.*--append bench/throughput.csv --device-class tpu"):
        cost.fit(rows, "tpu")


def resolved(name: str, overrides: dict | None = None):
    return profile.resolve([REPO / "config" / f"{name}.yaml"], overrides, data=False)


def smoke_config():
    return resolved("smoke").config


def test_runtime_minutes_is_the_prediction_times_safety_within_the_bounds():
    paper = resolved(
        "paper", {"resources": {"train_runtime_min": 60, "train_runtime_max": 600, "train_runtime_safety": 2.0}}
    )
    config, packs = paper.config, paper.packs
    seen = set()
    for cells in packs.values():
        predicted = plan.pack_seconds(cells, config)
        expected = max(60, min(600, math.ceil(predicted * 2.0 / 60)))
        assert plan.runtime_minutes(cells, config) == expected
        seen.add("floor" if expected == 60 else "ceiling" if expected == 600 else "between")
    assert seen == {"floor", "between", "ceiling"}  # WRN-16-2 cells are short, WRN-1000-2 ones long
    config["resources"]["train_runtime"] = 77
    assert {plan.runtime_minutes(cells, config) for cells in packs.values()} == {77}


def test_runtime_follows_the_cells_work():
    config = smoke_config()
    config["resources"].update(
        device_class="h100", train_runtime_min=1, train_runtime_max=100000, train_runtime_safety=1.0
    )
    short = [grid.make_cell({"dataset": "synthetic", "depth": 16, "epochs": 10, "batch_size": 32})]
    longer = [dict(short[0], epochs=1000)]
    overhead = cost.model_for("h100").coefficients[0]  # once per job; steps and evaluations scale with epochs
    assert plan.pack_seconds(longer, config) - overhead == pytest.approx(
        100 * (plan.pack_seconds(short, config) - overhead)
    )
    assert plan.runtime_minutes(longer, config) > plan.runtime_minutes(short, config)


def test_makespan_schedules_longest_first():
    assert plan.makespan([3, 3, 2, 2, 2], 2) == 7
    assert plan.makespan([5, 1, 1], 4) == 5
    assert plan.makespan([1] * 10, 1) == 10


def test_paper_plan_counts_every_job_once_in_the_total(tmp_path):
    paper = resolved("paper")
    rows = {row["experiment"]: row for row in plan.summarize(paper, gpus=8)}
    table, experiments = plan.jobs(paper)
    planned = grid.unique_cells(paper.planned)  # ImageNet's cells too, though no imagenet.root is set
    assert rows["total"]["jobs"] == len(table) == len(grid.packs(planned, paper.config["pack"]))
    assert rows["total"]["cells"] == len(planned) > len(paper.cells)
    assert rows["total"]["gpu_hours"] == pytest.approx(sum(job.seconds for job in table.values()) / 3600)
    # Shared jobs (batch norm at batch 64 serves two studies) count in each experiment, once in the total.
    assert sum(rows[name]["jobs"] for name in experiments) > rows["total"]["jobs"]
    total = rows["total"]
    assert total["gpu_hours"] / 8 <= total["wall_hours"] <= total["gpu_hours"] / 8 + total["longest_job_hours"]
    assert rows["imagenet"]["note"] == "runs once imagenet.root is set"
    # WRN-1000-2: fp32 weights and momentum of ~64M parameters per checkpoint.
    deepest = max(table.values(), key=lambda job: job.params)
    assert deepest.work.depth == 1000 and deepest.checkpoint_bytes == 8 * models_params(1000, 2, deepest.work.variant)


def models_params(depth, width, variant):
    return cost._count("wrn", depth, width, variant).params


def test_result_bytes_estimate_matches_the_reference_results():
    root = REPO / "results" / "reference" / "gpu"
    for result in (root / "cells").rglob("result.json"):
        rows = json.loads(result.read_text())
        log = root / "logs" / "train" / (str(result.parent.relative_to(root / "cells")) + ".log")
        if "resuming from checkpoint" in log.read_text():
            continue  # its log holds the epochs after the checkpoint only
        measured = result.stat().st_size + log.stat().st_size
        epochs = len(rows[0]["curve"])
        estimated = len(rows) * (plan.RESULT_BYTES_PER_CELL + plan.RESULT_BYTES_PER_EPOCH * epochs)
        assert 0.7 < estimated / measured < 1.4, (result, measured, estimated)


def test_plan_command_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "plan.csv"
    result = subprocess.run(
        [sys.executable, "-m", "skipinit", "plan", "--profile", "config/smoke.yaml", "--gpus", "2", "--csv", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "GPU-h" in result.stdout and "SLURM --time per training job" in result.stdout
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["experiment"] for row in rows] == ["depth", "total"]
    assert int(rows[-1]["jobs"]) == len(resolved("smoke").packs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile", "config/nothing.yaml"], "--profile config/nothing.yaml: cannot be read"),
        (["--profile", "config/smoke.yaml", "--device-class", "tpu"], "device_class='tpu' has no measurements"),
        (["--profile", "config/smoke.yaml", "--gpus", "0"], "--gpus 0: give at least 1"),
    ],
)
def test_plan_command_refuses_bad_input_in_one_line(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "skipinit", "plan", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
        result.stderr
    )


def test_bench_appends_measurements_the_model_reads(tmp_path):
    measurements = tmp_path / "throughput.csv"
    measurements.write_text((REPO / "bench" / "throughput.csv").read_text())
    command = [
        sys.executable,
        str(REPO / "bench" / "train_throughput.py"),
        "--mode",
        "sweep",
        "--cells",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--append",
        str(measurements),
        "--device-class",
        "mycpu",
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
    rows = [row for row in cost.read_measurements(measurements) if row["device_class"] == "mycpu"]
    assert [(row["pack"], row["steps"]) for row in rows] == [("2", "2"), ("1", "4")]
    model = cost.fit(cost.read_measurements(measurements), "mycpu")
    assert model.measurements == 2 and model.seconds(rows[0]["work"]) > 0


def test_limits_say_which_jobs_continue_across_attempts():
    paper = resolved("paper")
    lines = plan.limits(paper, retries=2)
    assert any("continues from its epoch checkpoint" in line for line in lines), lines  # WRN-1000-2 beyond a day
    assert not any(line.startswith("warning") for line in lines), lines  # the profile's retries suffice
    assert any("raise --retries" in line for line in plan.limits(paper, retries=0))
    short = resolved("paper", {"resources": {"train_runtime_max": 5}})  # shorter than a WRN-1000-2 epoch
    assert any("longer per epoch than their time limit" in line for line in plan.limits(short, retries=2))


def test_the_readme_states_the_paper_grid_as_the_plan_counts_it():
    """The paper grid's size is the plan's: the README quotes it, and no other document states one."""
    paper = resolved("paper")
    rows = {row["experiment"]: row for row in plan.summarize(paper, gpus=8)}
    imagenet = rows["imagenet"]["jobs"]
    stated = f"{rows['total']['jobs']:,} jobs ({rows['total']['jobs'] - imagenet:,} CIFAR-10 and {imagenet} ImageNet)"
    assert stated in " ".join((REPO / "README.md").read_text().split())
    assert not re.search(r"\d,\d{3} (training )?runs", (REPO / "config" / "paper.yaml").read_text())
