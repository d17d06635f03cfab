"""The command line of `python -m skipinit`: every subcommand and its flags (`cli` runs them)."""

from __future__ import annotations

import argparse
import dataclasses

from skipinit import schema

PAPER_NUMBERS = "config/paper_v1.yaml"  # the paper's own numbers, beside `make tables`' tables
REPORT_PARTS = ("figures", "tables", "claims", "signal")  # signal: redraw Figure 2 where missing or stale


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per EngineOptions field, `--field-name`, with the field's default, help and choices."""
    from skipinit.engine.options import EngineOptions

    for field in dataclasses.fields(EngineOptions):
        flag, settings = "--" + field.name.replace("_", "-"), {"default": field.default, "help": field.metadata["help"]}
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **settings)
        else:
            parser.add_argument(flag, type=type(field.default), choices=field.metadata["choices"], **settings)


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

    sizes = commands.add_parser(
        "check-sizes", help="the profile's subsets and batch sizes against a prepared dataset's size"
    )
    sizes.add_argument("--dataset", required=True, help="canonical .npz")
    sizes.add_argument("--name", required=True, help="the dataset's name, for the message")
    sizes.add_argument(
        "--requirements", required=True, help="JSON list of {where, train_subset, test_subset, batch_size}"
    )
    sizes.add_argument("--out", required=True, help="marker written when every setting fits")

    listing = commands.add_parser("list-imagenet", help="list an ImageNet folder once, for every job that trains on it")
    add_required(listing, "--root", "--out")

    train = commands.add_parser("train", help="train one pack of cells (one cell when pack=1)")
    given = train.add_mutually_exclusive_group(required=True)
    given.add_argument("--cells", help="JSON list of cell dicts")
    given.add_argument("--cells-file", help="a file with that list: the pack file the manifest step wrote")
    train.add_argument(
        "--dataset", required=True, help="canonical .npz; for imagenet cells the listing (list-imagenet) or the folder"
    )
    train.add_argument("--out", required=True, help="result.json")
    train.add_argument("--checkpoint", required=True)
    add_engine_arguments(train)

    sig = commands.add_parser("signal", help="signal propagation at initialization (Figure 2)")
    sig.add_argument("--models", nargs="+", required=True)
    add_required(sig, "--linear-depth", "--conv-depth", "--linear-width", "--conv-width", "--batch-size", type=int)
    sig.add_argument("--seeds", type=int, nargs="+", required=True)
    sig.add_argument("--profile", required=True, help="the profile's name, for the figure's provenance line")
    sig.add_argument("--dataset", help="canonical .npz whose test images feed the conv nets")
    add_required(sig, "--out", "--figure-png", "--figure-pdf")

    man = commands.add_parser("manifest", help="resolve the profile once and write results/<name>/manifest.json")
    man.add_argument("profiles", nargs="+", help="the profile files, merged in order")
    man.add_argument("--overrides", default="{}", help="JSON of --config values laid over them")
    man.add_argument("--out", required=True)

    agg = commands.add_parser("aggregate", help="collect pack results into runs.parquet and curves.parquet")
    agg.add_argument("inputs", nargs="*", help="result.json files (default: every pack the manifest lists)")
    agg.add_argument("--manifest", required=True, help="results/<name>/manifest.json: which experiments use which cell")
    agg.add_argument(
        "--round-manifest", nargs="*", default=[], help="the further rounds' manifests (results/<name>/rounds/<k>/)"
    )
    add_required(agg, "--runs", "--curves")

    extend = commands.add_parser(
        "add-seeds", help="the cells a further round adds where claims are still undecided (profile key adaptive:)"
    )
    extend.add_argument("--round", type=int, required=True, help="the round to plan (2 or more)")
    extend.add_argument("--round-manifest", nargs="*", default=[], help="the earlier further rounds' manifests")
    add_required(extend, "--runs", "--curves", "--manifest", "--claims-config", "--out")

    fig = commands.add_parser("figure", help="one experiment's figure from runs.parquet and curves.parquet")
    table = commands.add_parser("table", help="one experiment's table from runs.parquet (Markdown, LaTeX, CSV)")
    add_required(fig, "--runs", "--experiment", "--curves", "--png", "--pdf")
    add_required(table, "--runs", "--experiment", "--md", "--tex", "--csv")
    table.add_argument(
        "--paper", help="the paper's own numbers to print beside the Markdown table (config/paper_v1.yaml)"
    )

    verdicts = commands.add_parser("claims", help="judge every claim on one profile's Parquet files")
    add_required(verdicts, "--runs", "--curves", "--claims-config", "--json", "--md")
    verdicts.add_argument("--signal", help="signal.parquet, where the profile measures it")

    floor = commands.add_parser(
        "noise-floor", help="seed-noise floors (sds with degrees of freedom) measured on a runs.parquet"
    )
    add_required(floor, "--runs", "--source")

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

    card = commands.add_parser(
        "scorecard", help="every claim as each results folder's claims.json judged it (Markdown and HTML)"
    )
    card.add_argument("--claims", nargs="+", required=True, help="claims.json files, one column each")
    card.add_argument("--claims-config", default=schema.default("claims"))
    card.add_argument("--out", required=True, help="the Markdown page; the HTML page is written next to it")

    check = commands.add_parser(
        "check-profile",
        help="resolve each profile as the workflow does: strict reading, schema, "
        "semantic checks (one line naming the file, key and value)",
    )
    check.add_argument("profiles", nargs="+")

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
    return parser
