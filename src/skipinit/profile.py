"""A profile (config/*.yaml) resolved once: read strictly, validated, defaults filled, checked, expanded.

`resolve(files, overrides)` is the one way in: the Snakefile (common.smk), `python -m skipinit
check-profile` and `python -m skipinit plan` all call it, and the workflow's `manifest` rule
writes its result to results/<name>/manifest.json, from which aggregation takes each cell's
experiments (the grid is expanded here and nowhere downstream).

Snakemake's own YAML loading lets a duplicated key silently win and reports a syntax error
without its file or line, and its schema validation prints the whole schema after the message;
here every refusal is one line naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import yaml

from skipinit import manifest, schema
from skipinit.config import ConfigError, check_config, check_settings
from skipinit.grid import awaits_imagenet, cell_id, experiment_cells, packs, unique_cells


class ProfileError(ValueError):
    """A profile file that cannot be read as written: one line, naming the file and the line."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys a merge (<<: *anchor) brings in may be overridden: that is what merging is for
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ProfileError(
                f"{key_node.start_mark.line + 1}: key {key!r} appears twice (first on line {seen[key] + 1}); keep one "
                "of them"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load(path: str | os.PathLike) -> dict:
    """The profile at `path` as a dict; ProfileError on a duplicated key or a YAML syntax error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        config = yaml.load(text, Loader=_StrictLoader)
    except ProfileError as error:
        raise ProfileError(f"{path}:{error}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ProfileError(f"{where}: not valid YAML: {error.problem or error.context}") from None
    if not isinstance(config, dict):
        raise ProfileError(
            f"{path}: a profile is a mapping of keys (name: ..., experiments: ...), not {type(config).__name__}"
        )
    return config


def schema_problem(config: dict, schema: dict) -> str | None:
    """The most relevant schema violation of `config` as one line (key path, value, what is allowed), or None."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    line = f"{key}: {error.message}"
    if error.validator == "type" and "boolean" in str(error.validator_value) and isinstance(error.instance, str):
        line += "; in a profile write true or false, on the command line (--config KEY=...) True or False"
    if error.validator == "pattern" and key in ("name", "dataset"):
        line += "; use a plain folder name: letters, digits, _ . -, not starting with a dot"
    return line


def _merge(into: dict, layer: dict) -> dict:
    """`layer` laid over `into` key by key, nested mappings merged (as Snakemake merges --configfile and --config)."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def fill_defaults(config: dict) -> dict:
    """`config` with every default of the schema filled in, nested ones too (jsonschema's documented recipe)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, spec in properties.items():
                if "default" in spec:
                    instance.setdefault(name, copy.deepcopy(spec["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema.schema()).validate(config)
    return config


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A profile as every step sees it: the config with its defaults, and its cells, packs and experiments."""

    files: tuple[str, ...]
    overrides: dict
    config: dict
    planned: dict[str, list[dict]]  # every experiment's cells, ImageNet ones still awaiting imagenet.root too
    experiments: dict[str, list[dict]]  # the experiments this profile trains now
    cells: dict[str, dict]  # their distinct cells by id
    packs: dict[str, list[dict]]  # training jobs: pack key -> cells

    @property
    def name(self) -> str:
        return self.config["name"]

    def manifest(self) -> dict:
        """What results/<name>/manifest.json holds (see `skipinit.manifest`)."""
        specs = self.config["experiments"]
        return {
            manifest.NAME: self.name,
            manifest.FILES: list(self.files),
            manifest.OVERRIDES: self.overrides,
            manifest.EXPERIMENTS: {
                name: {
                    "kind": specs[name]["kind"],
                    "description": specs[name]["description"],
                    "cells": list(dict.fromkeys(cell_id(cell) for cell in cells)),
                }
                for name, cells in self.experiments.items()
            },
            manifest.PACKS: {key: [cell_id(cell) for cell in members] for key, members in self.packs.items()},
            manifest.CONFIG: self.config,
        }


def settle(files: list[str | os.PathLike], overrides: dict | None = None) -> tuple[dict, str]:
    """The config of `files` (merged in order) with `overrides` on top, read strictly, schema-checked and with its
    defaults, and where it came from (for messages); no expansion, so its cost does not grow with the grid.

    A cluster job's own parse needs no more than this (its cells are in its pack file, `pack_file`).
    """
    merged: dict = {}
    for path in files:
        _merge(merged, load(path))
    _merge(merged, overrides or {})
    where = ", ".join(str(path) for path in files) + (
        " with --config " + ", ".join(sorted(overrides)) if overrides else ""
    )
    problem = schema_problem(merged, schema.schema())
    if problem:
        raise ProfileError(f"{where}: {problem}")
    return fill_defaults(merged), where


def trained_experiments(config: dict) -> list[str]:
    """The experiments a profile trains now (ImageNet ones wait for `imagenet.root`), from its config alone."""
    return [name for name in config["experiments"] if not awaits_imagenet(config, name)]


def pack_file(results: str | os.PathLike, key: str) -> Path:
    """Where the manifest step writes the cells of the training job `key` (its pack): one small file per job, so that
    the job reads its own cells without expanding the grid."""
    return Path(results) / "packs" / f"{key}.json"


def resolve(
    files: list[str | os.PathLike], overrides: dict | None = None, workdir: str | os.PathLike = ".", data: bool = True
) -> Resolved:
    """The profile of `files` (merged in order) with `overrides` (--config KEY=VALUE) on top; ProfileError in one line.

    Strict reading (`load`), the schema, its defaults (`settle`), the semantic checks of `skipinit.config`
    (on data found relative to `workdir`; without `data`, as the compute plan needs, the data
    source and the sizes only it can judge go unchecked), and the expansion into cells and packs,
    done once.
    """
    config, where = settle(files, overrides)
    try:
        check_settings(config)
        planned = experiment_cells(config)
        experiments = {name: planned[name] for name in trained_experiments(config)}
        cells = unique_cells(experiments)
        job_packs = packs(cells, config["pack"])
        check_config(config, planned, cells, job_packs, workdir, data)
    except ConfigError as error:
        raise ProfileError(f"{where}: {error}") from None
    files = tuple(str(path) for path in files)
    return Resolved(files, copy.deepcopy(overrides or {}), config, planned, experiments, cells, job_packs)
