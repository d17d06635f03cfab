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

from skipinit.arguments import REPORT_PARTS, build_parser
from skipinit.fileio import IntegrityError

log = logging.getLogger("skipinit")
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EPERM}


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


def cmd_list_imagenet(args: argparse.Namespace) -> None:
    from skipinit.data.imagenet import ImageNetFolder, ImageNetLayoutError

    try:
        folder = ImageNetFolder(args.root)
    except ImageNetLayoutError as error:
        raise SystemExit(f"error: {error}") from None
    folder.save(args.out)
    log.info(
        "%s: %d classes, %s",
        args.root,
        len(folder.classes),
        ", ".join(f"{len(folder.files[s])} {s} images" for s in folder.files),
    )


def cmd_train(args: argparse.Namespace) -> None:
    from skipinit import gpus

    gpus.claim_gpu(args.device)  # before CUDA starts: concurrent jobs on a multi-GPU machine each take their own GPU
    from skipinit.engine.job import run_job
    from skipinit.engine.options import EngineOptions

    options = EngineOptions(**{field.name: getattr(args, field.name) for field in dataclasses.fields(EngineOptions)})
    cells = json.loads(Path(args.cells_file).read_text() if args.cells_file else args.cells)
    run_job(cells, args.dataset, args.out, args.checkpoint, options, log=lambda line: log.info("%s", line))


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
    for key, members in resolved.packs.items():
        write_json(profile.pack_file(Path(args.out).parent, key), members)
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
        paths = [args.manifest, *args.round_manifest]
        contents = [manifest.read(path) for path in paths]
        inputs = args.inputs or [file for path, c in zip(paths, contents) for file in manifest.result_files(path, c)]
        runs = aggregate.collect(inputs, manifest.merged(contents), args.runs, args.curves)
    except (manifest.ManifestError, aggregate.DamagedResults, aggregate.MixedSettings) as error:
        raise SystemExit(f"error: {error}") from None
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
                aggregate.check_parquet(path)
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


def cmd_add_seeds(args: argparse.Namespace) -> None:
    """Round `--round`'s manifest and pack files: paired seeds for the claims still undecided (skipinit.rounds)."""
    from skipinit import claims, manifest, rounds
    from skipinit.report import aggregate

    check_parquet_files([args.runs, args.curves])
    try:
        first = manifest.read(args.manifest)
        for path in args.round_manifest:  # the earlier rounds' seeds are in --runs; their manifests must be sound
            manifest.read(path)
    except manifest.ManifestError as error:
        raise SystemExit(f"error: {error}") from None
    settings = first[manifest.CONFIG]["adaptive"]
    spec = claims.load_spec(args.claims_config)
    verdicts = claims.judge_files(Path(args.runs), Path(args.curves), None, spec)
    cells, added = rounds.plan_round(verdicts, aggregate.read_parquet(args.runs), spec, settings)
    results = manifest.results_folder(args.manifest, first)
    if Path(args.out) != rounds.round_folder(results, args.round) / "manifest.json":
        folder = rounds.round_folder(results, args.round)
        raise SystemExit(f"error: --out {args.out}: round {args.round}'s manifest is {folder}/manifest.json; pass that")
    config = first[manifest.CONFIG]
    # Sequential packs only save start-ups; a round's few cells finish sooner as jobs of their own, side by side.
    pack = 1 if config["packing"] == "sequential" else config["pack"]
    rounds.write_round(results, args.round, first, cells, added, pack)
    served = [entry["claim"] for entry in added if entry.get("served")]
    log.info("round %d: %d cells for %d claim(s): %s", args.round, len(cells), len(served), ", ".join(served) or "none")


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


COMMANDS = {
    "prepare-data": cmd_prepare_data,
    "check-sizes": cmd_check_sizes,
    "list-imagenet": cmd_list_imagenet,
    "train": cmd_train,
    "signal": cmd_signal,
    "manifest": cmd_manifest,
    "aggregate": cmd_aggregate,
    "figure": cmd_figure,
    "table": cmd_table,
    "claims": cmd_claims,
    "add-seeds": cmd_add_seeds,
    "noise-floor": cmd_noise_floor,
    "report": cmd_report,
    "scorecard": cmd_scorecard,
    "check-profile": cmd_check_profile,
    "plan": cmd_plan,
}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except OSError as error:
        if error.errno not in STORAGE_ERRORS:
            raise
        raise SystemExit(
            f"error: cannot write {error.filename or getattr(args, 'out', None) or 'an output'}: {error.strerror}. "
            "Free disk space or make the "
            "results folder writable, then rerun the same command: finished cells are kept and interrupted ones resume."
        ) from None
