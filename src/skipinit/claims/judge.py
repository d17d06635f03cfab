"""Judge every claim of the claims file on a results folder; write claims.json and claims.md there."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from skipinit.claims.markdown import markdown
from skipinit.claims.registry import CHECKS, SIGNAL  # filled by the check modules the package imports
from skipinit.claims.signal_checks import NO_SIGNAL
from skipinit.fileio import write_json, write_text
from skipinit.report.aggregate import read_experiment_meta, runs_of
from skipinit.signal import FIGURE_STEM

SIGNAL_FIGURE = f"figures/{FIGURE_STEM}.png"


def load_spec(path: str | Path) -> dict:
    """The claims file, checked so that a typo fails with one line before any claim is judged."""
    spec = yaml.safe_load(Path(path).read_text())
    ids = [claim["id"] for claim in spec["claims"]]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise ValueError(f"{path}: duplicate claim ids {', '.join(duplicates)}")
    for claim in spec["claims"]:
        if claim["check"] not in CHECKS:
            raise ValueError(
                f"{path}: claim {claim['id']} names check {claim['check']!r}; known: {', '.join(sorted(CHECKS))}"
            )
    return spec


def judge(claim: dict, runs: pd.DataFrame, signal: pd.DataFrame, experiments: dict, models: dict) -> dict:
    """One claim's entry in claims.json: its verdict, the evidence, and the figures it is read from."""
    if claim["data"] == SIGNAL:
        frame, params = signal, claim["params"]
        figures = [SIGNAL_FIGURE] if not signal.empty else []
        used = []
    else:
        kinds = [claim["data"]] if isinstance(claim["data"], str) else claim["data"]
        used = [
            name for name, meta in experiments.items() if meta.get("kind") in kinds and not runs_of(runs, name).empty
        ]
        frame = runs[runs["experiments"].map(lambda names: bool(set(names) & set(used)))]
        params = {"models": models, **claim["params"]}
        figures = [f"figures/{name}.png" for name in used]
    verdict, evidence = CHECKS[claim["check"]](frame, params)
    if claim["data"] != SIGNAL:
        evidence = {"experiments": used, **evidence}
    return {
        "id": claim["id"],
        "statement": claim["statement"],
        "source": claim["source"],
        "check": claim["check"],
        "verdict": verdict,
        "evidence": jsonable(evidence),
        "paper_value": claim.get("paper_value"),
        "figures": figures,
    }


def jsonable(value):
    """Plain JSON values: numpy scalars unwrapped, floats to 4 significant digits, NaN and inf as null."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return value


def write(results: Path, claims_config: str | Path) -> None:
    """Judge every claim of `claims_config` on `results`; write claims.json and claims.md there.

    Reads runs.parquet, and signal.parquet where present (its claims are not run otherwise).
    """
    results = Path(results)
    spec = load_spec(claims_config)
    runs = pd.read_parquet(results / "runs.parquet")
    signal_path = results / "signal.parquet"
    signal = pd.read_parquet(signal_path) if signal_path.exists() else NO_SIGNAL
    experiments = read_experiment_meta(results / "runs.parquet")
    verdicts = [judge(claim, runs, signal, experiments, spec.get("models", {})) for claim in spec["claims"]]
    write_json(results / "claims.json", verdicts)
    write_text(results / "claims.md", markdown(verdicts, claims_config))
