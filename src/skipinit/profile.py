"""Reading a profile (config/*.yaml) strictly, and saying what is wrong with it in one line.

Snakemake's own YAML loading lets a duplicated key silently win and reports a syntax error
without its file or line, and its schema validation prints the whole schema after the message.
The Snakefile (and `python -m skipinit check-profile`) read the profile files through `load`
first, and report schema violations through `schema_problem`, so every refusal is one line
naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


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
                f"{key_node.start_mark.line + 1}: key {key!r} appears twice (first on line {seen[key] + 1}); keep one of them"
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
        raise ProfileError(f"{path}: a profile is a mapping of keys (name: ..., experiments: ...), not {type(config).__name__}")
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


def check_files(paths: list[str | os.PathLike], schema_path: str | os.PathLike) -> None:
    """Each profile file read strictly and checked against the schema; ProfileError on the first problem."""
    schema = load(schema_path)
    for path in paths:
        problem = schema_problem(load(path), schema)
        if problem:
            raise ProfileError(f"{path}: {problem}")
