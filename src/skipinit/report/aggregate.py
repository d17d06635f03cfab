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
from skipinit.grid import cell_id, experiment_cells, model_label, model_slug, net_slug
from skipinit.record import CURVES_SCHEMA, RUNS_SCHEMA
from skipinit.vocab import CELL_KEYS

METADATA_KEY = b"skipinit.experiments"

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
