"""Collect per-pack `result.json` files into `runs.parquet` (one row per cell) and `curves.parquet`.

The Parquet files are the hand-off point: figures, tables and claims read nothing else,
so someone else's results can be re-reported without retraining. The experiments a run
belongs to, and their kinds, travel with it (a list column and the file's metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skipinit.fileio import atomic_path
from skipinit.grid import CELL_KEYS, cell_id, experiment_cells, model_label, model_slug, net_slug

METADATA_KEY = b"skipinit.experiments"

_CELL_TYPES = {
    "dataset": pa.string(), "arch": pa.string(), "depth": pa.int64(), "width": pa.int64(), "variant": pa.string(),
    "alpha_init": pa.string(), "ghost_batch_size": pa.int64(), "dropout": pa.float64(), "batch_size": pa.int64(),
    "lr": pa.float64(), "seed": pa.int64(), "epochs": pa.int64(), "weight_decay": pa.float64(), "momentum": pa.float64(),
    "nesterov": pa.bool_(), "schedule": pa.string(), "train_subset": pa.int64(),
    "test_subset": pa.int64(),
}
assert tuple(_CELL_TYPES) == CELL_KEYS, "every cell key needs a Parquet type"

RUNS_SCHEMA = pa.schema(
    [("cell_id", pa.string()), *_CELL_TYPES.items(), ("net", pa.string()), ("model", pa.string()), ("label", pa.string()),
     ("experiments", pa.list_(pa.string())), ("status", pa.string()), ("diverged", pa.bool_()), ("diverged_step", pa.int64()),
     ("error", pa.string()), ("test_acc", pa.float64()), ("test_loss", pa.float64()), ("train_loss", pa.float64()),
     ("train_acc", pa.float64()), ("epochs_completed", pa.int64()), ("steps", pa.int64()), ("wall_seconds", pa.float64()),
     ("images_per_second", pa.float64()), ("pack_size", pa.int64()), ("micro_batch", pa.int64()), ("device", pa.string()),
     ("precision", pa.string()),
     ("torch_version", pa.string()), ("git_commit", pa.string()), ("dataset_sha256", pa.string())]
)
CURVES_SCHEMA = pa.schema(
    [("cell_id", pa.string()), *_CELL_TYPES.items(), ("net", pa.string()), ("model", pa.string()), ("label", pa.string()),
     ("epoch", pa.int64()), ("step", pa.int64()), ("lr_now", pa.float64()), ("train_loss", pa.float64()), ("train_acc", pa.float64()),
     ("test_loss", pa.float64()), ("test_acc", pa.float64()), ("seconds", pa.float64())]
)


def experiment_meta(plan: dict) -> dict:
    """{experiment: {kind, description}} as stored in the Parquet metadata."""
    return {name: {"kind": spec.get("kind", "generic"), "description": spec.get("description", "")} for name, spec in plan.get("experiments", {}).items()}


def membership(plan: dict) -> dict[str, list[str]]:
    """Cell id -> the experiments that use it."""
    members: dict[str, list[str]] = {}
    for experiment, cells in experiment_cells(plan).items():
        for cell in cells:
            members.setdefault(cell_id(cell), [])
            if experiment not in members[cell_id(cell)]:
                members[cell_id(cell)].append(experiment)
    return members


def collect(inputs: list[str | Path], plan: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    members = membership(plan)
    runs, curves = [], []
    for path in inputs:
        for result in json.loads(Path(path).read_text()):
            cell = {key: result[key] for key in CELL_KEYS}
            identity = {"cell_id": cell_id(cell), **cell, "net": net_slug(cell), "model": model_slug(cell), "label": model_label(cell)}
            runs.append({**result, **identity, "experiments": members.get(identity["cell_id"], [])})
            for point in result.get("curve", []):
                curves.append({**identity, **point, "lr_now": point.get("lr")})
    return _frame(runs, RUNS_SCHEMA), _frame(curves, CURVES_SCHEMA)


def _frame(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    columns = {field.name: [row.get(field.name) for row in rows] for field in schema}
    return pa.table(columns, schema=schema).to_pandas()


def write(runs: pd.DataFrame, curves: pd.DataFrame, runs_path, curves_path, experiments: dict) -> None:
    for frame, schema, path in ((runs, RUNS_SCHEMA, runs_path), (curves, CURVES_SCHEMA, curves_path)):
        table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(experiments).encode()})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)


def read_experiment_meta(runs_path: str | Path) -> dict:
    metadata = pq.read_schema(runs_path).metadata or {}
    return json.loads(metadata.get(METADATA_KEY, b"{}"))


def runs_of(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment."""
    return runs[runs["experiments"].map(lambda names: experiment in list(names))]
