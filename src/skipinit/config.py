"""Config checks that a JSON schema cannot express, run before any job starts.

Each problem is reported as one line naming the key, its value and what is allowed,
so a typo costs seconds, not a cluster allocation.
"""

from __future__ import annotations

import os
from pathlib import Path

from skipinit.data import SOURCES, remedies
from skipinit.grid import experiment_cells, normalize_alpha

VARIANTS = ("batchnorm", "skipinit", "unnormalized", "scaled", "fixup")
ARCHS = ("wrn", "resnet50_v2")
SCHEDULES = ("halving", "step", "cosine")
EXPERIMENT_KINDS = ("depth", "batch_size", "regularization", "imagenet", "generic")
SIGNAL_MODELS = ("linear-unnormalized", "linear-batchnorm", "conv-batchnorm", "conv-skipinit", "conv-unnormalized")


class ConfigError(ValueError):
    """A config value that would make the workflow fail or compute the wrong thing."""


def _where(experiment: str, cell: dict) -> str:
    return f"experiments.{experiment} (model {cell['variant']}, depth {cell['depth']})"


def check_cell(experiment: str, cell: dict) -> None:
    where = _where(experiment, cell)
    if cell["arch"] not in ARCHS:
        raise ConfigError(f"{where}: arch={cell['arch']!r} is unknown; allowed: {', '.join(ARCHS)}")
    if cell["variant"] not in VARIANTS:
        raise ConfigError(f"{where}: variant={cell['variant']!r} is unknown; allowed: {', '.join(VARIANTS)}")
    if cell["schedule"] not in SCHEDULES:
        raise ConfigError(f"{where}: schedule={cell['schedule']!r} is unknown; allowed: {', '.join(SCHEDULES)}")
    if cell["arch"] == "wrn" and (cell["depth"] < 10 or (cell["depth"] - 4) % 6):
        raise ConfigError(f"{where}: depth={cell['depth']} is not a Wide-ResNet depth; allowed: 6N+4 with N >= 1 (10, 16, 22, 28, 40, 100, 1000, ...)")
    for key in ("batch_size", "epochs", "width"):
        if cell[key] <= 0:
            raise ConfigError(f"{where}: {key}={cell[key]} must be a positive integer")
    if not cell["lr"] > 0:
        raise ConfigError(f"{where}: lr={cell['lr']} must be a positive number")
    if cell["weight_decay"] < 0:
        raise ConfigError(f"{where}: weight_decay={cell['weight_decay']} must be >= 0")
    if not 0 <= cell["dropout"] < 1:
        raise ConfigError(f"{where}: dropout={cell['dropout']} must be in [0, 1)")


def check_alpha_values(config: dict) -> None:
    """alpha_init must be a number or the string 1/sqrt(d), wherever it appears."""
    layers = [("training", config.get("training", {}))]
    for name, spec in config.get("experiments", {}).items():
        layers.append((f"experiments.{name}.training", spec.get("training", {})))
        for index, model in enumerate(spec.get("models", [])):
            layers.append((f"experiments.{name}.models[{index}]", model))
        layers.append((f"experiments.{name}.grid", {"alpha_init": v for v in spec.get("grid", {}).get("alpha_init", [])}))
    for where, layer in layers:
        if "alpha_init" in layer:
            try:
                normalize_alpha(layer["alpha_init"])
            except (TypeError, ValueError):
                raise ConfigError(f"{where}.alpha_init={layer['alpha_init']!r} is not allowed; use a number (0, 0.1, 1) or the string '1/sqrt(d)'") from None


def check_data(config: dict, workdir: str | os.PathLike = ".") -> None:
    source, path = config["data_source"], config.get("data_path")
    if source not in SOURCES:
        raise ConfigError(f"data_source={source!r} is unknown; allowed: {', '.join(SOURCES)}")
    if source == "imagefolder" and (not path or not (Path(workdir) / path).exists()):
        raise ConfigError(f"data_path={path!r} does not exist. " + remedies(config["dataset"], source, path))
    if source == "cifar10" and not path:
        raise ConfigError("data_path is empty; data_source=cifar10 needs a folder to find or download CIFAR-10 into. " + remedies(config["dataset"], source, path))
    if source == "cifar10" and not config.get("data_download", True) and not (Path(workdir) / path).exists():
        raise ConfigError(f"data_path={path!r} does not exist and data_download is false. " + remedies(config["dataset"], source, path))


def check_imagenet(config: dict) -> None:
    """imagenet.root, when set, holds train/ and val/ with the same class folders (class names only: cheap), and
    every pack of ImageNet cells shares one seed (one input pipeline per job)."""
    root = (config.get("imagenet") or {}).get("root")
    if not root:
        return
    if not all((Path(root) / split).is_dir() for split in ("train", "val")):
        raise ConfigError(f"imagenet.root={root!r} has no train/ and val/ folders; point it at an image-folder ImageNet or set it to null")
    from skipinit.grid import all_cells, packs
    from skipinit.data.imagenet import ImageNetLayoutError, class_folders

    try:
        class_folders(root)
    except ImageNetLayoutError as error:
        raise ConfigError(f"imagenet.root: {error}") from None
    pack = config.get("pack", 1)
    for key, members in packs(all_cells(config), pack).items():
        if members[0]["dataset"] == "imagenet" and len({member["seed"] for member in members}) > 1:
            raise ConfigError(f"pack={pack} puts ImageNet cells of different seeds into one job ({key}); an ImageNet pack "
                              "reads one input pipeline, so its members must share a seed: use pack: 1 or a divisor of the lr grid")


def check_packing(config: dict) -> None:
    """`pack` must divide every lr x seed sweep larger than it, so that no pack is a ragged leftover.

    A sweep of at most `pack` cells is one pack: a profile can pack 8 learning rates of one
    study and 4 of another.
    """
    from skipinit.grid import all_cells, cell_id

    pack = config.get("pack", 1)
    if pack <= 0:
        raise ConfigError(f"pack={pack} must be a positive integer")
    if pack == 1:
        return
    sweeps: dict[str, int] = {}
    for cell in all_cells(config).values():
        shared = cell_id(cell).rsplit("/", 1)[0]
        sweeps[shared] = sweeps.get(shared, 0) + 1
    for shared, size in sweeps.items():
        if size > pack and size % pack:
            raise ConfigError(
                f"pack={pack} does not divide the lr x seed sweep of {shared} ({size} cells); "
                f"choose a divisor of {size}, at least {size}, or pack: 1"
            )


def check_micro_batch(config: dict) -> None:
    """`micro_batch` must split every batch it applies to evenly, and into whole ghost batches."""
    from skipinit.grid import all_cells

    micro = int(config.get("micro_batch", 0))
    if micro < 0:
        raise ConfigError(f"micro_batch={micro} must be 0 (whole batches) or a positive number of examples")
    if micro == 0:
        return
    for cell in all_cells(config).values():
        batch, ghost = int(cell["batch_size"]), int(cell["ghost_batch_size"])
        if batch <= micro:
            continue
        if batch % micro:
            raise ConfigError(f"micro_batch={micro} does not divide batch_size={batch}; choose a divisor of every batch size above it, or micro_batch: 0")
        if ghost and micro % ghost:
            raise ConfigError(f"micro_batch={micro} is not a multiple of ghost_batch_size={ghost}; choose a multiple, or micro_batch: 0")


def check_config(config: dict, workdir: str | os.PathLike = ".") -> None:
    """All semantic checks; raises ConfigError with one line."""
    check_data(config, workdir)
    check_alpha_values(config)
    for experiment, cells in experiment_cells(config).items():
        kind = config["experiments"][experiment].get("kind", "generic")
        if kind not in EXPERIMENT_KINDS:
            raise ConfigError(f"experiments.{experiment}.kind={kind!r} is unknown; allowed: {', '.join(EXPERIMENT_KINDS)}")
        for cell in cells:
            check_cell(experiment, cell)
    for model in config.get("signal", {}).get("models", []):
        if model not in SIGNAL_MODELS:
            raise ConfigError(f"signal.models contains {model!r}; allowed: {', '.join(SIGNAL_MODELS)}")
    check_packing(config)
    check_micro_batch(config)
    check_imagenet(config)
