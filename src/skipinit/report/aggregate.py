"""Collect per-pack `result.json` files into `runs.parquet` (one row per cell) and `curves.parquet`.

The Parquet files are the hand-off point: figures, tables and claims read nothing else,
so someone else's results can be re-reported without retraining. The experiments a run
belongs to, and their kinds, travel with it (a list column and the file's metadata).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skipinit import manifest
from skipinit.fileio import atomic_path
from skipinit.grid import cell_id, model_label, model_slug, net_slug
from skipinit.record import CURVES_SCHEMA, FAILED, RESULT_SETTINGS, RUNS_SCHEMA, CurvePoint
from skipinit.runtable import METADATA_KEY, PROFILE_KEY, write_parquet
from skipinit.vocab import CELL_KEYS

# What figures, tables and claims read: a Parquet file without these is another version's, or not ours.
REQUIRED_COLUMNS = {
    "runs.parquet": ["cell_id", *CELL_KEYS, "label", "experiments", "status", "diverged", "test_acc", "train_acc"],
    "curves.parquet": ["cell_id", "epoch", "step", "test_acc"],
}


MEMBER = re.compile(r"lr[^/+]+-s\d+")  # grid.member_slug


class DamagedResults(ValueError):
    """A results file that cannot be read as what it claims to be; the message names it and the fix."""


class MixedSettings(ValueError):
    """Runs of one cell (its seeds and lrs) made under different result-affecting settings; the message names them."""


def read_results(path: str | Path) -> list[dict]:
    """A pack's result.json, checked: JSON, a list of results, each with its cell's settings, and the cells its
    folder names (`<shared path>/<member>+<member>/result.json`). A damaged one is moved aside to
    `result.json.damaged`, so that rerunning the same command retrains (or restores) that pack alone.
    """
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
        problem = (
            None
            if isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows)
            else "not a list of results"
        )
        missing = (
            sorted({key for row in rows for key in (*CELL_KEYS, "status", "test_acc") if key not in row})
            if not problem
            else []
        )
        problem = problem or (f"lacks {', '.join(missing)} (written by another version)" if missing else None)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"is truncated or not JSON ({type(error).__name__}: {error})"
    if problem is None:
        found = [cell_id({key: row[key] for key in CELL_KEYS}) for row in rows]
        named = named_cells(path)
        if named is not None and named != found:
            problem = f"holds cells {', '.join(found)}, not the ones its folder names (another profile's)"
    if problem is None:
        return rows
    aside = path.with_name(path.name + ".damaged")
    path.replace(aside)
    raise DamagedResults(
        f"{path} {problem}: moved aside to {aside.name}; rerun the same command to retrain that pack alone "
        "(every other cell is kept)"
    )


def named_cells(path: Path) -> list[str] | None:
    """The cell ids a result.json's folder names (`<dataset>/<net>/<model>/<hyper>/<member>+...`), or None
    outside that layout."""
    members = path.parent.name.split("+")
    if len(path.parent.parts) < 5 or not all(MEMBER.fullmatch(member) for member in members):
        return None
    shared = "/".join(path.parent.parts[-5:-1])
    return [f"{shared}/{member}" for member in members]


def check_parquet(path: str | Path) -> None:
    """runs.parquet or curves.parquet refused in one line when unreadable or without the columns the reports read;
    only its footer is read (a sweep's curves.parquet holds millions of rows)."""
    path = Path(path)
    try:
        columns = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as error:
        raise _unreadable(path, error) from None
    missing = [column for column in REQUIRED_COLUMNS.get(path.name, []) if column not in columns]
    if missing:
        raise DamagedResults(
            f"{path} lacks the columns {', '.join(missing)} (not this package's {path.name}, or an "
            "older version's): rebuild it with the workflow's aggregate rule (make run)"
        )


def read_parquet(path: str | Path) -> pd.DataFrame:
    """runs.parquet or curves.parquet, checked (`check_parquet`)."""
    check_parquet(path)
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> DamagedResults:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return DamagedResults(
        f"{path} is not a readable Parquet file ({reason}): rebuild it from the cells with "
        "the workflow's aggregate rule (make run), or restore it"
    )


def collect(inputs: list[str | Path], content: dict, runs_path: str | Path, curves_path: str | Path) -> pd.DataFrame:
    """Every pack's results as rows of runs.parquet (returned) and curves.parquet, each run with the experiments
    that use its cell (from the profile's manifest, `content`); damaged packs are all named at once.

    Curves are streamed to Parquet a batch of points at a time, so memory stays bounded by the runs (one row
    per cell) whatever the number of curve points (bench/scale.py: 10^5 cells of 200 points). Nothing is
    written unless every pack is readable and the runs' settings agree.
    """
    members = manifest.membership(content)
    runs, damaged, batch = [], [], _CurveBatch()
    metadata = _metadata(content[manifest.NAME], manifest.experiment_meta(content))
    with atomic_path(curves_path) as tmp, pq.ParquetWriter(tmp, CURVES_SCHEMA.with_metadata(metadata)) as writer:
        for path in inputs:
            try:
                results = read_results(path)
            except DamagedResults as error:
                damaged.append(str(error))
                continue
            for result in results:
                curve = result.pop("curve", None) or []
                cell = {key: result[key] for key in CELL_KEYS}
                identity = {
                    "cell_id": cell_id(cell),
                    **cell,
                    "net": net_slug(cell),
                    "model": model_slug(cell),
                    "label": model_label(cell),
                }
                runs.append({**result, **identity, "experiments": members.get(identity["cell_id"], [])})
                batch.add(identity, curve)
            if batch.points >= _BATCH_POINTS:
                writer.write_table(batch.flush())
        if damaged:
            raise DamagedResults("; ".join(damaged))
        check_settings(runs)
        writer.write_table(batch.flush())
    frame = _frame(runs, RUNS_SCHEMA)
    write_parquet(frame, runs_path, content[manifest.NAME], RUNS_SCHEMA, metadata)
    return frame


_BATCH_POINTS = 200_000  # curve points per Parquet batch: a few tens of MB
_CELL_PART = pa.schema([field for field in CURVES_SCHEMA if field.name not in CurvePoint.__dataclass_fields__])
# A point's scheduled lr is `lr` in result.json and `lr_now` in curves.parquet; `lr` stays the cell's, as in
# runs.parquet.
_POINT_PART = pa.schema(
    [
        ("lr", pa.float64()) if field.name == "lr_now" else field
        for field in CURVES_SCHEMA
        if field.name in CurvePoint.__dataclass_fields__
    ]
)


class _CurveBatch:
    """Curve points of some runs, each run's cell settings stored once and repeated into its rows on `flush`."""

    def __init__(self):
        self._empty()

    def _empty(self) -> None:
        self.cells, self.counts, self.rows, self.points = [], [], [], 0

    def add(self, identity: dict, curve: list[dict]) -> None:
        self.cells.append(identity)
        self.counts.append(len(curve))
        self.rows.extend(curve)
        self.points += len(curve)

    def flush(self) -> pa.Table:
        """The batch as curves.parquet rows, in its schema; the batch is emptied."""
        repeat = pa.array(np.repeat(np.arange(len(self.cells)), self.counts))
        cells = pa.Table.from_pylist(self.cells, schema=_CELL_PART).take(repeat)
        points = pa.Table.from_pylist(self.rows, schema=_POINT_PART)
        points = points.rename_columns(["lr_now" if name == "lr" else name for name in points.column_names])
        self._empty()
        return pa.table(
            {
                field.name: (cells if field.name in cells.column_names else points)[field.name]
                for field in CURVES_SCHEMA
            },
            schema=CURVES_SCHEMA,
        )


def check_settings(runs: list[dict]) -> None:
    """Refuse runs of one cell, every cell key but seed and lr (the runs its intervals pool and its best lr
    ranks), made under different RESULT_SETTINGS (a requeue onto a node where `precision: auto` resolves
    otherwise, an edited micro_batch). A setting an older version did not record counts as unknown, not different."""
    made: dict[tuple, dict] = {}
    for run in runs:
        if run.get("status") == FAILED:
            continue
        key = tuple(run[name] for name in CELL_KEYS if name not in ("seed", "lr"))
        for setting in RESULT_SETTINGS:
            if run.get(setting) is not None:
                made.setdefault(key, {}).setdefault(setting, {}).setdefault(run[setting], []).append(run["cell_id"])
    mixed = [(setting, values) for settings in made.values() for setting, values in settings.items() if len(values) > 1]
    if mixed:
        setting, values = mixed[0]
        which = "; ".join(f"{value!r}: {', '.join(cells)}" for value, cells in values.items())
        raise MixedSettings(
            f"runs of one cell were made under different {setting} ({which}){' and more' if len(mixed) > 1 else ''}: "
            "their seeds and lrs cannot be pooled or ranked; retrain those packs under one setting "
            "(delete their result.json and rerun) or set the profile's key so that every run agrees"
        )


def _frame(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    columns = {field.name: [row.get(field.name) for row in rows] for field in schema}
    return pa.table(columns, schema=schema).to_pandas()


def _metadata(profile: str, experiments: dict) -> dict[bytes, bytes]:
    """What both files carry: the profile's name and its `experiments` ({name: {kind, description}})."""
    return {PROFILE_KEY: profile.encode(), METADATA_KEY: json.dumps(experiments).encode()}
