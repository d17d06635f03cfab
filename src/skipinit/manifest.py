"""results/<name>/manifest.json: the resolved profile, as the steps after training read it.

Written by the workflow's `manifest` rule from `skipinit.profile.resolve`; aggregation takes each
cell's experiments and the experiments' kinds from it, so nothing downstream expands the grid again.
A leaf module: its readers need neither the schema nor the grid.
"""

from __future__ import annotations

import json
from pathlib import Path

NAME, FILES, OVERRIDES, EXPERIMENTS, PACKS, CONFIG = (
    "name",
    "profile_files",
    "overrides",
    "experiments",
    "packs",
    "config",
)
KEYS = (NAME, FILES, OVERRIDES, EXPERIMENTS, PACKS, CONFIG)


class ManifestError(ValueError):
    """A manifest that cannot be read as one: the message names the file and the fix."""


def read(path: str | Path) -> dict:
    """The manifest at `path`, refused in one line when unreadable or lacking a key."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(
            f"{path}: cannot be read as a manifest ({error}); rebuild it with the workflow (make run)"
        ) from None
    missing = [key for key in KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise ManifestError(
            f"{path} lacks {', '.join(missing)} (another version's manifest): rebuild it with the workflow (make run)"
        )
    return content


def membership(content: dict) -> dict[str, list[str]]:
    """Cell id -> the experiments that use it, in the profile's order."""
    members: dict[str, list[str]] = {}
    for experiment, spec in content[EXPERIMENTS].items():
        for cell in spec["cells"]:
            members.setdefault(cell, []).append(experiment)
    return members


def experiment_meta(content: dict) -> dict:
    """{experiment: {kind, description}}, as runs.parquet's metadata stores them."""
    return {
        name: {"kind": spec["kind"], "description": spec["description"]} for name, spec in content[EXPERIMENTS].items()
    }


def result_files(path: str | Path, content: dict) -> list[Path]:
    """Every training job's result.json, where the train rule writes it beside the manifest (`cells/<pack>/`):
    aggregation's inputs, derived here rather than passed on a command line that outgrows the system's limit."""
    return [Path(path).parent / "cells" / key / "result.json" for key in content[PACKS]]
