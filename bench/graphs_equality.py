"""Does the CUDA-graphed training step train like the eager one? A short trajectory of each, per case.

Every case trains the same cells twice eagerly and once with `cuda_graphs`, through the engine's
own epoch loop (`PackTrainer.train_epoch`: per-epoch reseeding of dropout included), for --epochs
epochs of --steps-per-epoch steps on synthetic CIFAR-shaped data, recording every step's losses.
A case passes when the graph was captured (on a GPU) and every member's final-step loss and mean
loss over the last 10 steps lie within --tolerance (relative) of the eager run's. The second
eager run is the noise floor: how far two eager runs of the same cells drift apart (cuDNN and
atomics are not bit-reproducible in bf16). `bit_identical` says whether the final parameters of
the graphed run equal the eager run's exactly; the fp32 deterministic case should be (same
kernels, same order, same dropout masks), the bf16 ones need not be.

On the CPU the option is ignored, so the "graphed" run is eager again: a dry run of this script.

    PYTHONPATH=src python bench/graphs_equality.py --device cuda --json $OUT/graphs_equality.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: the deterministic case needs it

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from skipinit import data  # noqa: E402
from skipinit.engine.graphs import GraphedStep  # noqa: E402
from skipinit.engine.options import EngineOptions  # noqa: E402
from skipinit.engine.runtime import engine_settings, resolve_device  # noqa: E402
from skipinit.engine.trainer import PackTrainer  # noqa: E402
from skipinit.grid import make_cell  # noqa: E402


def cells(args, count: int = 1, **overrides) -> list[dict]:
    settings = {
        "dataset": "synthetic",
        "depth": args.depth,
        "width": args.width,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seed": 0,
        **overrides,
    }
    return [make_cell({**settings, "lr": 0.1 * 2.0**-k}) for k in range(count)]


def cases(args) -> dict[str, tuple[list[dict], dict]]:
    """Name -> (cells, engine options beyond the defaults): single cells and packs of 8, dropout, BN, ghost BN,
    micro-batches."""
    return {
        "cell_fp32_deterministic_bn_dropout": (
            cells(args, variant="batchnorm", dropout=0.3),
            {"precision": "fp32", "deterministic": True},
        ),
        "cell_bn_dropout": (cells(args, variant="batchnorm", dropout=0.3), {}),
        "cell_skipinit_dropout": (cells(args, variant="skipinit", dropout=0.3), {}),
        "cell_ghost_bn_micro_batch": (
            cells(args, variant="batchnorm", ghost_batch_size=16),
            {"micro_batch": args.batch_size // 2},
        ),
        "pack8_bn_dropout": (cells(args, 8, variant="batchnorm", dropout=0.3), {}),
        "pack8_distinct_seeds_bn": (
            [dict(cell, seed=i) for i, cell in enumerate(cells(args, 8, variant="batchnorm"))],
            {},
        ),
        "pack8_vmap_bn_dropout": (cells(args, 8, variant="batchnorm", dropout=0.3), {"packing": "vmap"}),
    }


def trajectory(
    cell_list: list[dict], dataset, options: EngineOptions, lines: list[str]
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Every step's losses [steps, N], the final flat parameters, and the step runner's state."""
    with engine_settings(options, resolve_device(options.device)):
        trainer = PackTrainer(cell_list, dataset, options, log=lines.append)
        losses, step = [], trainer.step

        def recording(x, y):
            out = step(x, y)
            losses.append(out[0].clone())
            return out

        trainer.step = recording
        for epoch in range(trainer.epochs):
            trainer.train_epoch(epoch)
        runner = trainer.run_step
        state = (
            runner.state
            if isinstance(runner, GraphedStep)
            else ("eager (option ignored)" if options.cuda_graphs else "eager")
        )
        return torch.stack(losses).float().cpu(), trainer.members.params.detach().float().cpu(), state


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


def compare(name: str, cell_list: list[dict], extra: dict, dataset, args) -> dict:
    options = {"device": args.device, "threads": 0, **extra}
    lines: list[str] = []
    eager, eager_params, _ = trajectory(cell_list, dataset, EngineOptions(**options), lines)
    again, again_params, _ = trajectory(cell_list, dataset, EngineOptions(**options), lines)
    graphed, graphed_params, state = trajectory(cell_list, dataset, EngineOptions(**options, cuda_graphs=True), lines)
    tail = min(10, len(eager))
    row = {
        "case": name,
        "members": len(cell_list),
        "steps": len(eager),
        "options": extra,
        "state": state,
        "final_loss_eager": eager[-1].tolist(),
        "final_loss_graphed": graphed[-1].tolist(),
        "final_loss_rel_diff": relative(graphed[-1], eager[-1]),
        "tail_loss_rel_diff": relative(graphed[-tail:].mean(0), eager[-tail:].mean(0)),
        "noise_final_loss_rel_diff": relative(again[-1], eager[-1]),
        "noise_tail_loss_rel_diff": relative(again[-tail:].mean(0), eager[-tail:].mean(0)),
        "param_rel_l2_diff": float((graphed_params - eager_params).norm() / eager_params.norm()),
        "noise_param_rel_l2_diff": float((again_params - eager_params).norm() / eager_params.norm()),
        "bit_identical": bool(torch.equal(graphed_params, eager_params) and torch.equal(graphed, eager)),
        "log": [line for line in lines if "cuda_graphs" in line or "packing" in line],
    }
    captured = state == "graphed" or resolve_device(args.device).type != "cuda"
    row["passed"] = (
        captured and row["final_loss_rel_diff"] <= args.tolerance and row["tail_loss_rel_diff"] <= args.tolerance
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=25,
        help="steps of each epoch (the synthetic training set's size / batch)",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.01, help="largest relative difference of the final and tail losses"
    )
    parser.add_argument("--case", action="append", help="run only these cases (default: all)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    dataset = data.synthetic(train_size=args.batch_size * args.steps_per_epoch, test_size=100, seed=0)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else "cpu (cuda_graphs ignored: a dry run, graphed == eager)"
    )
    print(
        f"device={name} torch={torch.__version__} WRN-{args.depth}-{args.width} batch={args.batch_size} "
        f"steps={args.epochs * args.steps_per_epoch} tolerance={args.tolerance:g}",
        flush=True,
    )
    rows = []
    for case, (cell_list, extra) in cases(args).items():
        if args.case and case not in args.case:
            continue
        row = compare(case, cell_list, extra, dataset, args)
        rows.append(row)
        print(
            f"{'PASS' if row['passed'] else 'FAIL'} {case}: state={row['state']} final loss rel diff "
            f"{row['final_loss_rel_diff']:.2e} "
            f"(eager vs eager {row['noise_final_loss_rel_diff']:.2e}), last-10 mean {row['tail_loss_rel_diff']:.2e} "
            f"(noise {row['noise_tail_loss_rel_diff']:.2e}), params rel L2 {row['param_rel_l2_diff']:.2e} "
            f"(noise {row['noise_param_rel_l2_diff']:.2e}), bit-identical {row['bit_identical']}",
            flush=True,
        )
        for line in row["log"]:
            print(f"    {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    failed = [row["case"] for row in rows if not row["passed"]]
    print(
        f"equality: {len(rows) - len(failed)} of {len(rows)} cases pass"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
