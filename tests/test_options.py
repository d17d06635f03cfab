"""The engine's options have one set of defaults, the schema's: EngineOptions and `skipinit train` take theirs from
it."""

import dataclasses
from pathlib import Path

import yaml

from skipinit import cli
from skipinit.engine.options import EngineOptions

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text()
)
FIELDS = {field.name: field for field in dataclasses.fields(EngineOptions)}
REQUIRED = ["--cells", "[]", "--dataset", "d", "--out", "o", "--checkpoint", "c"]


def test_every_engine_option_is_a_documented_profile_key_with_the_same_default():
    for name, field in FIELDS.items():
        key = SCHEMA["properties"].get(name)
        assert key is not None, f"EngineOptions.{name} has no profile key"
        assert key["description"] and key["default"] == field.default, name
        assert key.get("enum") == (list(field.metadata["choices"]) if field.metadata["choices"] else None), name


def test_the_cli_defaults_are_the_engine_defaults():
    args = cli.build_parser().parse_args(["train", *REQUIRED])
    assert {name: getattr(args, name) for name in FIELDS} == dataclasses.asdict(EngineOptions())


def test_every_engine_option_reaches_the_engine_from_the_cli():
    changed = {
        "device": "cpu",
        "precision": "fp32",
        "compile": True,
        "cuda_graphs": True,
        "channels_last": False,
        "deterministic": True,
        "eval_every": 3,
        "divergence_loss": 5.0,
        "threads": 2,
        "image_size": 64,
        "micro_batch": 8,
        "packing": "vmap",
        "fixup_scalar_lr": 0.5,
    }
    assert changed.keys() == FIELDS.keys() and all(changed[name] != field.default for name, field in FIELDS.items())
    flags = []
    for name, value in changed.items():
        flag = name.replace("_", "-")
        flags += (
            [f"--{flag}" if value is True else f"--no-{flag}"] if isinstance(value, bool) else [f"--{flag}", str(value)]
        )
    args = cli.build_parser().parse_args(["train", *REQUIRED, *flags])
    assert {name: getattr(args, name) for name in FIELDS} == changed
