"""The package's vocabulary: every name a profile may use, and every rule about those names, once.

Validation (`config`), the cell grid (`grid`), the models and the engine all import from here,
so adding a variant, a schedule or a cell setting is one edit. A cell setting is described by a
`Setting`: its type and allowed range (its default is the schema's, read through `skipinit.schema`); `Setting.check` is
the one check that a value from
`training:`, a `models:` entry or a `grid:` list item passes before it becomes part of a cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from skipinit import schema

VARIANTS = (
    "batchnorm",
    "skipinit",
    "unnormalized",
    "scaled",
    "fixup",
    "plain",
)  # plain: unnormalized, no skip connections
ARCHS = ("wrn", "resnet50_v2")
SCHEDULES = ("halving", "step", "cosine")
PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the device computes it natively, else fp32
EXPERIMENT_KINDS = ("depth", "batch_size", "regularization", "imagenet", "trainability", "generic")
# trainability: a sweep over many depths and a few lrs; which depths each model still trains at
SIGNAL_FIGURE_STEM = (
    "signal_propagation"  # results/<name>/figures/<stem>.{png,pdf}: the signal rule's, read by the claims
)
SIGNAL_MODELS = ("linear-unnormalized", "linear-batchnorm", "conv-batchnorm", "conv-skipinit", "conv-unnormalized")
PACKED_KEYS = ("lr", "seed")  # members of one pack differ only in these
ALPHA_SQRT_D = "1/sqrt(d)"  # SkipInit's upper bound on alpha for d residual blocks
WRN_DEPTHS = "6N+4 with N >= 1 (10, 16, 22, 28, 34, 40, ..., 100, ..., 1000, ...)"


def wrn_residual_blocks(depth: int) -> int:
    """Residual blocks (3N) of a Wide-ResNet of depth 6N+4: two convs per block, plus stem, head and shortcuts."""
    if not is_wrn_depth(depth):
        raise ValueError(f"Wide-ResNet depth must be {WRN_DEPTHS}, got depth={depth}")
    return 3 * ((depth - 4) // 6)


def is_wrn_depth(depth: int) -> bool:
    return depth >= 10 and (depth - 4) % 6 == 0


def canonical_alpha(value) -> str:
    """SkipInit's alpha init as a canonical string: a finite number (`0`, `0.5`) or `1/sqrt(d)`."""
    if isinstance(value, str) and value.replace(" ", "").lower() == ALPHA_SQRT_D:
        return ALPHA_SQRT_D
    if isinstance(value, bool):
        raise ValueError(f"alpha_init={value!r} is a boolean")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"alpha_init={value!r} is not finite")
    return f"{number:g}"


def alpha_value(alpha_init: float | str, num_blocks: int) -> float:
    """The initial alpha as a number, for a network of `num_blocks` residual blocks."""
    if canonical_alpha(alpha_init) == ALPHA_SQRT_D:
        return 1.0 / math.sqrt(num_blocks)
    return float(alpha_init)


def micro_batch_problem(batch_size: int, micro_batch: int, ghost_batch_size: int) -> str | None:
    """Why `micro_batch` cannot split this batch into equal forward/backward passes, or None.

    0 means whole batches; a batch no larger than `micro_batch` runs whole. A larger one must
    split evenly, and into whole ghost batches, so that accumulating the micro-batches' gradients
    gives exactly the whole batch's gradient.
    """
    if micro_batch == 0 or batch_size <= micro_batch:
        return None
    if batch_size % micro_batch:
        return f"micro_batch={micro_batch} does not divide batch_size={batch_size}"
    if ghost_batch_size and micro_batch % ghost_batch_size:
        return f"micro_batch={micro_batch} is not a multiple of ghost_batch_size={ghost_batch_size}"
    return None


@dataclass(frozen=True)
class Setting:
    """One per-cell setting: its type and allowed values (its default is the schema's, `CELL_DEFAULTS`).

    `kind` is bool, int, float, str or "alpha" (a number or `1/sqrt(d)`). Booleans are accepted
    only as booleans and integers only as integers (a YAML `1.5` for an int or `"true"` for a bool
    is refused, not coerced); floats accept integers and must be finite.
    """

    name: str
    kind: str
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    below: float | None = None  # exclusive upper bound
    maximum: float | None = None  # inclusive
    choices: tuple[str, ...] | None = None

    def allowed(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        if self.kind == "alpha":
            return f"a finite number or '{ALPHA_SQRT_D}'"
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum:g}")
        if self.above is not None:
            bounds.append(f"> {self.above:g}")
        if self.below is not None:
            bounds.append(f"< {self.below:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        noun = {"bool": "true or false", "int": "an integer", "float": "a finite number", "str": "a string"}[self.kind]
        return noun + (" " + " and ".join(bounds) if bounds else "")

    def check(self, value):
        """`value` in the setting's canonical type; ValueError naming what is allowed otherwise."""
        refusal = ValueError(f"{self.name}={value!r} is not allowed; allowed: {self.allowed()}")
        if self.kind == "alpha":
            try:
                return canonical_alpha(value)
            except (TypeError, ValueError):
                raise refusal from None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise refusal
            return value
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise refusal
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refusal
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise refusal
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise refusal
        if (
            (self.minimum is not None and value < self.minimum)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
            or (self.maximum is not None and value > self.maximum)
        ):
            raise refusal
        return value


CELL_SETTINGS = (
    Setting("dataset", "str"),
    Setting("arch", "str", choices=ARCHS),
    Setting("depth", "int", minimum=1),
    Setting("width", "int", minimum=1),
    Setting("variant", "str", choices=VARIANTS),
    Setting("alpha_init", "alpha"),
    Setting("ghost_batch_size", "int", minimum=0),
    Setting("dropout", "float", minimum=0, below=1),
    Setting("batch_size", "int", minimum=1),
    Setting("lr", "float", above=0),
    Setting("seed", "int", minimum=0),
    Setting("epochs", "int", minimum=1),
    Setting("weight_decay", "float", minimum=0),
    Setting("momentum", "float", minimum=0, maximum=1),
    Setting("nesterov", "bool"),
    Setting("schedule", "str", choices=SCHEDULES),
    Setting("train_subset", "int", minimum=0),
    Setting("test_subset", "int", minimum=0),
)
SETTINGS = {setting.name: setting for setting in CELL_SETTINGS}
_SCHEMA_DEFAULTS = schema.cell_setting_defaults()
CELL_DEFAULTS = {
    setting.name: SETTINGS[setting.name].check(_SCHEMA_DEFAULTS[setting.name]) for setting in CELL_SETTINGS
}
CELL_KEYS = tuple(CELL_DEFAULTS)


def micro_batch_size(batch_size: int, micro_batch: int) -> int:
    """Examples per forward/backward: `micro_batch` where it splits the batch evenly, else the whole batch."""
    if micro_batch <= 0 or micro_batch >= batch_size:
        return batch_size
    if batch_size % micro_batch:
        raise ValueError(
            f"micro_batch={micro_batch} does not divide batch_size={batch_size}; choose a divisor, or micro_batch: 0"
        )
    return micro_batch


def check_pack(cells: list[dict]) -> None:
    """Members of a pack may differ only in lr and seed: everything else is one computation."""
    first = cells[0]
    for cell in cells[1:]:
        differing = sorted(k for k in CELL_DEFAULTS if k not in PACKED_KEYS and cell[k] != first[k])
        if differing:
            raise ValueError(
                f"cells of one pack may differ only in {', '.join(PACKED_KEYS)}; these differ too: "
                f"{', '.join(differing)}"
            )
