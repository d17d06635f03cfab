"""Fixup WRN-16-1 at batch 256: how far each learning rate gets, with the scalars at lr / 10 or at lr.

The measurement behind the table in results/reference/gpu/PROVENANCE.md, one cell at a time:

    python bench/fixup_stability.py resources/datasets/cifar10-jpeg.npz --scalar-lr 0.1 --lrs 0.125,0.25,0.5,1
    python bench/fixup_stability.py resources/datasets/cifar10-jpeg.npz --scalar-lr 1 --lrs 0.125,0.25,0.5,1
"""

import argparse
import time

from skipinit import data
from skipinit.engine.options import EngineOptions
from skipinit.engine.trainer import train_pack
from skipinit.grid import make_cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a canonical dataset file (resources/datasets/<name>.npz)")
    parser.add_argument(
        "--scalar-lr",
        type=float,
        default=EngineOptions.fixup_scalar_lr,
        help="multiplier of the biases' and scales' lr",
    )
    parser.add_argument("--lrs", default="0.125,0.25,0.5,1", help="comma-separated peak learning rates")
    parser.add_argument("--train-subset", type=int, default=19200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    dataset = data.load_canonical(args.dataset)
    options = EngineOptions(
        device=args.device,
        precision="fp32",
        threads=args.threads,
        eval_every=args.epochs,
        fixup_scalar_lr=args.scalar_lr,
    )
    for lr in map(float, args.lrs.split(",")):
        cell = make_cell(
            {
                "dataset": "cifar10-jpeg",
                "depth": 16,
                "width": 1,
                "variant": "fixup",
                "batch_size": 256,
                "lr": lr,
                "epochs": args.epochs,
                "seed": 0,
                "train_subset": args.train_subset,
                "test_subset": 2000,
            }
        )
        start = time.perf_counter()
        result = train_pack([cell], dataset, options, log=lambda line: None)[0]
        print(
            f"scalar lr x{args.scalar_lr:g}  lr {lr:g}: test acc {result['test_acc']:.2f}%  "
            f"train loss {result['train_loss']:.3g}  diverged at step {result['diverged_step']}  "
            f"({result['steps']} steps, {time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
