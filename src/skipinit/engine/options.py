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

PACKINGS = tuple(schema.key("packing")["enum"])


def option(name: str):
    """A field whose default, help (`metadata["help"]`) and choices (`metadata["choices"]`) are the schema key's."""
    key = schema.key(name)
    choices = tuple(key["enum"]) if "enum" in key else None
    return dataclasses.field(default=key["default"], metadata={"help": key["description"], "choices": choices})


@dataclasses.dataclass
class EngineOptions:
    device: str = option("device")
    precision: str = option("precision")
    compile: bool = option("compile")
    # Off until a GPU measurement shows the graphed step equal to the eager one and faster (bench/RESULTS.md).
    cuda_graphs: bool = option("cuda_graphs")
    channels_last: bool = option("channels_last")
    deterministic: bool = option("deterministic")
    eval_every: int = option("eval_every")
    divergence_loss: float = option("divergence_loss")
    threads: int = option("threads")
    image_size: int = option("image_size")
    micro_batch: int = option("micro_batch")
    packing: str = option("packing")
    fixup_scalar_lr: float = option("fixup_scalar_lr")
