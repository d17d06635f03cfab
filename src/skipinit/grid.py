"""From a validated config to training cells and packs.

A *cell* is one training run: a flat dict of every setting that can change its result.
Cells are deduplicated across experiments (the same BN run serves the depth and the
batch-size study) and named by readable slugs, which become Snakemake wildcards.
A *pack* is a list of cells that differ only in learning rate and seed, trained in one
process as one batched computation.
"""

from __future__ import annotations

import itertools

from skipinit.vocab import ALPHA_SQRT_D, CELL_DEFAULTS, SETTINGS


def make_cell(*layers: dict) -> dict:
    """Merge defaults and override layers (later wins) into one cell with canonical types.

    Every value passes its setting's check (`vocab.Setting.check`); `config.check_config` has
    already refused bad ones with their location, so here a ValueError is a programming error.
    """
    cell = dict(CELL_DEFAULTS)
    for layer in layers:
        cell.update({key: value for key, value in layer.items() if key in SETTINGS})
    cell = {key: SETTINGS[key].check(value) for key, value in cell.items()}
    if cell["variant"] != "skipinit":
        cell["alpha_init"] = CELL_DEFAULTS["alpha_init"]
    if cell["variant"] != "batchnorm" or cell["batch_size"] <= cell["ghost_batch_size"]:
        cell["ghost_batch_size"] = 0
    return cell


def _num(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


# Slug parts of settings that appear only where they differ from their default, so that the
# cells of most profiles keep short names: (key, pattern).
_MODEL_EXTRAS = (("ghost_batch_size", "gbn{}"), ("dropout", "do{}"))
_HYPER_EXTRAS = (("momentum", "m{}"), ("nesterov", "nesterov"), ("train_subset", "n{}"), ("test_subset", "t{}"))


def _extras(cell: dict, extras: tuple[tuple[str, str], ...]) -> list[str]:
    return [pattern.format(_num(cell[key])) for key, pattern in extras if cell[key] != CELL_DEFAULTS[key]]


def net_slug(cell: dict) -> str:
    return f"{cell['arch']}-{cell['depth']}-{cell['width']}"


def model_slug(cell: dict) -> str:
    alpha = ["a" + cell["alpha_init"].replace(ALPHA_SQRT_D, "isqrtd")] if cell["variant"] == "skipinit" else []
    return "-".join([cell["variant"], *alpha, *_extras(cell, _MODEL_EXTRAS)])


def hyper_slug(cell: dict) -> str:
    always = [f"b{cell['batch_size']}", f"e{cell['epochs']}", f"wd{_num(cell['weight_decay'])}", cell["schedule"]]
    return "-".join(always + _extras(cell, _HYPER_EXTRAS))


def member_slug(cell: dict) -> str:
    return f"lr{_num(cell['lr'])}-s{cell['seed']}"


def cell_id(cell: dict) -> str:
    return "/".join((cell["dataset"], net_slug(cell), model_slug(cell), hyper_slug(cell), member_slug(cell)))


def model_label(cell: dict) -> str:
    """A short human name for tables and legends, e.g. `SkipInit (alpha=0) + dropout`."""
    names = {
        "batchnorm": "BatchNorm",
        "skipinit": "SkipInit",
        "unnormalized": "Unnormalized",
        "scaled": "Scaled (x+f(x))/sqrt(2)",
        "fixup": "Fixup",
        "plain": "Plain (no skips)",
    }
    label = names.get(cell["variant"], cell["variant"])
    if cell["variant"] == "skipinit":
        label += f" (alpha={cell['alpha_init']})"
    if cell["dropout"]:
        label += f" + dropout {cell['dropout']:g}"
    if cell["weight_decay"] == 0:
        label += ", no L2"
    return label


def experiment_cells(config: dict) -> dict[str, list[dict]]:
    """Cells of each experiment of a validated profile: `training` x experiment training x grid point x model entry.

    ImageNet experiments are expanded too (the compute plan costs them); they train on the ImageNet
    folder, whatever the profile's CIFAR dataset, and only where one is configured (`awaits_imagenet`).
    """
    base = {"dataset": config["dataset"], **config["training"]}
    experiments = {}
    for name, spec in config["experiments"].items():
        grid = spec["grid"]
        keys = list(grid)
        source = {"dataset": "imagenet"} if spec["kind"] == "imagenet" else {}
        cells = []
        for values in itertools.product(*(grid[key] for key in keys)):
            point = dict(zip(keys, values))
            for model in spec.get("models", [{}]):
                cells.append(make_cell(base, source, spec.get("training", {}), point, model))
        experiments[name] = cells
    return experiments


def awaits_imagenet(config: dict, experiment: str) -> bool:
    """An ImageNet experiment of a profile without `imagenet.root`: planned, not run."""
    return config["experiments"][experiment]["kind"] == "imagenet" and not config["imagenet"]["root"]


def unique_cells(experiments: dict[str, list[dict]]) -> dict[str, dict]:
    """Every distinct cell of `experiments` (shared cells once), keyed by cell id, in a stable order."""
    cells = {}
    for experiment in experiments.values():
        for cell in experiment:
            cells.setdefault(cell_id(cell), cell)
    return cells


def packs(cells: dict[str, dict], pack_size: int) -> dict[str, list[dict]]:
    """Group cells that differ only in lr and seed into packs of at most `pack_size` members.

    A pack's key is its members' shared path plus their member slugs joined by `+`,
    so a pack of one is exactly the cell id.
    """
    groups: dict[str, list[dict]] = {}
    for cell in cells.values():
        shared = cell_id(cell).rsplit("/", 1)[0]
        groups.setdefault(shared, []).append(cell)
    result = {}
    for shared, members in groups.items():
        members = sorted(members, key=lambda c: (c["seed"], c["lr"]))
        for start in range(0, len(members), max(1, pack_size)):
            chunk = members[start : start + max(1, pack_size)]
            result[shared + "/" + "+".join(member_slug(c) for c in chunk)] = chunk
    return result
