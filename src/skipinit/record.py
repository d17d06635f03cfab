"""One result record: what a training job reports per cell, and the Parquet schemas derived from it.

The trainer fills a `RunResult` per cell (a failed pack fills it through `RunResult.failed`), the
job adds its provenance, `result.json` stores `cell | record`, and `report.aggregate` writes the
same fields as columns of runs.parquet: adding a metric is one field here.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from skipinit.vocab import CELL_SETTINGS

FAILED = "failed"  # a status: the run failed for a reason other than training (out of memory, a device error)

_ARROW_OF_KIND = {
    "str": pa.string(),
    "alpha": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}
CELL_COLUMNS = [(setting.name, _ARROW_OF_KIND[setting.kind]) for setting in CELL_SETTINGS]
IDENTITY_COLUMNS = [
    ("net", pa.string()),
    ("model", pa.string()),
    ("label", pa.string()),
]  # derived from the cell (grid)


def _column(arrow_type: pa.DataType, default=None, **kwargs):
    return field(default=default, metadata={"arrow": arrow_type}, **kwargs)


@dataclass
class CurvePoint:
    """One epoch of one cell; test metrics are None where the epoch was not evaluated."""

    epoch: int = _column(pa.int64())
    step: int = _column(pa.int64())  # global steps done at the epoch's end
    lr_now: float = _column(pa.float64())  # learning rate of the epoch's last step
    train_loss: float = _column(pa.float64())  # mean over the epoch's steps
    train_acc: float = _column(pa.float64())
    test_loss: float | None = _column(pa.float64())
    test_acc: float | None = _column(pa.float64())
    seconds: float = _column(pa.float64())  # wall seconds since the pack started, all sessions


@dataclass
class RunResult:
    """The outcome of one cell (its settings travel beside it in result.json)."""

    status: str = _column(pa.string(), "ok")  # ok | diverged | failed
    diverged: bool = _column(pa.bool_(), False)
    diverged_step: int | None = _column(pa.int64())  # 0-based global step of the first bad loss
    error: str | None = _column(pa.string())  # a failed pack's reason and hint
    test_acc: float | None = _column(pa.float64())  # percent, last evaluation
    test_loss: float | None = _column(pa.float64())
    test_images: int | None = _column(pa.int64())  # what test_acc was measured on: the whole test set
    test_correct: str | None = _column(pa.string())  # per-image correctness of that evaluation (pack_hits)
    train_loss: float | None = _column(pa.float64())  # mean over the last epoch's steps
    train_acc: float | None = _column(pa.float64())
    epochs_completed: int = _column(pa.int64(), 0)
    steps: int = _column(pa.int64(), 0)
    wall_seconds: float | None = _column(pa.float64())  # this pack, all sessions
    images_per_second: float | None = _column(pa.float64())  # the pack's training throughput, all members
    pack_size: int = _column(pa.int64(), 1)
    device: str = _column(pa.string(), "cpu")
    packing: str | None = _column(pa.string())  # how the pack ran: plain (one member), channels or vmap
    # The engine settings that change a cell's numbers, as they ran (RESULT_SETTINGS):
    precision: str = _column(pa.string(), "fp32")  # engine.runtime.resolve_precision: never `auto`
    micro_batch: int | None = _column(pa.int64())  # examples per forward (vocab.micro_batch_size)
    channels_last: bool | None = _column(pa.bool_())
    deterministic: bool | None = _column(pa.bool_())
    image_size: int | None = _column(pa.int64())
    fixup_scalar_lr: float | None = _column(pa.float64())
    torch_version: str = _column(pa.string(), "")
    git_commit: str | None = _column(pa.string())  # stamped by the job
    dataset_sha256: str | None = _column(pa.string())  # stamped by the job
    curve: list[dict] = field(default_factory=list)  # CurvePoint dicts; curves.parquet, not runs.parquet

    @classmethod
    def failed(cls, error: str, **context) -> RunResult:
        return cls(status=FAILED, error=error, **context)

    def row(self, cell: dict) -> dict:
        """The cell's result.json entry: its settings, then this record."""
        return {**cell, **dataclasses.asdict(self)}


# The recorded engine settings that change a cell's numbers: one cell's seeds and lrs must share them
# (`report.aggregate` refuses a folder where they differ) and a checkpoint resumes only under the same.
RESULT_SETTINGS = ("precision", "micro_batch", "channels_last", "deterministic", "image_size", "fixup_scalar_lr")


def pack_hits(hits) -> str:
    """Per-image correctness (bool, in the test set's order) as base64 of its packed bits: 1,668 characters for
    CIFAR-10's 10,000 images, so that two models can be paired image by image on any subset."""
    return base64.b64encode(np.packbits(np.asarray(hits, dtype=bool)).tobytes()).decode("ascii")


def unpack_hits(text: str, images: int) -> np.ndarray:
    """`pack_hits`' bits back as a bool vector of `images` entries."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=int(images)).astype(bool)


def _arrow_fields(record_type) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.metadata["arrow"]) for f in dataclasses.fields(record_type) if "arrow" in f.metadata]


RUNS_SCHEMA = pa.schema(
    [
        ("cell_id", pa.string()),
        *CELL_COLUMNS,
        *IDENTITY_COLUMNS,
        ("experiments", pa.list_(pa.string())),
        *_arrow_fields(RunResult),
    ]
)
CURVES_SCHEMA = pa.schema([("cell_id", pa.string()), *CELL_COLUMNS, *IDENTITY_COLUMNS, *_arrow_fields(CurvePoint)])
