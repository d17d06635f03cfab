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
LOOK = "look"  # set by `merged`: how many rounds' manifests a merged manifest holds


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


def looks(content: dict) -> int:
    """How many times the profile looks at its claims: its adaptive rounds (skipinit.rounds), 1 without them."""
    return int(((content.get(CONFIG) or {}).get("adaptive") or {}).get("rounds", 1))


def experiment_meta(content: dict) -> dict:
    """{experiment: {kind, description, looks, look}}, as runs.parquet's metadata stores them (looks: the rounds
    after which the claims on it are judged; look: which of them these runs are, 1 for round 1's alone, the number
    of rounds merged otherwise; together they set the alpha its claims are judged at: `claims.stats.look_alpha`)."""
    look = int(content.get(LOOK, 1))
    return {
        name: {"kind": spec["kind"], "description": spec["description"], "looks": looks(content), "look": look}
        for name, spec in content[EXPERIMENTS].items()
    }


def results_folder(path: str | Path, content: dict) -> Path:
    """results/<name>/ of a manifest: its own folder, or three up for a further round's (rounds/<k>/manifest.json)."""
    return Path(path).parent if content.get("round", 1) == 1 else Path(path).parents[2]


def result_files(path: str | Path, content: dict) -> list[Path]:
    """Every training job's result.json, where the train rule writes it (results/<name>/cells/<pack>/):
    aggregation's inputs, derived here rather than passed on a command line that outgrows the system's limit."""
    return [results_folder(path, content) / "cells" / key / "result.json" for key in content[PACKS]]


def merged(contents: list[dict]) -> dict:
    """Round 1's manifest with the cells and packs of the further rounds' added to it (skipinit.rounds)."""
    first, merged_content = contents[0], {**contents[0]}
    merged_content[EXPERIMENTS] = {
        name: {
            **spec,
            "cells": [cell for content in contents for cell in content[EXPERIMENTS].get(name, {}).get("cells", [])],
        }
        for name, spec in first[EXPERIMENTS].items()
    }
    merged_content[PACKS] = {key: cells for content in contents for key, cells in content[PACKS].items()}
    merged_content[LOOK] = len(contents)
    return merged_content
