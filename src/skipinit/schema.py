"""The profile schema (workflow/schemas/config.schema.yaml): the one home of every profile key's default.

A leaf module: the vocabulary's cell-setting defaults, the engine options' defaults and help,
and validation (`skipinit.profile`) all read them from the schema here, so no default is written
twice.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def key(name: str) -> dict:
    """The schema of one top-level profile key (its type, default, description)."""
    return schema()["properties"][name]


def default(name: str):
    """The default of one top-level profile key."""
    return key(name)["default"]


def cell_setting_defaults() -> dict:
    """Every cell setting's default: the profile's `training:` defaults, and the profile's dataset."""
    training = key("training")["properties"]
    return {"dataset": default("dataset"), **{name: spec["default"] for name, spec in training.items()}}
