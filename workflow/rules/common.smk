import dataclasses
import functools
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")

# Jobs run `python -m skipinit`: the interpreter that runs Snakemake (unless --sdm conda
# activates the env of workflow/envs/), importing the package from this checkout, also
# where it is not pip-installed (a conda env, a cluster node).
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
_uses_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_interpreter = (
    ""
    if _uses_conda
    else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)
shell.prefix(
    f"{_interpreter}export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

from skipinit import profile
from skipinit.config import size_requirements
from skipinit.engine.options import EngineOptions
from skipinit.plan import runtime_minutes
from skipinit.report.provenance import experiment_line

# What the profile came from, for the one-line refusals: --configfile files, then --config values.
PROFILE_FILES = [os.path.relpath(path) for path in workflow.overwrite_configfiles] or [
    "config/config.yaml"
]
OVERRIDES = workflow.config_settings.config or {}
# A cluster job's own parse (`--mode remote`) settles the config alone: its cells are in its pack file, so its
# parse costs the same at 10^3 cells as at 10^5 (bench/scale.py). Every other parse resolves, checks and expands
# the whole profile once, before any job starts.
JOB_PARSE = workflow.remote_exec


@functools.cache
def resolved():
    """The profile resolved and expanded (skipinit.profile.resolve): once per parse, and only where the parse needs it."""
    return profile.resolve(PROFILE_FILES, OVERRIDES)


try:
    if JOB_PARSE:
        config.update(profile.settle(PROFILE_FILES, OVERRIDES)[0])
    else:
        config.update(
            resolved().config
        )  # the schema's defaults filled in, as every job sees them
except profile.ProfileError as error:
    raise WorkflowError(f"config error: {error}") from None


NAME = config["name"]
RESULTS = f"results/{NAME}"
for folder in (RESULTS, "resources/datasets"):
    # Asked, not tried: parsing (and `snakemake -n`) writes nothing; the nearest existing folder must be writable.
    existing = next(
        parent for parent in (Path(folder), *Path(folder).parents) if parent.exists()
    )
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "is not a folder" if not existing.is_dir() else "is not writable"
        raise WorkflowError(
            f"cannot write to {folder}/ ({existing} {why}): make it a writable folder"
        )
EXPERIMENTS = profile.trained_experiments(config)
# Looks at the claims: round 1 trains the grid, each later round adds seeds where claims are undecided.
ROUNDS = config["adaptive"]["rounds"] if EXPERIMENTS else 1


wildcard_constraints:
    name=re.escape(NAME),
    dataset=f"{re.escape(config['dataset'])}|imagenet",
    net="[^/]+",
    model="[^/]+",
    hyper="[^/]+",
    members="[^/]+",
    experiment="|".join(map(re.escape, EXPERIMENTS)) or "(?!)",
    round="[0-9]+",


def pack_key(wildcards):
    return "/".join(
        (
            wildcards.dataset,
            wildcards.net,
            wildcards.model,
            wildcards.hyper,
            wildcards.members,
        )
    )


def round_folder(number):
    """Where round `number` keeps its pack files: results/<name>/ for the grid, rounds/<k>/ for added seeds."""
    return RESULTS if int(number) == 1 else f"{RESULTS}/rounds/{number}"


def pack_file(wildcards):
    """The file with one training job's cells, written by the manifest rule or by the round that added them
    (`python -m skipinit train --cells-file`)."""
    key = pack_key(wildcards)
    candidates = [profile.pack_file(round_folder(k), key) for k in range(1, ROUNDS + 1)]
    return str(next((path for path in candidates if path.exists()), candidates[0]))


def pack_members(wildcards):
    """One training job's cells: from its pack file in the job's own parse or for added seeds, else from the
    resolved profile."""
    key = pack_key(wildcards)
    if JOB_PARSE or key not in resolved().packs:
        return json.loads(Path(pack_file(wildcards)).read_text())
    return resolved().packs[key]


def train_runtime(wildcards):
    """SLURM minutes for one training job: its predicted time x safety, within [min, max] (skipinit.plan)."""
    return runtime_minutes(pack_members(wildcards), config)


def round_manifest(number):
    return f"{RESULTS}/rounds/{number}/manifest.json"


def round_packs(number):
    """The training jobs of round `number`: the grid's, or those its add_seeds checkpoint chose."""
    if int(number) == 1:
        return list(resolved().packs)
    done = checkpoints.add_seeds.get(name=NAME, round=str(number))
    return list(json.loads(Path(done.output.manifest).read_text())["packs"])


def results_through(number):
    """Every result.json of rounds 1..`number`."""
    return [
        f"{RESULTS}/cells/{pack}/result.json"
        for k in range(1, int(number) + 1)
        for pack in round_packs(k)
    ]


def pack_results(wildcards):
    """Every training job's result.json, of every round (an input function: a cluster job's parse never lists
    them)."""
    return results_through(ROUNDS)


def round_inputs(wildcards):
    """What round `wildcards.round`'s aggregation reads: its rounds' results and the added rounds' manifests."""
    number = int(wildcards.round)
    return {
        "packs": results_through(number),
        "manifest": manifest_file(),
        "earlier": [round_manifest(k) for k in range(2, number + 1)],
    }


def seed_round_inputs(wildcards):
    """What round `wildcards.round`'s add_seeds reads: the runs and curves of the rounds before it."""
    before = int(wildcards.round) - 1
    return {
        "runs": f"{RESULTS}/rounds/{before}/runs.parquet",
        "curves": f"{RESULTS}/rounds/{before}/curves.parquet",
        "manifest": manifest_file(),
        "earlier": [round_manifest(k) for k in range(2, before + 1)],
        "claims": config["claims"],
    }


def added_round_manifests(wildcards):
    """The manifests of the rounds that added seeds (none without adaptive rounds)."""
    return [round_manifest(k) for k in range(2, ROUNDS + 1)]


def dataset_file():
    return f"resources/datasets/{config['dataset']}.npz"


def training_data(wildcards):
    """A pack's data: the canonical CIFAR file, or the ImageNet folder's listing for ImageNet cells."""
    if wildcards.dataset == "imagenet":
        return "resources/datasets/imagenet.listing.npz"
    return dataset_file()


def imagenet_root():
    """The ImageNet folder the listing is made from (none without imagenet.root)."""
    return [config["imagenet"]["root"]] if config["imagenet"]["root"] else []


def size_needs(wildcards):
    """What the dataset's size must allow (subsets, batch sizes), as JSON for `python -m skipinit check-sizes`.

    check_sizes is a local rule: a cluster job's own parse never runs it, and (with a checkpoint in the workflow)
    may still list it, so that parse answers without expanding the grid."""
    if JOB_PARSE:
        return "[]"
    return json.dumps(size_requirements(resolved().experiments))


def checked_sizes(wildcards):
    """The size check a canonical dataset's training waits for (ImageNet cells stream a folder: none)."""
    return (
        []
        if wildcards.dataset == "imagenet"
        else ancient(f"{RESULTS}/logs/dataset_sizes.ok")
    )


def manifest_file():
    return f"{RESULTS}/manifest.json"


def profile_overrides():
    """The --config values, as JSON for `python -m skipinit manifest --overrides`."""
    return json.dumps(OVERRIDES)


def engine_flags():
    """One `skipinit train` flag per EngineOptions field, from the profile key of the same name."""
    flags = []
    for field in dataclasses.fields(EngineOptions):
        value, flag = config[field.name], field.name.replace("_", "-")
        if isinstance(field.default, bool):
            flags.append(f"--{'' if value else 'no-'}{flag}")
        else:
            flags.append(f"--{flag} {value}")
    return " ".join(flags)


def signal_models():
    return config["signal"]["models"]


def report_targets():
    targets = [f"{RESULTS}/runs.parquet", f"{RESULTS}/curves.parquet"]
    if EXPERIMENTS:
        targets += expand(
            f"{RESULTS}/figures/{{experiment}}.{{ext}}",
            experiment=EXPERIMENTS,
            ext=("png", "pdf"),
        )
        targets += expand(
            f"{RESULTS}/tables/{{experiment}}.{{ext}}",
            experiment=EXPERIMENTS,
            ext=("md", "tex", "csv"),
        )
    if signal_models():
        targets += [
            f"{RESULTS}/signal.parquet",
            f"{RESULTS}/figures/signal_propagation.png",
        ]
    return targets + claims_targets()


def figure_provenance(wildcards):
    """The provenance line of an experiment's figure (profile, data, net, epochs, batch, lrs, seeds), from its cells."""
    return experiment_line(NAME, resolved().experiments.get(wildcards.experiment, []))


def source_files():
    """The archive or folder the dataset is built from, so that replacing it rebuilds the dataset."""
    if config["data_source"] == "imagefolder":
        return [config["data_path"]]
    return []


def data_source_flags():
    """Where `prepare-data` reads from: the source, its path, and the synthetic generator's settings."""
    flags = [f"--source {config['data_source']}"]
    if config["data_path"]:
        flags.append(f"--path {shlex.quote(config['data_path'])}")
    flags.append("--download" if config["data_download"] else "--no-download")
    synthetic = config["synthetic"]
    flags.append(
        f"--synthetic-train-size {synthetic['train_size']} --synthetic-test-size {synthetic['test_size']} "
        f"--synthetic-seed {synthetic['seed']}"
    )
    return " ".join(flags)


def claims_inputs(wildcards):
    """What the claims read: runs/curves Parquet, the claims file, and signal.parquet where the profile measures it."""
    inputs = {
        "runs": f"results/{wildcards.name}/runs.parquet",
        "curves": f"results/{wildcards.name}/curves.parquet",
        "claims": config["claims"],
    }
    if signal_models():
        inputs["signal"] = f"results/{wildcards.name}/signal.parquet"
    return inputs


def claims_targets():
    return [
        f"{RESULTS}/claims.json",
        f"{RESULTS}/claims.md",
        f"{RESULTS}/scorecard.md",
        f"{RESULTS}/scorecard.html",
    ]


# Committed results the profile's scorecard sets its own verdicts against (those this checkout has).
REFERENCE_RESULTS = ("results/reference/default", "results/reference/gpu")


def scorecard_references(wildcards):
    """The reference folders' claims.json, other than the profile's own."""
    own = f"results/{wildcards.name}"
    return [
        f"{f}/claims.json"
        for f in REFERENCE_RESULTS
        if Path(f, "claims.json").is_file() and f != own
    ]


def signal_flag(wildcards, input):
    """`--signal <signal.parquet>` where the profile measures signal propagation, else nothing."""
    return f"--signal {shlex.quote(input.signal)}" if "signal" in input.keys() else ""
