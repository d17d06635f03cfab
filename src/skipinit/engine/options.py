"""How the engine runs a pack (not what it trains).

Every field is a profile key of the same name, whose default, help and allowed values are the
profile schema's (workflow/schemas/config.schema.yaml, read through `skipinit.schema`): nothing
here restates them. Each field is also a `skipinit train --<field-name>` flag (cli.py builds them
from these fields) and reaches the engine through common.smk's `engine_flags()`;
tests/test_options.py holds them to one another.
"""

from __future__ import annotations

import dataclasses

from skipinit import schema
from skipinit.record import RESULT_SETTINGS

PACKINGS = tuple(schema.key("packing")["enum"])


def option(name: str):
    """A field whose default, help (`metadata["help"]`) and choices (`metadata["choices"]`) are the schema key's."""
    key = schema.key(name)
    choices = tuple(key["enum"]) if "enum" in key else None
    return dataclasses.field(default=key["default"], metadata={"help": key["description"], "choices": choices})


# The profile keys that say how the engine runs. cuda_graphs stays off by default until a GPU
# measurement shows the graphed step equal to the eager one and faster (bench/RESULTS.md).
ENGINE_KEYS = (
    "device",
    "precision",
    "compile",
    "cuda_graphs",
    "channels_last",
    "deterministic",
    "eval_every",
    "divergence_loss",
    "threads",
    "image_size",
    "micro_batch",
    "packing",
    "fixup_scalar_lr",
)

EngineOptions = dataclasses.make_dataclass(
    "EngineOptions",
    [(name, type(schema.default(name)), option(name)) for name in ENGINE_KEYS],
    namespace={
        "__doc__": "How the engine runs a pack: one field per key of ENGINE_KEYS, typed and defaulted as the schema "
        "says."
    },
)
EngineOptions.__module__ = __name__  # make_dataclass names its caller's module only from Python 3.12


def result_settings(options: EngineOptions, device_type: str, precision: str, micro_batch: int, packing: str) -> dict:
    """What a pack's numbers depend on besides its cells, resolved as it runs (precision never `auto`):
    recorded in its checkpoint (a resume under other settings starts over) and the RESULT_SETTINGS in each row."""
    return {
        "device": device_type,
        "precision": precision,
        "micro_batch": micro_batch,
        "packing": packing,
        **{key: getattr(options, key) for key in RESULT_SETTINGS if key not in ("precision", "micro_batch")},
    }


def changed_settings(saved: dict | None, now: dict) -> str | None:
    """Which result-affecting settings differ between a checkpoint's and this run's, in words, or None."""
    if saved is None:
        return "none recorded (an older version's checkpoint)"
    changed = [f"{key} {saved.get(key)!r} then, {value!r} now" for key, value in now.items() if saved.get(key) != value]
    return "; ".join(changed) or None
