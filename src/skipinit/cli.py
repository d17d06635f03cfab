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
import sys
from pathlib import Path

from skipinit import schema
from skipinit.fileio import IntegrityError

log = logging.getLogger("skipinit")
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EPERM}
PAPER_NUMBERS = "config/paper_v1.yaml"  # the paper's own numbers, beside `make tables`' tables
REPORT_PARTS = ("figures", "tables", "claims", "signal")  # signal: redraw Figure 2 where missing or stale


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from skipinit import data

    options = {
        "train_size": args.synthetic_train_size,
        "test_size": args.synthetic_test_size,
        "seed": args.synthetic_seed,
    }
    try:
        dataset = data.prepare(args.source, args.path, download=args.download, synthetic_options=options)
    except data.DataNotFoundError as error:
        raise SystemExit(f"error: {error}. " + data.remedies(args.name, args.source, args.path)) from None
    except IntegrityError as error:
        raise SystemExit(f"error: {error}") from None
    provenance = {
        **dataset.provenance,
        "dataset": args.name,
        "train_size": len(dataset.train_labels),
        "test_size": len(dataset.test_labels),
    }
    digest = data.save_canonical(type(dataset)(**{**dataset.__dict__, "provenance": provenance}), args.out)
    log.info(
        "wrote %s (%d train, %d test images, sha256 %s)",
        args.out,
        len(dataset.train_labels),
        len(dataset.test_labels),
        digest,
    )


def cmd_check_sizes(args: argparse.Namespace) -> None:
    from skipinit import data
    from skipinit.config import size_problem

    problem = size_problem(json.loads(args.requirements), *data.canonical_sizes(args.dataset), args.name)
    if problem:
        raise SystemExit(f"error: {problem}")
    Path(args.out).write_text(f"{args.dataset}: serves every subset and batch size of the profile\n")


def cmd_train(args: argparse.Namespace) -> None:
    from skipinit import gpus

    gpus.claim_gpu(args.device)  # before CUDA starts: concurrent jobs on a multi-GPU machine each take their own GPU
    from skipinit.engine.job import run_job
    from skipinit.engine.options import EngineOptions

    options = EngineOptions(**{field.name: getattr(args, field.name) for field in dataclasses.fields(EngineOptions)})
    run_job(
        json.loads(args.cells), args.dataset, args.out, args.checkpoint, options, log=lambda line: log.info("%s", line)
    )


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per EngineOptions field, `--field-name`, with the field's default, help and choices."""
    from skipinit.engine.options import EngineOptions

    for field in dataclasses.fields(EngineOptions):
        flag, settings = "--" + field.name.replace("_", "-"), {"default": field.default, "help": field.metadata["help"]}
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **settings)
        else:
            parser.add_argument(flag, type=type(field.default), choices=field.metadata["choices"], **settings)


def cmd_signal(args: argparse.Namespace) -> None:
    from skipinit import data
    from skipinit.signal.measure import study
    from skipinit.signal.plot import plot

    inputs = None
    if args.dataset:
        inputs = data.standardized(data.load_canonical(args.dataset).test_images[: args.batch_size])
    frames = []
    for model in args.models:
        linear = model.startswith("linear")
        depth, width = (args.linear_depth, args.linear_width) if linear else (args.conv_depth, args.conv_width)
        frames.append(study([model], [depth], args.seeds, inputs, width=width, batch_size=args.batch_size))
        log.info("signal: %s at depth %d, seeds %s done", model, depth, args.seeds)
    import pandas as pd

    from skipinit.runtable import write_parquet

    frame = pd.concat(frames, ignore_index=True)
    write_parquet(frame, args.out, args.profile)
    plot(frame, args.profile, args.figure_png, args.figure_pdf)


def cmd_manifest(args: argparse.Namespace) -> None:
    from skipinit import profile
    from skipinit.fileio import write_json

    try:
        resolved = profile.resolve(args.profiles, json.loads(args.overrides))
    except profile.ProfileError as error:
        raise SystemExit(f"error: {error}") from None
    write_json(args.out, resolved.manifest())
    log.info(
        "manifest of profile %s: %d experiments, %d cells in %d jobs",
        resolved.name,
        len(resolved.experiments),
        len(resolved.cells),
        len(resolved.packs),
    )


def cmd_aggregate(args: argparse.Namespace) -> None:
    from skipinit import manifest
    from skipinit.report import aggregate

    try:
        content = manifest.read(args.manifest)
        runs, curves = aggregate.collect(args.inputs, content)
    except (manifest.ManifestError, aggregate.DamagedResults, aggregate.MixedSettings) as error:
        raise SystemExit(f"error: {error}") from None
    aggregate.write(runs, curves, args.runs, args.curves, content[manifest.NAME], manifest.experiment_meta(content))
    log.info(
        "aggregated %d runs (%d diverged) into %s",
        len(runs),
        int(runs["diverged"].sum()) if len(runs) else 0,
        args.runs,
    )


def check_parquet_files(paths: list) -> None:
    """Each runs.parquet or curves.parquet, where present, readable and ours: else one line naming the file."""
    from skipinit.report import aggregate

    for path in paths:
        if path and Path(path).exists():
            try:
                aggregate.read_parquet(path)
            except aggregate.DamagedResults as error:
                raise SystemExit(f"error: {error}") from None


def cmd_figure(args: argparse.Namespace) -> None:
    from skipinit.report import figures

    check_parquet_files([args.runs, args.curves])
    figures.write_figure(args.runs, args.curves, args.experiment, args.png, args.pdf)


def cmd_table(args: argparse.Namespace) -> None:
    from skipinit.report import tables

    check_parquet_files([args.runs])
    tables.write_tables(args.runs, args.experiment, {"md": args.md, "tex": args.tex, "csv": args.csv}, args.paper)


def cmd_claims(args: argparse.Namespace) -> None:
    from skipinit import claims

    check_parquet_files([args.runs, args.curves])
    claims.write(args.runs, args.curves, args.signal, args.claims_config, args.json, args.md)


def cmd_noise_floor(args: argparse.Namespace) -> None:
    """The claims file's `noise: floors:` entries measured on a results folder's runs, printed as YAML."""
    import yaml

    from skipinit.claims.noise import measure_floors
    from skipinit.report import aggregate

    check_parquet_files([args.runs])
    floors = measure_floors(aggregate.read_parquet(args.runs), args.source)
    if not floors:
        raise SystemExit(f"error: {args.runs} has no setting with two or more models on two or more shared seeds")
    print(yaml.safe_dump({"floors": floors}, sort_keys=False, width=110), end="")


def cmd_report(args: argparse.Namespace) -> None:
    """Figures, tables, claims and Figure 2 of one results folder from its Parquet files alone: no training needed.

    The folder's files under their workflow names, for `make tables`; the workflow's rules call
    `figure`, `table` and `claims` with explicit paths instead.
    """
    from skipinit import runtable

    results = Path(args.results)
    runs, curves, signal = (results / f"{name}.parquet" for name in ("runs", "curves", "signal"))
    check_parquet_files([runs, curves])
    only = set(args.only or REPORT_PARTS)
    experiments = list(runtable.read_experiment_meta(runs)) if runs.exists() else []
    experiments = [args.experiment] if args.experiment else experiments
    if "figures" in only:
        from skipinit.report import figures

        for experiment in experiments:
            stem = results / "figures" / experiment
            figures.write_figure(runs, curves, experiment, stem.with_suffix(".png"), stem.with_suffix(".pdf"))
    if "tables" in only:
        from skipinit.report import tables

        for experiment in experiments:
            tables.write_tables(
                runs,
                experiment,
                {fmt: results / "tables" / f"{experiment}.{fmt}" for fmt in tables.TABLE_FORMATS},
                args.paper,
            )
    if "claims" in only:
        from skipinit import claims

        claims.write(runs, curves, signal, args.claims_config, results / "claims.json", results / "claims.md")
    if "signal" in only:  # the signal rule's figure; the Snakemake report rules never ask for it
        from skipinit.signal import plot

        plot.redraw(results)


def cmd_scorecard(args: argparse.Namespace) -> None:
    """Every claim as each results folder's claims.json judged it: one Markdown and one HTML page."""
    from skipinit.report import scorecard

    try:
        written = scorecard.write(args.claims, args.claims_config, args.out)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    log.info("scorecard of %d claims file(s): %s", len(args.claims), ", ".join(map(str, written)))


def cmd_check_profile(args: argparse.Namespace) -> None:
    from skipinit import profile

    try:
        for path in args.profiles:
            resolved = profile.resolve([path])
            log.info(
                "%s: profile %s, %d experiments, %d cells in %d training jobs",
                path,
                resolved.name,
                len(resolved.experiments),
                len(resolved.cells),
                len(resolved.packs),
            )
    except profile.ProfileError as error:
        raise SystemExit(f"error: {error}") from None


def cmd_plan(args: argparse.Namespace) -> None:
    from skipinit import plan

    try:
        print(plan.report(args.profile, args.gpus, args.device_class, args.csv, args.retries))
    except plan.PlanError as error:
        raise SystemExit(f"error: {error}") from None


def add_required(parser: argparse.ArgumentParser, *flags: str, **settings) -> None:
    """Flags every call must give (the rules pass each path and setting explicitly)."""
    for flag in flags:
        parser.add_argument(flag, required=True, **settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipinit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare-data", help="build the canonical, checksummed dataset file")
    prepare.add_argument("--source", required=True)
    prepare.add_argument("--path")
    prepare.add_argument("--name", required=True)
    prepare.add_argument("--out", required=True)
    prepare.add_argument(
        "--download", action=argparse.BooleanOptionalAction, required=True, help="the profile's data_download"
    )
    prepare.add_argument("--synthetic-train-size", type=int, required=True, help="the profile's synthetic.train_size")
    prepare.add_argument("--synthetic-test-size", type=int, required=True, help="the profile's synthetic.test_size")
    prepare.add_argument("--synthetic-seed", type=int, required=True, help="the profile's synthetic.seed")
    prepare.set_defaults(func=cmd_prepare_data)

    sizes = commands.add_parser(
        "check-sizes", help="the profile's subsets and batch sizes against a prepared dataset's size"
    )
    sizes.add_argument("--dataset", required=True, help="canonical .npz")
    sizes.add_argument("--name", required=True, help="the dataset's name, for the message")
    sizes.add_argument(
        "--requirements", required=True, help="JSON list of {where, train_subset, test_subset, batch_size}"
    )
    sizes.add_argument("--out", required=True, help="marker written when every setting fits")
    sizes.set_defaults(func=cmd_check_sizes)

    train = commands.add_parser("train", help="train one pack of cells (one cell when pack=1)")
    train.add_argument("--cells", required=True, help="JSON list of cell dicts")
    train.add_argument("--dataset", required=True, help="canonical .npz, or the ImageNet folder for imagenet cells")
    train.add_argument("--out", required=True, help="result.json")
    train.add_argument("--checkpoint", required=True)
    add_engine_arguments(train)
    train.set_defaults(func=cmd_train)

    sig = commands.add_parser("signal", help="signal propagation at initialization (Figure 2)")
    sig.add_argument("--models", nargs="+", required=True)
    add_required(sig, "--linear-depth", "--conv-depth", "--linear-width", "--conv-width", "--batch-size", type=int)
    sig.add_argument("--seeds", type=int, nargs="+", required=True)
    sig.add_argument("--profile", required=True, help="the profile's name, for the figure's provenance line")
    sig.add_argument("--dataset", help="canonical .npz whose test images feed the conv nets")
    add_required(sig, "--out", "--figure-png", "--figure-pdf")
    sig.set_defaults(func=cmd_signal)

    man = commands.add_parser("manifest", help="resolve the profile once and write results/<name>/manifest.json")
    man.add_argument("profiles", nargs="+", help="the profile files, merged in order")
    man.add_argument("--overrides", default="{}", help="JSON of --config values laid over them")
    man.add_argument("--out", required=True)
    man.set_defaults(func=cmd_manifest)

    agg = commands.add_parser("aggregate", help="collect pack results into runs.parquet and curves.parquet")
    agg.add_argument("inputs", nargs="+")
    agg.add_argument("--manifest", required=True, help="results/<name>/manifest.json: which experiments use which cell")
    add_required(agg, "--runs", "--curves")
    agg.set_defaults(func=cmd_aggregate)

    fig = commands.add_parser("figure", help="one experiment's figure from runs.parquet and curves.parquet")
    table = commands.add_parser("table", help="one experiment's table from runs.parquet (Markdown, LaTeX, CSV)")
    add_required(fig, "--runs", "--experiment", "--curves", "--png", "--pdf")
    fig.set_defaults(func=cmd_figure)
    add_required(table, "--runs", "--experiment", "--md", "--tex", "--csv")
    table.add_argument(
        "--paper", help="the paper's own numbers to print beside the Markdown table (config/paper_v1.yaml)"
    )
    table.set_defaults(func=cmd_table)

    verdicts = commands.add_parser("claims", help="judge every claim on one profile's Parquet files")
    add_required(verdicts, "--runs", "--curves", "--claims-config", "--json", "--md")
    verdicts.add_argument("--signal", help="signal.parquet, where the profile measures it")
    verdicts.set_defaults(func=cmd_claims)

    floor = commands.add_parser(
        "noise-floor", help="seed-noise floors (sds with degrees of freedom) measured on a runs.parquet"
    )
    add_required(floor, "--runs", "--source")
    floor.set_defaults(func=cmd_noise_floor)

    report = commands.add_parser(
        "report", help="figures, tables and claims of one results folder from its Parquet files"
    )
    report.add_argument(
        "--results", required=True, help="folder with runs.parquet (and curves.parquet, signal.parquet)"
    )
    report.add_argument("--experiment", help="only this experiment's figures/tables")
    report.add_argument("--claims-config", default=schema.default("claims"))
    report.add_argument("--only", nargs="+", choices=REPORT_PARTS, help="parts to rebuild (default: all)")
    report.add_argument("--paper", default=PAPER_NUMBERS, help="the paper's own numbers to print beside the tables")
    report.set_defaults(func=cmd_report)

    card = commands.add_parser(
        "scorecard", help="every claim as each results folder's claims.json judged it (Markdown and HTML)"
    )
    card.add_argument("--claims", nargs="+", required=True, help="claims.json files, one column each")
    card.add_argument("--claims-config", default=schema.default("claims"))
    card.add_argument("--out", required=True, help="the Markdown page; the HTML page is written next to it")
    card.set_defaults(func=cmd_scorecard)

    check = commands.add_parser(
        "check-profile",
        help="resolve each profile as the workflow does: strict reading, schema, "
        "semantic checks (one line naming the file, key and value)",
    )
    check.add_argument("profiles", nargs="+")
    check.set_defaults(func=cmd_check_profile)

    plan = commands.add_parser(
        "plan", help="a profile's compute plan: jobs, GPU-hours, wall time, disk, SLURM time limits"
    )
    plan.add_argument("--profile", required=True, help="a profile, e.g. config/paper.yaml")
    plan.add_argument("--gpus", type=int, default=1, help="GPUs running jobs at once (wall time, checkpoint disk)")
    plan.add_argument(
        "--device-class", help="device class of bench/throughput.csv (default: the profile's resources.device_class)"
    )
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
            f"error: cannot write {error.filename or getattr(args, 'out', None) or 'an output'}: {error.strerror}. "
            "Free disk space or make the "
            "results folder writable, then rerun the same command: finished cells are kept and interrupted ones resume."
        ) from None
