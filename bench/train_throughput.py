"""Training throughput: the engine (`skipinit.engine`) against plain PyTorch, on the same device.

--mode cell  : one cell. The engine (data on the device, batched augmentation, channels_last,
               bf16 autocast on CUDA) against a reference written as a user would: torchvision's
               CIFAR10 dataset + DataLoader with workers + transforms.v2 (RandomCrop(32, padding=4),
               RandomHorizontalFlip, ToImage/ToDtype/Normalize), fp32, NCHW, no compile, and
               torch.optim.SGD, in the engine's precision (bf16 autocast where the engine runs bf16), NCHW, no
               compile. Same model (wide_resnet), batch size, device. Prints images/s.
--mode limit : one cell of the engine (its whole step: batched augmentation, forward, backward, divergence
               bookkeeping, SGD on the flat buffers) against the bare loop of the same model, batch, precision and
               threads: a fixed synthetic batch already on the device, forward, cross-entropy, backward and
               torch.optim.SGD, nothing else. What the engine costs beyond the arithmetic. Prints img/s of both
               and their ratio per repeat; `ratio=` is the median of the per-repeat ratios.
--mode sweep : an lr sweep of --cells cells as one packed engine run against the same cells trained
               one after another by the engine. Prints cells/hour (a "cell" = --steps steps). With
               --dropout P the cells use dropout P (each member's masks from its own generator) and the
               pack is also timed without dropout: `packed dropout/no dropout` bounds what the
               per-member masks cost.
--graphs     : the engine with its whole step in a CUDA graph (`cuda_graphs`) as a further contender:
               cell mode times graphed engine, eager engine and reference; sweep mode the graphed
               pack, the same pack eager and the cells one after another, each graphed. On the CPU
               the option is ignored (the "graphed" contender is the eager engine again).

Warm-up steps are excluded from every timing (the graphed engine warms up for at least its eager
warm-up steps plus the capture). --repeats > 1 alternates the contenders and reports the median,
which is what to use on a shared machine. Each engine contender's line gives its model FLOPs
utilization on a GPU: 3 x forward MACs (`skipinit.cost.shape_cost`) x 2 FLOPs x batch x members
per step, against the device's dense bf16 peak (`skipinit.cost.PEAK_TFLOPS`). Cell mode also
prints the training time of one --estimate-epochs CIFAR-10 cell (50,000 images) at the measured
step time. `--precision auto` (the default) is the engine's own choice (`resolve_precision`: bf16 on
CUDA and on CPUs with native bf16), and every contender runs in it; the first line names it. The last
line is always `ratio=<engine/ref>`: cell mode the graphed (--graphs) or eager engine over the
reference (over the eager engine with --no-reference); limit mode the engine over the bare loop;
sweep mode packed over sequential.

    PYTHONPATH=src .venv/bin/python bench/train_throughput.py --mode cell --steps 30
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from skipinit import cost, data  # noqa: E402
from skipinit.data.ondevice import CIFAR_MEAN, CIFAR_STD  # noqa: E402
from skipinit.engine.graphs import GRAPH_WARMUP_STEPS, GraphedStep  # noqa: E402
from skipinit.engine.options import EngineOptions  # noqa: E402
from skipinit.engine.runtime import engine_settings, resolve_device, resolve_precision  # noqa: E402
from skipinit.engine.trainer import PackTrainer  # noqa: E402
from skipinit.grid import make_cell  # noqa: E402
from skipinit.models import wide_resnet  # noqa: E402
from skipinit.vocab import PRECISIONS  # noqa: E402

CIFAR_TRAIN_IMAGES = 50_000


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------
# Engine
# ------------------------------------------------------------------------------------------------


def engine_cells(args, count: int, dataset) -> list[dict]:
    steps_per_epoch = len(dataset.train_labels) // args.batch_size
    epochs = (args.warmup + args.steps) // steps_per_epoch + 2  # the lr table must cover every timed step
    lrs = [0.1 * 2.0**-k for k in range(count)] if count > 1 else [0.1]
    return [
        make_cell(
            {
                "depth": args.depth,
                "width": args.width,
                "batch_size": args.batch_size,
                "epochs": epochs,
                "lr": lr,
                "seed": 0,
                "dropout": args.dropout,
            }
        )
        for lr in lrs
    ]


def time_engine(args, cells: list[dict], dataset, graphs: bool = False) -> float:
    """Seconds for --steps training steps of the engine (a pack when several cells), after warm-up."""
    options = EngineOptions(
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        cuda_graphs=graphs,
        channels_last=not args.no_channels_last,
        threads=args.threads or 0,
        packing=args.packing,
    )
    with engine_settings(options, torch.device(resolve_device(args.device))):
        log = (lambda line: print(f"  graphed engine: {line}", flush=True)) if graphs else (lambda line: None)
        trainer = PackTrainer(cells, dataset, options, log=log)  # the graphed one says whether it captured
        batches = engine_batches(trainer)
        warmup = max(args.warmup, GRAPH_WARMUP_STEPS + 2) if graphs else args.warmup  # the capture is never timed
        for _ in range(warmup):
            trainer.step(*next(batches))
        if graphs and isinstance(trainer.run_step, GraphedStep) and trainer.run_step.state != "graphed":
            print(
                f"warning: the graphed engine is {trainer.run_step.state} after {warmup} warm-up steps: it is timed "
                "eagerly",
                flush=True,
            )
        synchronize(trainer.device)
        start = time.perf_counter()
        for _ in range(args.steps):
            losses, _ = trainer.step(*next(batches))
        losses.sum().item()  # waits for the device
        return time.perf_counter() - start


def engine_batches(trainer):
    epoch = 0
    while True:
        yield from trainer.data.train_batches(epoch)
        epoch += 1


# ------------------------------------------------------------------------------------------------
# Reference: plain PyTorch as a user would write it
# ------------------------------------------------------------------------------------------------


def write_cifar_pickles(dataset, root: Path) -> None:
    """The canonical arrays in the official CIFAR-10 python format (5 train batches, test_batch, meta)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name, images, labels):
        with open(folder / name, "wb") as handle:
            rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # the official layout: CHW rows
            pickle.dump({"data": rows, "labels": [int(v) for v in labels], "batch_label": name}, handle)

    for i, part in enumerate(np.array_split(np.arange(len(dataset.train_labels)), 5)):
        dump(f"data_batch_{i + 1}", dataset.train_images[part], dataset.train_labels[part])
    dump("test_batch", dataset.test_images, dataset.test_labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(dataset.classes)}, handle)


def reference_dataset(root: str, official: bool):
    from torchvision.datasets import CIFAR10
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )

    class LocalCIFAR10(CIFAR10):
        """CIFAR10 reading our re-encoded batches: their md5s are not the official ones."""

        meta = {**CIFAR10.meta, "md5": None}

        def _check_integrity(self) -> bool:
            return True

    cls = CIFAR10 if official else LocalCIFAR10
    return cls(root=root, train=True, download=False, transform=transform)


def autocast(args):
    """The engine's precision for a contender written by hand: bf16 autocast, or nothing."""
    device = resolve_device(args.device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision(args) == "bf16")


def precision(args) -> str:
    return resolve_precision(args.precision, resolve_device(args.device))


def time_bare(args) -> float:
    """Seconds for --steps steps of the bare loop: one fixed batch on the device, forward, loss, backward, SGD."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.preserve_format if args.no_channels_last else torch.channels_last
    model = wide_resnet(args.depth, args.width, "batchnorm").to(device, memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    return seconds_for_steps(lambda: plain_step(model, optimizer, args, x, y), args, device)


def plain_step(model, optimizer, args, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One step as a user writes it: forward in the engine's precision, cross-entropy, backward, torch.optim.SGD."""
    with autocast(args):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def seconds_for_steps(step, args, device: torch.device) -> float:
    """Seconds for --steps calls of `step` after --warmup untimed ones, waiting for the device at the end."""
    for _ in range(args.warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    return time.perf_counter() - start


def time_reference(args, root: str, official: bool) -> float:
    """Seconds for --steps steps of the plain PyTorch loop, after warm-up (workers already running)."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    loader = torch.utils.data.DataLoader(
        reference_dataset(root, official),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
    )
    torch.manual_seed(0)
    model = wide_resnet(args.depth, args.width, "batchnorm").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step():
        x, y = next(stream)
        return plain_step(model, optimizer, args, x.to(device, non_blocking=True), y.to(device, non_blocking=True))

    return seconds_for_steps(step, args, device)  # the loader and its workers end with this call's locals


# ------------------------------------------------------------------------------------------------
# Modes
# ------------------------------------------------------------------------------------------------


def describe(args) -> str:
    device = resolve_device(args.device)
    threads = args.threads or torch.get_num_threads()
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {threads} threads)"
    )
    return (
        f"device={name} precision={precision(args)} torch={torch.__version__} model=WRN-{args.depth}-{args.width} "
        f"batch={args.batch_size} "
        f"steps={args.steps} warmup={args.warmup} repeats={args.repeats} workers={args.workers} "
        f"load={os.getloadavg()[0]:.2f}"
    )


def utilization(args, images_per_second: float) -> str:
    """Model FLOPs utilization at `images_per_second` (all members' images): 3 x forward MACs x 2 FLOPs per image."""
    device = resolve_device(args.device)
    if device.type != "cuda":
        return "MFU n/a on the CPU"
    name = torch.cuda.get_device_name(device).lower()
    peak = next((tflops for device_class, tflops in cost.PEAK_TFLOPS.items() if device_class in name), None)
    if peak is None:
        return f"MFU n/a (no dense bf16 peak known for {name!r})"
    flops_per_image = 3 * 2 * cost.shape_cost("wrn", args.depth, args.width, "batchnorm").macs
    achieved = flops_per_image * images_per_second
    return f"MFU {100 * achieved / (peak * 1e12):.2f}% ({achieved / 1e12:.1f} of {peak:g} TFLOP/s dense bf16)"


def training_hours(args, images_per_second: float) -> float:
    """Hours of training steps (no evaluation, no start-up) of one --estimate-epochs CIFAR-10 cell at this rate."""
    steps = args.estimate_epochs * (CIFAR_TRAIN_IMAGES // args.batch_size)
    return steps * args.batch_size / images_per_second / 3600


def run_cell(args, dataset) -> float:
    images = args.steps * args.batch_size
    rates = {"engine": [], "graphed": [], "reference": []}
    with tempfile.TemporaryDirectory(prefix="skipinit-bench-") as scratch:
        root, official = args.cifar_root, args.cifar_root is not None
        if not official and not args.no_reference:
            write_cifar_pickles(dataset, Path(scratch))
            root = scratch
        cells = engine_cells(args, 1, dataset)
        for repeat in range(args.repeats):
            rates["engine"].append(images / time_engine(args, cells, dataset))
            if args.graphs:
                rates["graphed"].append(images / time_engine(args, cells, dataset, graphs=True))
            if not args.no_reference:
                rates["reference"].append(images / time_reference(args, root, official))
            print(
                f"repeat {repeat + 1}: "
                + ", ".join(f"{name} {values[-1]:.1f} img/s" for name, values in rates.items() if values),
                flush=True,
            )
    median = {name: statistics.median(values) for name, values in rates.items() if values}
    args.measured = [(1, args.steps, images / median["engine"])]  # seconds per --steps steps, for --append
    for name in ("engine", "graphed"):
        if name in median:
            label = "graphed engine" if name == "graphed" else "engine"
            print(
                f"{label} images/s: {median[name]:.1f}  ({1e3 * args.batch_size / median[name]:.3f} ms/step; "
                f"{utilization(args, median[name])})"
            )
    if "reference" in median:
        print(
            f"reference images/s: {median['reference']:.1f}  (DataLoader workers={args.workers}, transforms.v2, "
            f"{precision(args)}, NCHW, "
            "torch.optim.SGD)"
        )
    for name in ("engine", "graphed"):
        if name in median:
            print(
                f"estimated {args.estimate_epochs}-epoch CIFAR-10 cell at batch {args.batch_size}, {name}: "
                f"{training_hours(args, median[name]):.2f} h of training steps (evaluation and start-up excluded)"
            )
    if "graphed" in median:
        print(f"graphed/eager: {median['graphed'] / median['engine']:.3f}")
    best = median.get("graphed", median["engine"])
    if "reference" in median:
        print(f"engine/reference: {median['engine'] / median['reference']:.3f}")
        return best / median["reference"]
    return best / median["engine"]


def run_limit(args, dataset) -> float:
    """The engine's step against the bare loop, alternating; the median of the per-repeat ratios."""
    images = args.steps * args.batch_size
    cells = engine_cells(args, 1, dataset)
    ratios, engine_rates = [], []
    for repeat in range(args.repeats):
        engine, bare = images / time_engine(args, cells, dataset), images / time_bare(args)
        ratios.append(engine / bare)
        engine_rates.append(engine)
        print(
            f"repeat {repeat + 1}: engine {engine:.1f} img/s, bare loop {bare:.1f} img/s, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    args.measured = [(1, args.steps, images / statistics.median(engine_rates))]
    print(f"precision {precision(args)}: engine/bare loop per repeat {', '.join(f'{r:.3f}' for r in ratios)}")
    return statistics.median(ratios)


def run_sweep(args, dataset) -> float:
    cells = engine_cells(args, args.cells, dataset)
    if args.distinct_seeds:
        cells = [dict(cell, seed=i) for i, cell in enumerate(cells)]
    packed, packed_eager, sequential, no_dropout = [], [], [], []
    for repeat in range(args.repeats):
        packed.append(len(cells) / time_engine(args, cells, dataset, graphs=args.graphs) * 3600)
        if args.dropout:
            plain = [dict(cell, dropout=0.0) for cell in cells]
            no_dropout.append(len(cells) / time_engine(args, plain, dataset, graphs=args.graphs) * 3600)
            print(
                f"repeat {repeat + 1}: packed with dropout {args.dropout:g}: {packed[-1]:.0f} cells/h, without: "
                f"{no_dropout[-1]:.0f} cells/h, ratio {packed[-1] / no_dropout[-1]:.3f}",
                flush=True,
            )
        if args.graphs:
            packed_eager.append(len(cells) / time_engine(args, cells, dataset) * 3600)
        sequential.append(
            len(cells) / sum(time_engine(args, [cell], dataset, graphs=args.graphs) for cell in cells) * 3600
        )
        eager = f", packed eager {packed_eager[-1]:.0f} cells/h" if args.graphs else ""
        print(
            f"repeat {repeat + 1}: packed {packed[-1]:.0f} cells/h{eager}, sequential {sequential[-1]:.0f} cells/h",
            flush=True,
        )
    p, s = statistics.median(packed), statistics.median(sequential)
    per_cell_images = args.steps * args.batch_size
    args.measured = [
        (len(cells), args.steps, len(cells) / p * 3600),
        (1, args.steps * len(cells), len(cells) / s * 3600),
    ]
    graphed = " graphed" if args.graphs else ""
    print(
        f"packed{graphed} cells/hour: {p:.0f}  ({p * per_cell_images / 3600:.1f} images/s summed over {len(cells)} "
        "members; "
        f"{utilization(args, p * per_cell_images / 3600)})"
    )
    if args.dropout:
        ratios = [with_ / without for with_, without in zip(packed, no_dropout)]
        print(
            f"packed dropout/no dropout (cells/h, median of {len(ratios)} paired repeats): "
            f"{statistics.median(ratios):.3f}"
        )
    if args.graphs:
        e = statistics.median(packed_eager)
        print(
            f"packed eager cells/hour: {e:.0f}  ({e * per_cell_images / 3600:.1f} images/s; "
            f"{utilization(args, e * per_cell_images / 3600)})"
        )
        print(f"packed graphed/packed eager: {p / e:.3f}")
    print(
        f"sequential{graphed} cells/hour: {s:.0f}  ({s * per_cell_images / 3600:.1f} images/s; "
        f"{utilization(args, s * per_cell_images / 3600)})"
    )
    return p / s


def device_class(args) -> str:
    """--device-class, else `cpu`, else the known class named in the GPU's name (`NVIDIA H100 80GB HBM3` -> h100)."""
    if args.device_class:
        return args.device_class
    device = resolve_device(args.device)
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    known = [key for key in cost.PEAK_TFLOPS if key in name]
    if not known:
        raise SystemExit(f"error: no device class known for {name!r}; give --device-class NAME with --append")
    return known[0]


def append_measurements(args, path: str) -> None:
    """The engine's timings as `steps` rows of the throughput measurements (bench/throughput.csv), which the
    compute plan (`python -m skipinit plan`) fits its throughput model to."""
    device = resolve_device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {args.threads or torch.get_num_threads()} threads)"
    )
    new = not Path(path).exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, cost.COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        for pack, steps, seconds in args.measured:
            writer.writerow(
                {
                    "kind": "steps",
                    "device_class": device_class(args),
                    "device": name,
                    "torch": torch.__version__,
                    "precision": precision(args),
                    "compile": str(args.compile).lower(),
                    "arch": "wrn",
                    "depth": args.depth,
                    "width": args.width,
                    "variant": "batchnorm",
                    "batch_size": args.batch_size,
                    "pack": pack,
                    "micro_batch": 0,
                    "steps": steps,
                    "evals": 0,
                    "test_images": 0,
                    "seconds": f"{seconds:.4f}",
                    "date": datetime.date.today().isoformat(),
                    "source": f"bench/train_throughput.py {' '.join(sys.argv[1:])}",
                }
            )
    print(f"appended {len(args.measured)} row(s) to {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="canonical .npz (default: a synthetic 5000-image set built in memory)")
    parser.add_argument("--cifar-root", help="a folder holding the official cifar-10-batches-py, for the reference")
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the clock starts")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="precision of every contender (auto: the engine's choice for this device)",
    )
    parser.add_argument("--compile", action="store_true", help="engine with torch.compile")
    parser.add_argument("--no-channels-last", action="store_true", help="engine in NCHW")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both contenders")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="reference DataLoader workers")
    parser.add_argument("--mode", choices=("cell", "limit", "sweep"), default="cell")
    parser.add_argument("--cells", type=int, default=8, help="sweep: cells in the pack")
    parser.add_argument(
        "--distinct-seeds",
        action="store_true",
        help="sweep: one seed per cell (own batches) instead of one shared seed",
    )
    parser.add_argument(
        "--packing", choices=("auto", "channels", "vmap"), default="auto", help="sweep: how the engine packs members"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.0, help="sweep: the cells' dropout; also times the pack without it"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--append",
        metavar="CSV",
        help="append the engine's timings to this measurements file (bench/throughput.csv: "
        "the compute plan's throughput model is fitted to it)",
    )
    parser.add_argument(
        "--device-class",
        help="with --append: the device class to file them under (default: cpu, or h100 etc. from the GPU's name)",
    )
    parser.add_argument(
        "--graphs", action="store_true", help="add the engine with its step in a CUDA graph as a contender"
    )
    parser.add_argument("--no-reference", action="store_true", help="cell: leave the plain PyTorch reference out")
    parser.add_argument("--estimate-epochs", type=int, default=200, help="cell: epochs of the training-time estimate")
    args = parser.parse_args(argv)

    if args.dataset:
        dataset = data.load_canonical(args.dataset)
    else:
        dataset = data.synthetic(train_size=5000, test_size=1000, seed=0)
    print(describe(args), f"mode={args.mode}", f"packing={args.packing}" if args.mode == "sweep" else "", flush=True)
    if args.graphs and resolve_device(args.device).type != "cuda":
        print(
            "note: cuda_graphs is ignored on the CPU: the 'graphed' contenders are the eager engine again", flush=True
        )
    ratio = {"cell": run_cell, "limit": run_limit, "sweep": run_sweep}[args.mode](args, dataset)
    if args.append:
        append_measurements(args, args.append)
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
