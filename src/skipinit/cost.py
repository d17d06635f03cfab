"""A throughput model of training cost, fitted to measured jobs and steps (bench/throughput.csv).

The seconds of one training job (a pack of `pack` cells, trained as one computation) are

    seconds = overhead                       per process: start, imports, data to the device, cuDNN autotuning
            + launch  * steps * micro * calls  per forward module call of a step, whatever its size (launches,
                                               host work)
            + dense   * MACs (pack of 1)     per multiply-accumulate: 3 x forward per training image, 1 x per test image
            + grouped * MACs (pack > 1)      the same, through the grouped convolutions of a channel-packed pack

with the four coefficients fitted per device class by non-negative least squares on relative
error. MACs (conv and linear) and module calls are counted from the model itself on the meta
device (`shape_cost`), so a shape never measured is predicted from its own FLOPs and depth:
FLOPs-proportional in the compute-bound regime, proportional to module calls in the
launch-bound one. A device class with one measured shape only cannot tell launches from
FLOPs apart: its launch term is dropped (FLOPs-proportional scaling). A device class with no
measurements at all is the H100 fit with its compute terms scaled by peak dense bf16 throughput
(`PEAK_TFLOPS`), stated as an assumption wherever it is used.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.optimize

MEASUREMENTS = Path(__file__).resolve().parents[2] / "bench" / "throughput.csv"
REFERENCE_CLASS = "h100"
# Peak dense bf16 tensor throughput (vendor data sheets, SXM parts where both exist), for device
# classes without measurements only: their compute terms are the reference class's scaled by this ratio.
PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0, "a100": 312.0, "l40s": 362.0, "a10": 125.0, "v100": 125.0}
FEATURES = ("overhead", "launch", "dense", "grouped")
COLUMNS = (
    "kind",
    "device_class",
    "device",
    "torch",
    "precision",
    "compile",
    "arch",
    "depth",
    "width",
    "variant",
    "batch_size",
    "pack",
    "micro_batch",
    "steps",
    "evals",
    "test_images",
    "seconds",
    "date",
    "source",
)
IMAGE_SIZE = {"wrn": 32, "resnet50_v2": 224}


@dataclass(frozen=True)
class ShapeCost:
    """What one image costs a model, counted from the model: forward MACs, module calls, parameters."""

    macs: int
    calls: int
    params: int


def _count(arch: str, depth: int, width: int, variant: str) -> ShapeCost:
    import torch
    from torch import nn

    from skipinit import models

    with torch.device("meta"):
        if arch == "wrn":
            model = models.wide_resnet(depth, width, variant)
        elif arch == "resnet50_v2":
            model = models.resnet50_v2(variant)
        else:
            raise ValueError(f"arch={arch!r} has no cost model; known: {', '.join(IMAGE_SIZE)}")
    macs, calls = 0, 0

    def hook(module, inputs, output):
        nonlocal macs, calls
        calls += 1
        per_output = output.numel() // output.shape[0]
        if isinstance(module, nn.Conv2d):
            macs += per_output * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            macs += per_output * module.in_features

    for module in model.modules():
        if not any(True for _ in module.children()):
            module.register_forward_hook(hook)
    size = IMAGE_SIZE[arch]
    with torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    return ShapeCost(macs, calls, sum(p.numel() for p in model.parameters()))


@functools.cache
def shape_cost(arch: str, depth: int, width: int, variant: str) -> ShapeCost:
    """Cost of one image, cached per shape. A deep WRN is counted exactly from two shallow ones.

    Blocks 2..N of a WRN stage are identical, so every count is affine in N = (depth - 4) / 6
    for N >= 2: counted at N = 2 and 3 and extrapolated (WRN-1000 on the meta device takes seconds).
    """
    if arch != "wrn" or depth <= 22:
        return _count(arch, depth, width, variant)
    blocks = (depth - 4) // 6
    two, three = _count(arch, 16, width, variant), _count(arch, 22, width, variant)
    return ShapeCost(
        *(
            a + (blocks - 2) * (b - a)
            for a, b in zip((two.macs, two.calls, two.params), (three.macs, three.calls, three.params))
        )
    )


@dataclass(frozen=True)
class Work:
    """What one process trains and evaluates: the features of the cost model come from it."""

    arch: str
    depth: int
    width: int
    variant: str
    batch_size: int
    pack: int
    steps: int  # optimizer steps per member
    evals: int = 0  # test-set evaluations
    test_images: int = 0
    micro_batch: int = 0
    job: bool = True  # a whole process (with its start-up), not a timed stretch of steps

    def features(self) -> np.ndarray:
        shape = shape_cost(self.arch, self.depth, self.width, self.variant)
        micro = self.batch_size // self.micro_batch if 0 < self.micro_batch < self.batch_size else 1
        macs = shape.macs * self.pack * (3 * self.batch_size * self.steps + self.test_images * self.evals)
        return np.array(
            [
                float(self.job),
                float(self.steps * micro * shape.calls),
                macs if self.pack == 1 else 0.0,
                macs if self.pack > 1 else 0.0,
            ]
        )


def read_measurements(path: str | Path = MEASUREMENTS) -> list[dict]:
    """Rows of the measurements file; one line naming the file, row and column when a row is malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no throughput measurements there; run bench/train_throughput.py --append {path}"
        )
    rows = []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                row["work"] = Work(
                    row["arch"],
                    int(row["depth"]),
                    int(row["width"]),
                    row["variant"],
                    int(row["batch_size"]),
                    int(row["pack"]),
                    int(row["steps"]),
                    int(row["evals"]),
                    int(row["test_images"]),
                    int(row["micro_batch"]),
                    row["kind"] == "job",
                )
                row["seconds"] = float(row["seconds"])
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{path}, line {number}: unreadable measurement ({type(error).__name__}: {error})"
                ) from None
            rows.append(row)
    return rows


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares, min |a x - b| with x >= 0 (scipy's), on unit-norm columns: the features span
    fifteen orders of magnitude (seconds per job against seconds per FLOP)."""
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    return scipy.optimize.nnls(a / scale, b)[0] / scale


@dataclass(frozen=True)
class ThroughputModel:
    """The fitted coefficients of one device class (seconds per feature unit; see the module docstring)."""

    device_class: str
    coefficients: tuple[float, ...]
    measurements: int
    note: str = ""

    def seconds(self, work: Work) -> float:
        return float(np.dot(self.coefficients, work.features()))

    def images_per_second(self, work: Work) -> float:
        """Training images per second summed over the pack, in the steady state (no start-up, no evaluation)."""
        steady = Work(
            work.arch,
            work.depth,
            work.width,
            work.variant,
            work.batch_size,
            work.pack,
            1000,
            micro_batch=work.micro_batch,
            job=False,
        )
        return steady.pack * steady.batch_size * steady.steps / self.seconds(steady)

    def describe(self) -> str:
        overhead, launch, dense, grouped = self.coefficients
        rate = lambda c: f"{2 / c / 1e12:.3g} TFLOP/s" if c else "unfitted"  # noqa: E731 (2 FLOPs per MAC)
        return (
            f"{self.device_class}: {overhead:.1f} s per job, {launch * 1e6:.1f} us per module call, "
            f"dense {rate(dense)}, packed {rate(grouped)} ({self.measurements} "
            f"measurements{'; ' + self.note if self.note else ''})"
        )


def fit(rows: list[dict], device_class: str) -> ThroughputModel:
    """Fit one device class's coefficients to its rows, on relative error (every row weighs alike)."""
    mine = [row for row in rows if row["device_class"] == device_class]
    if not mine:
        return scaled_from_reference(rows, device_class)
    a = np.array([row["work"].features() for row in mine])
    b = np.array([row["seconds"] for row in mine])
    used = a.any(axis=0)
    notes = []
    shapes = {(w.arch, w.depth, w.width) for w in (row["work"] for row in mine)}
    if len(shapes) < 2:
        used[FEATURES.index("launch")] = False  # one shape: launches and FLOPs are indistinguishable
        notes.append("one measured shape: FLOPs-proportional")
    if not used[FEATURES.index("overhead")]:
        notes.append("no whole jobs measured: no start-up time")
    if used[FEATURES.index("dense")] != used[FEATURES.index("grouped")]:
        # Only packs, or only single cells, measured: the other kind is assumed to compute alike.
        a[:, 2] += a[:, 3]
        a[:, 3] = 0.0
        used[3] = False
        notes.append("packed and single cells assumed alike")
    coefficients = np.zeros(len(FEATURES))
    coefficients[used] = nnls(a[:, used] / b[:, None], np.ones(len(b)))
    if not used[3]:
        coefficients[3] = coefficients[2]
    return ThroughputModel(device_class, tuple(float(c) for c in coefficients), len(mine), "; ".join(notes))


def scaled_from_reference(rows: list[dict], device_class: str) -> ThroughputModel:
    """An unmeasured device class: the reference class's fit, its compute terms scaled by peak throughput."""
    if device_class not in PEAK_TFLOPS:
        measured = sorted({row["device_class"] for row in rows})
        raise ValueError(
            f"device_class={device_class!r} has no measurements and no known peak throughput; measured: "
            f"{', '.join(measured)}; estimated by peak: {', '.join(sorted(PEAK_TFLOPS))}. Measure it with "
            f"bench/train_throughput.py --append bench/throughput.csv --device-class {device_class}"
        )
    reference = fit(rows, REFERENCE_CLASS)
    ratio = PEAK_TFLOPS[REFERENCE_CLASS] / PEAK_TFLOPS[device_class]
    overhead, launch, dense, grouped = reference.coefficients
    return ThroughputModel(
        device_class,
        (overhead, launch, dense * ratio, grouped * ratio),
        0,
        f"not measured: the {REFERENCE_CLASS} fit, FLOPs scaled by peak bf16 {PEAK_TFLOPS[device_class]:g}/"
        f"{PEAK_TFLOPS[REFERENCE_CLASS]:g} TFLOP/s",
    )


@functools.cache
def model_for(device_class: str, path: str = str(MEASUREMENTS)) -> ThroughputModel:
    return fit(read_measurements(path), device_class)


def leave_one_out(rows: list[dict], device_class: str) -> list[tuple[dict, float]]:
    """Each measured job of the class predicted by a fit to every other row: (row, predicted seconds)."""
    predictions = []
    for i, row in enumerate(rows):
        if row["device_class"] == device_class and row["kind"] == "job":
            model = fit(rows[:i] + rows[i + 1 :], device_class)
            predictions.append((row, model.seconds(row["work"])))
    return predictions
