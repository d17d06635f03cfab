"""Config checks that a JSON schema cannot express, run before any job starts.

Each problem is reported as one line naming the key, its value and what is allowed,
so a typo costs seconds, not a cluster allocation.
"""

from __future__ import annotations

import functools
import itertools
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from skipinit.data import SOURCES, canonical_sizes, remedies
from skipinit.grid import cell_id
from skipinit.vocab import EXPERIMENT_KINDS, SETTINGS, SIGNAL_MODELS, WRN_DEPTHS, is_wrn_depth, micro_batch_problem


class ConfigError(ValueError):
    """A config value that would make the workflow fail or compute the wrong thing."""


def _where(experiment: str, cell: dict) -> str:
    return f"experiments.{experiment} (model {cell['variant']}, depth {cell['depth']})"


def check_cell(experiment: str, cell: dict) -> None:
    """What only a whole cell can tell (each value passed its own check in `check_settings`)."""
    if cell["arch"] == "wrn" and not is_wrn_depth(cell["depth"]):
        raise ConfigError(
            f"{_where(experiment, cell)}: depth={cell['depth']} is not a Wide-ResNet depth; allowed: {WRN_DEPTHS}"
        )
    ghost, batch = int(cell["ghost_batch_size"]), int(cell["batch_size"])
    if ghost and batch > ghost and batch % ghost:
        raise ConfigError(
            f"{_where(experiment, cell)}: ghost_batch_size={ghost} does not divide batch_size={batch}; "
            f"choose a divisor of {batch}, or 0 for plain batch norm"
        )


def prepared_dataset(config: dict, workdir: str | os.PathLike = ".") -> Path:
    """Where the workflow's data preparation writes the profile's canonical dataset."""
    return Path(workdir) / "resources" / "datasets" / f"{config['dataset']}.npz"


def known_sizes(config: dict, workdir: str | os.PathLike = ".") -> tuple[int, int] | None:
    """(train, test) images of the profile's dataset where known before any job: the synthetic generator's
    sizes, or the header of the prepared canonical file (read once per parse); None until it is prepared."""
    if config["data_source"] == "synthetic":
        return int(config["synthetic"]["train_size"]), int(config["synthetic"]["test_size"])
    prepared = prepared_dataset(config, workdir)
    return _header_sizes(prepared.resolve(), prepared.stat().st_mtime_ns) if prepared.is_file() else None


@functools.lru_cache(maxsize=8)
def _header_sizes(path: Path, mtime_ns: int) -> tuple[int, int]:
    return canonical_sizes(path)


def size_requirements(experiments: dict[str, list[dict]]) -> list[dict]:
    """What the dataset's size must allow: each distinct (experiment, train_subset, test_subset, batch_size)."""
    needs = []
    for experiment, cells in experiments.items():
        for cell in cells:
            if cell["dataset"] == "imagenet":
                continue
            need = {
                "where": f"experiments.{experiment}",
                **{key: int(cell[key]) for key in ("train_subset", "test_subset", "batch_size")},
            }
            if need not in needs:
                needs.append(need)
    return needs


def size_problem(needs: list[dict], train: int, test: int, dataset: str) -> str | None:
    """The first setting the dataset's `train` and `test` images cannot serve, as one line; None where all fit."""
    for need in needs:
        where, subset, batch = need["where"], need["train_subset"], need["batch_size"]
        if subset > train:
            return (
                f"{where}: train_subset={subset} exceeds the {train} training images of {dataset}; use at most "
                f"{train}, or 0 for all"
            )
        if need["test_subset"] > test:
            return (
                f"{where}: test_subset={need['test_subset']} exceeds the {test} test images of {dataset}; "
                f"use at most {test}, or 0 for all"
            )
        images = subset or train
        if batch > images:
            return (
                f"{where}: batch_size={batch} exceeds the {images} training images a cell trains on "
                f"({'train_subset' if subset else dataset + ' has'} {images}); use a batch size of at most {images}"
            )
    return None


def check_sizes(config: dict, experiments: dict[str, list[dict]], workdir: str | os.PathLike = ".") -> None:
    """Subsets and batch sizes against the dataset's size, where it is known at plan time (`known_sizes`);
    otherwise the workflow's check_sizes job checks them after data preparation, before any training."""
    sizes = known_sizes(config, workdir)
    problem = size_problem(size_requirements(experiments), *sizes, config["dataset"]) if sizes else None
    if problem:
        raise ConfigError(problem)


def setting_layers(config: dict):
    """(where, settings) for every place a profile sets cell settings: training, models, grid items."""
    yield "training", config["training"]
    for name, spec in config["experiments"].items():
        yield f"experiments.{name}.training", spec.get("training", {})
        for index, model in enumerate(spec.get("models", [])):
            yield f"experiments.{name}.models[{index}]", model
        for key, values in spec.get("grid", {}).items():
            for index, value in enumerate(values):
                yield f"experiments.{name}.grid.{key}[{index}]", {key: value}


def check_settings(config: dict) -> None:
    """Every cell setting, wherever it is written, against its one definition in `vocab.SETTINGS`."""
    for where, layer in setting_layers(config):
        for key, value in layer.items():
            try:
                SETTINGS[key].check(value)
            except ValueError as error:
                raise ConfigError(f"{where}: {error}") from None


def check_data(config: dict, workdir: str | os.PathLike = ".") -> None:
    source, path = config["data_source"], config["data_path"]
    if source not in SOURCES:
        raise ConfigError(f"data_source={source!r} is unknown; allowed: {', '.join(SOURCES)}")
    if source == "imagefolder" and (not path or not (Path(workdir) / path).exists()):
        raise ConfigError(f"data_path={path!r} does not exist. " + remedies(config["dataset"], source, path))
    if source == "imagefolder" and not _prepared_since(Path(workdir) / path, prepared_dataset(config, workdir)):
        problem = image_folder_problem(Path(workdir) / path)
        if problem:
            raise ConfigError(f"data_path={path!r} {problem}. " + remedies(config["dataset"], source, path))
    if source == "cifar10" and not path:
        raise ConfigError(
            "data_path is empty; data_source=cifar10 needs a folder to find or download CIFAR-10 into. "
            + remedies(config["dataset"], source, path)
        )
    if source == "cifar10" and not config["data_download"] and not (Path(workdir) / path).exists():
        raise ConfigError(
            f"data_path={path!r} does not exist and data_download is false. "
            + remedies(config["dataset"], source, path)
        )


def _prepared_since(source: Path, prepared: Path) -> bool:
    """The prepared dataset exists and is newer than its source: preparing it read the source's whole layout, so a
    parse need not scan the archive again (about a second for CIFAR-10's 60,000 members, on every job's parse)."""
    try:
        return prepared.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False


def check_claims_file(config: dict, workdir: str | os.PathLike = ".") -> None:
    """The claims file a profile names must exist: else the claims step would fail after all the training, or a
    dry run would accept it while an old claims.json stays in place."""
    path = config["claims"]
    if not (Path(workdir) / path).is_file():
        raise ConfigError(
            f"claims={path!r} is not a file: name the claims file to judge with (default "
            "config/claims.yaml), relative to the workflow's folder"
        )


def image_folder_problem(path: Path) -> str | None:
    """Why `path` is no image folder (or .tar.gz of one) in the cifar10-jpeg layout, or None.

    Cheap: only names are read (a .tar.gz's member list; in a folder, one file per class folder), so a
    misplaced or wrong data_path is refused at plan time rather than in the first job.
    """
    if path.is_file():
        try:
            with tarfile.open(path) as archive:
                names = [
                    PurePosixPath(member.name) for member in archive.getmembers() if member.isdir() or member.isfile()
                ]
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            reason = (str(error).strip().splitlines() or [""])[0].rstrip(":")
            return f"is not a readable .tar.gz archive ({type(error).__name__}: {reason})"
        where = "the archive"
    else:
        names = [
            PurePosixPath(image.relative_to(path).as_posix())
            for root in (path, *(p for p in path.iterdir() if p.is_dir()))
            for split in ("train", "test")
            for folder in (root / split).glob("*/")
            for image in itertools.islice(folder.iterdir(), 1)
        ]
        where = "the folder"
    for prefix in sorted({(), *(name.parts[:1] for name in names if len(name.parts) > 3)}):
        classes = {
            split: {
                name.parts[len(prefix) + 1]
                for name in names
                if name.parts[: len(prefix) + 1] == (*prefix, split) and len(name.parts) > len(prefix) + 2
            }
            for split in ("train", "test")
        }
        if classes["train"] and classes["test"]:
            if classes["train"] != classes["test"]:
                return (
                    f"has train/ and test/ with different class folders ({sorted(classes['train'] ^ classes['test'])} "
                    "in only one)"
                )
            return None
    return f"has no train/<class>/<image> and test/<class>/<image> in {where} (nor one folder below)"


def check_imagenet(config: dict, job_packs: dict[str, list[dict]]) -> None:
    """imagenet.root, when set, holds train/ and val/ with the same class folders (class names only: cheap), and
    every pack of ImageNet cells shares one seed (one input pipeline per job)."""
    root = config["imagenet"]["root"]
    if not root:
        return
    if not all((Path(root) / split).is_dir() for split in ("train", "val")):
        raise ConfigError(
            f"imagenet.root={root!r} has no train/ and val/ folders; point it at an image-folder ImageNet or set it to "
            "null"
        )
    from skipinit.data.imagenet import ImageNetLayoutError, class_folders

    try:
        class_folders(root)
    except ImageNetLayoutError as error:
        raise ConfigError(f"imagenet.root: {error}") from None
    pack = config["pack"]
    for key, members in job_packs.items():
        if members[0]["dataset"] == "imagenet" and len({member["seed"] for member in members}) > 1:
            raise ConfigError(
                f"pack={pack} puts ImageNet cells of different seeds into one job ({key}); an ImageNet pack "
                "reads one input pipeline, so its members must share a seed: use pack: 1 or a divisor of the lr grid"
            )


def check_packing(config: dict, cells: dict[str, dict]) -> None:
    """`pack` must divide every lr x seed sweep larger than it, so that no pack is a ragged leftover.

    A sweep of at most `pack` cells is one pack: a profile can pack 8 learning rates of one
    study and 4 of another.
    """
    pack = config["pack"]
    if pack <= 0:
        raise ConfigError(f"pack={pack} must be a positive integer")
    if pack == 1:
        return
    sweeps: dict[str, int] = {}
    for cell in cells.values():
        shared = cell_id(cell).rsplit("/", 1)[0]
        sweeps[shared] = sweeps.get(shared, 0) + 1
    for shared, size in sweeps.items():
        if size > pack and size % pack:
            raise ConfigError(
                f"pack={pack} does not divide the lr x seed sweep of {shared} ({size} cells); "
                f"choose a divisor of {size}, at least {size}, or pack: 1"
            )


def check_micro_batch(config: dict, cells: dict[str, dict]) -> None:
    """`micro_batch` must split every batch it applies to evenly, and into whole ghost batches."""
    micro = int(config["micro_batch"])
    if micro < 0:
        raise ConfigError(f"micro_batch={micro} must be 0 (whole batches) or a positive number of examples")
    for cell in cells.values():
        problem = micro_batch_problem(int(cell["batch_size"]), micro, int(cell["ghost_batch_size"]))
        if problem:
            raise ConfigError(
                f"{problem}; choose a divisor of every batch size above it (and a multiple of every ghost batch size), "
                "or micro_batch: 0"
            )


def check_config(
    config: dict,
    experiments: dict[str, list[dict]],
    cells: dict[str, dict],
    job_packs: dict[str, list[dict]],
    workdir: str | os.PathLike = ".",
    data: bool = True,
) -> None:
    """All semantic checks of a validated profile and its expansion (`skipinit.profile.resolve`); ConfigError with one
    line.

    Without `data`, the data source and the dataset's sizes are not checked (a plan needs no data).
    """
    if data:
        check_data(config, workdir)
    for experiment, experiment_cells in experiments.items():
        kind = config["experiments"][experiment]["kind"]
        if kind not in EXPERIMENT_KINDS:
            raise ConfigError(
                f"experiments.{experiment}.kind={kind!r} is unknown; allowed: {', '.join(EXPERIMENT_KINDS)}"
            )
        for cell in experiment_cells:
            check_cell(experiment, cell)
    for model in config["signal"]["models"]:
        if model not in SIGNAL_MODELS:
            raise ConfigError(f"signal.models contains {model!r}; allowed: {', '.join(SIGNAL_MODELS)}")
    check_packing(config, cells)
    check_micro_batch(config, cells)
    check_imagenet(config, job_packs)
    check_claims_file(config, workdir)
    if data:
        check_sizes(config, experiments, workdir)
