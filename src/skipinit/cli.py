"""`python -m skipinit <command>`: the entry points the Snakemake rules call.

Each command is a thin adapter from arguments to one module's function, so every
step can be run and tested without Snakemake.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

from skipinit.fileio import IntegrityError, write_json

log = logging.getLogger("skipinit")
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM}


def git_commit() -> str:
    """The commit of the code that produced a result (`unknown` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from skipinit import data

    options = {"train_size": args.synthetic_train_size, "test_size": args.synthetic_test_size, "seed": args.synthetic_seed}
    try:
        dataset = data.prepare(args.source, args.path, download=args.download, synthetic_options=options)
    except data.DataNotFoundError as error:
        raise SystemExit(f"error: {error}. " + data.remedies(args.name, args.source, args.path)) from None
    except IntegrityError as error:
        raise SystemExit(f"error: {error}") from None
    provenance = {**dataset.provenance, "dataset": args.name, "train_size": len(dataset.train_labels), "test_size": len(dataset.test_labels)}
    digest = data.save_canonical(type(dataset)(**{**dataset.__dict__, "provenance": provenance}), args.out)
    log.info("wrote %s (%d train, %d test images, sha256 %s)", args.out, len(dataset.train_labels), len(dataset.test_labels), digest)


def cmd_train(args: argparse.Namespace) -> None:
    from skipinit import gpus

    gpus.claim_gpu(args.device)  # before CUDA starts: concurrent jobs on a multi-GPU machine each take their own GPU
    from skipinit import data, train

    cells = json.loads(args.cells)
    options = train.EngineOptions(
        device=args.device, precision=args.precision, compile=args.compile, channels_last=args.channels_last,
        deterministic=args.deterministic, eval_every=args.eval_every, divergence_loss=args.divergence_loss,
        threads=args.threads, image_size=args.image_size, micro_batch=args.micro_batch,
    )
    request = {"cells": cells, "options": dataclasses.asdict(options)}
    finished = Path(f"{args.checkpoint}.done.json")
    if finished.exists() and {key: value for key, value in json.loads(finished.read_text()).items() if key != "results"} == request:
        # Snakemake was killed after this pack finished but before it recorded the job:
        # the rerun deletes result.json as incomplete, and the recorded result restores it.
        log.info("pack already finished; restoring its recorded result from %s", finished)
        write_json(args.out, json.loads(finished.read_text())["results"])
        return
    if cells[0]["dataset"] == "imagenet":  # a pack shares its dataset (train.check_pack)
        from skipinit import imagenet

        try:
            dataset = imagenet.ImageNetFolder(args.dataset)
        except imagenet.ImageNetLayoutError as error:
            raise SystemExit(f"error: {error}") from None
        dataset_sha256 = dataset.sha256  # of the sorted file names and sizes: hashing 150 GB of contents per job would not pay
    else:
        dataset = data.load_canonical(args.dataset)
        dataset_sha256 = dataset.provenance.get("canonical_sha256")
    results = train.train_pack(cells, dataset, options, checkpoint=args.checkpoint, log=lambda line: log.info("%s", line))
    commit = git_commit()
    for result in results:
        result["git_commit"] = commit
        result["dataset_sha256"] = dataset_sha256
    write_json(finished, {**request, "results": results})
    write_json(args.out, results)
    Path(args.checkpoint).unlink(missing_ok=True)


def cmd_signal(args: argparse.Namespace) -> None:
    from skipinit import data, signal
    from skipinit.fileio import atomic_path

    inputs = None
    if args.dataset:
        inputs = data.standardized(data.load_canonical(args.dataset).test_images[: args.batch_size])
    frames = []
    for model in args.models:
        linear = model.startswith("linear")
        depth, width = (args.linear_depth, args.linear_width) if linear else (args.conv_depth, args.conv_width)
        frames.append(signal.study([model], [depth], args.seeds, inputs, width=width, batch_size=args.batch_size))
        log.info("signal: %s at depth %d, seeds %s done", model, depth, args.seeds)
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    with atomic_path(args.out) as tmp:
        frame.to_parquet(tmp, index=False)
    signal.plot(frame, args.figure_png, args.figure_pdf)


def cmd_aggregate(args: argparse.Namespace) -> None:
    from skipinit import aggregate

    plan = json.loads(args.plan)
    runs, curves = aggregate.collect(args.inputs, plan)
    aggregate.write(runs, curves, args.runs, args.curves, aggregate.experiment_meta(plan))
    log.info("aggregated %d runs (%d diverged) into %s", len(runs), int(runs["diverged"].sum()) if len(runs) else 0, args.runs)


def cmd_report(args: argparse.Namespace) -> None:
    """Figures, tables and claims from runs/signal Parquet alone: no training needed."""
    from skipinit import aggregate

    results = Path(args.results)
    spec = aggregate.read_experiment_meta(results / "runs.parquet")
    if args.experiment:
        spec = {args.experiment: spec[args.experiment]}
    only = set(args.only or ("figures", "tables", "claims"))
    if "figures" in only:
        from skipinit import figures

        figures.write_all(results, spec)
    if "tables" in only:
        from skipinit import tables

        tables.write_all(results, spec)
    if "claims" in only:
        from skipinit import claims

        claims.write(results, args.claims_config)


def cmd_plan(args: argparse.Namespace) -> None:
    from skipinit import plan

    try:
        print(plan.report(args.profile, args.gpus, args.device_class, args.csv, args.retries))
    except plan.PlanError as error:
        raise SystemExit(f"error: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipinit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare-data", help="build the canonical, checksummed dataset file")
    prepare.add_argument("--source", required=True)
    prepare.add_argument("--path")
    prepare.add_argument("--name", required=True)
    prepare.add_argument("--out", required=True)
    prepare.add_argument("--download", action=argparse.BooleanOptionalAction, default=True)
    prepare.add_argument("--synthetic-train-size", type=int, default=512)
    prepare.add_argument("--synthetic-test-size", type=int, default=256)
    prepare.add_argument("--synthetic-seed", type=int, default=0)
    prepare.set_defaults(func=cmd_prepare_data)

    train = commands.add_parser("train", help="train one pack of cells (one cell when pack=1)")
    train.add_argument("--cells", required=True, help="JSON list of cell dicts")
    train.add_argument("--dataset", required=True, help="canonical .npz, or the ImageNet folder for imagenet cells")
    train.add_argument("--out", required=True, help="result.json")
    train.add_argument("--checkpoint", required=True)
    train.add_argument("--device", default="auto")
    train.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=False)
    train.add_argument("--eval-every", type=int, default=1)
    train.add_argument("--divergence-loss", type=float, default=1e3)
    train.add_argument("--threads", type=int, default=None, help="CPU threads; also the ImageNet loader's worker processes")
    train.add_argument("--image-size", type=int, default=224, help="ImageNet crop in pixels (evaluation resizes to 8/7 of it)")
    train.add_argument("--micro-batch", type=int, default=0, help="examples per forward/backward; larger batches accumulate gradients (0: whole batch)")
    train.set_defaults(func=cmd_train)

    sig = commands.add_parser("signal", help="signal propagation at initialization (Figure 2)")
    sig.add_argument("--models", nargs="+", required=True)
    sig.add_argument("--linear-depth", type=int, required=True)
    sig.add_argument("--conv-depth", type=int, required=True)
    sig.add_argument("--seeds", type=int, nargs="+", default=[0])
    sig.add_argument("--linear-width", type=int, default=1000)
    sig.add_argument("--conv-width", type=int, default=16)
    sig.add_argument("--batch-size", type=int, default=256)
    sig.add_argument("--dataset", help="canonical .npz whose test images feed the conv nets")
    sig.add_argument("--out", required=True)
    sig.add_argument("--figure-png", required=True)
    sig.add_argument("--figure-pdf", required=True)
    sig.set_defaults(func=cmd_signal)

    agg = commands.add_parser("aggregate", help="collect pack results into runs.parquet and curves.parquet")
    agg.add_argument("inputs", nargs="+")
    agg.add_argument("--runs", required=True)
    agg.add_argument("--curves", required=True)
    agg.add_argument("--plan", required=True, help="JSON of the profile's dataset, training and experiments keys")
    agg.set_defaults(func=cmd_aggregate)

    report = commands.add_parser("report", help="figures, tables and claims from existing Parquet files")
    report.add_argument("--results", required=True, help="folder with runs.parquet (and signal.parquet)")
    report.add_argument("--experiment", help="only this experiment's figures/tables")
    report.add_argument("--claims-config", default="config/claims.yaml")
    report.add_argument("--only", nargs="+", choices=("figures", "tables", "claims"))
    report.set_defaults(func=cmd_report)

    plan = commands.add_parser("plan", help="a profile's compute plan: jobs, GPU-hours, wall time, disk, SLURM time limits")
    plan.add_argument("--profile", required=True, help="a profile, e.g. config/paper.yaml")
    plan.add_argument("--gpus", type=int, default=1, help="GPUs running jobs at once (wall time, checkpoint disk)")
    plan.add_argument("--device-class", help="device class of bench/throughput.csv (default: the profile's resources.device_class)")
    plan.add_argument("--csv", help="also write the table here")
    plan.add_argument("--retries", type=int, help="resubmissions per job (default: the SLURM profile's retries)")
    plan.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except OSError as error:
        if error.errno not in STORAGE_ERRORS:
            raise
        raise SystemExit(
            f"error: cannot write {error.filename or 'an output'}: {error.strerror}. Free disk space or make the "
            "results folder writable, then rerun the same command: finished cells are kept and interrupted ones resume."
        ) from None
