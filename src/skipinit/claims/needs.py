"""What would decide an undecided claim, in numbers: the seeds, epochs or depth it needs and what they cost here.

Costs come from the profile's own runs (`wall_seconds` in runs.parquet, the cells' measured training time), so
a claim says how many core-minutes (GPU-minutes on a GPU) of this profile's training would decide it. The seed
counts are those of the claim's undecided parts (`stats.decide_text` records them, `stats.collecting_needs`);
skipinit.rounds adds seeds from the same numbers.
"""

from __future__ import annotations

import pandas as pd

from skipinit.runtable import trained


def named_models(params: dict, models: dict) -> list[str]:
    """The models of the claims file's `models:` that a claim's params name, in the order they name them."""
    return list(dict.fromkeys(value for value in _strings(params) if value in models))


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return []


def claim_rows(runs: pd.DataFrame, params: dict, only: list[str] | None = None) -> pd.DataFrame:
    """The runs of the models a claim names (`only` these, where given; all of `runs` where it names none)."""
    models = params.get("models", {})
    names = only or named_models({key: value for key, value in params.items() if key != "models"}, models)
    if not names or runs.empty:
        return trained(runs)
    picked = [trained(runs).query(models[name]) for name in names]
    return pd.concat(picked).drop_duplicates("cell_id") if picked else runs.iloc[:0]


def undecided_models(needs: list[dict]) -> list[str] | None:
    """The models whose own estimates are undecided, where every undecided part is one model's (a trains/fails
    finding); None where a part compares models (a gap), whose seeds must stay paired across all of them."""
    models = [need.get("model") for need in needs]
    return list(dict.fromkeys(models)) if models and all(models) else None


def seed_need(needs: list[dict]) -> tuple[int, int] | None:
    """(seeds that decide every undecided part, seeds the claim has) where more seeds can decide it, else None."""
    if not needs or any(need["seeds"] is None for need in needs):
        return None
    return max(need["seeds"] for need in needs), min(need["have"] for need in needs)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} core-min" if seconds < 600 else f"{seconds / 3600:.2f} core-h"


def to_decide(evidence: dict, runs: pd.DataFrame, params: dict, short: int = 0) -> dict:
    """`to_decide`: a sentence with the seeds, epochs or depth that would decide the claim and their cost at the
    profile's measured speed; empty where the evidence names nothing that more of the same runs could change."""
    rows = claim_rows(runs, params)
    models = params.get("models", {})
    named = named_models({key: value for key, value in params.items() if key != "models"}, models)
    present = [name for name in named if not rows.empty and not trained(rows).query(models[name]).empty]
    seconds = float(rows["wall_seconds"].sum()) if "wall_seconds" in rows and len(rows) else 0.0
    seeds = max(1, int(rows["seed"].nunique())) if len(rows) else 1
    need = seed_need(evidence.get("needs", []))
    if need and (only := undecided_models(evidence["needs"])):
        rows = claim_rows(runs, params, only)  # seeds go to the undecided models alone
        seconds = float(rows["wall_seconds"].sum()) if "wall_seconds" in rows and len(rows) else 0.0
        seeds = max(1, int(rows["seed"].nunique())) if len(rows) else 1
    epochs, min_epochs = evidence.get("epochs"), params.get("min_epochs")
    if need and need[0] > need[1]:
        extra = need[0] - need[1]
        what = f"the {plural(len(rows), 'run')} it compares" if seconds else "the signal study"
        text = f"{need[0]} paired seeds ({extra} more) of {what}"
        if seconds:
            text += f": about {minutes(seconds / seeds * extra)} of training at this profile's measured speed"
    elif evidence.get("needs") and not need:
        text = (
            "no seed count at this budget: the small-scale value sits on the band's edge (a longer budget, deeper or "
            "wider nets move it), or a test subset's term is as wide as the band (the whole test set removes it)"
        )
    elif epochs and min_epochs and epochs < min_epochs:
        text = (
            f"its {plural(len(rows), 'run')} at {min_epochs} epochs instead of {epochs}: about "
            f"{minutes(seconds * min_epochs / epochs)} of training at this profile's measured speed"
        )
    elif params.get("min_depth") and len(rows) and rows["depth"].max() < params["min_depth"]:
        deepest = rows[rows["depth"] == rows["depth"].max()]
        depth = int(rows["depth"].max())
        cost = float(deepest["wall_seconds"].sum()) * params["min_depth"] / depth
        text = (
            f"its {plural(len(deepest), 'run')} at depth {params['min_depth']} instead of {depth}: about "
            f"{minutes(cost)} of training at this profile's measured speed (time grows with depth)"
        )
    elif missing := [name for name in named if name not in present]:
        cost = seconds / max(1, len(present)) * len(missing)
        text = (
            f"runs of {', '.join(missing)}, as many as those of {', '.join(present) or 'the models it names'} here "
            f"(about {minutes(cost)} of training at this profile's measured speed), would give it evidence"
        )
    else:
        return {}
    if short:
        text += f" ({short} shorter runs were left out)"
    return {"to_decide": text}
