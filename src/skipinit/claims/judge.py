"""Judge every claim of the claims file on one profile's Parquet files; write claims.json and claims.md."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from skipinit.claims.markdown import markdown
from skipinit.claims.needs import named_models, to_decide
from skipinit.claims.registry import (
    CHECKS,
    INCONCLUSIVE,
    NOT_RUN,
    SIGNAL,
)  # filled by the check modules the package imports
from skipinit.claims.signal_checks import NO_SIGNAL
from skipinit.claims.stats import ALPHA, collecting_needs, family, look_alpha
from skipinit.fileio import write_json, write_text
from skipinit.runtable import failed, read_curves, read_experiment_meta, runs_of, scored, trained
from skipinit.vocab import SIGNAL_FIGURE_STEM

SIGNAL_FIGURE = f"figures/{SIGNAL_FIGURE_STEM}.png"
PAPER_EPOCHS, PAPER_IMAGES = 200, 50_000  # the paper's CIFAR-10 budget: what a regime's distance is measured against
NO_CURVES = pd.DataFrame(
    {"cell_id": pd.Series(dtype=str), "step": pd.Series(dtype=int), "test_acc": pd.Series(dtype=float)}
)


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
    noise = spec.get("noise") or {}
    if missing := [key for key in ("floors", "unmeasured_widening", "widening_source") if key not in noise]:
        raise ValueError(
            f"{path}: `noise:` lacks {', '.join(missing)} (the seed-noise floors every interval pools with)"
        )
    keys = ("where", "gap_sd_pp", "gap_df", "accuracy_sd_pp", "accuracy_df", "source")
    for index, floor in enumerate(noise["floors"] or [None]):
        if not isinstance(floor, dict) or (absent := [key for key in keys if key not in floor]):
            raise ValueError(
                f"{path}: noise.floors[{index}] must give {', '.join(keys)}"
                + (f" (lacks {', '.join(absent)})" if isinstance(floor, dict) else "")
            )
    return spec


def judge(
    claim: dict,
    runs: pd.DataFrame,
    signal: pd.DataFrame,
    experiments: dict,
    models: dict,
    curves: pd.DataFrame | None = None,
    noise: dict | None = None,
) -> dict:
    """One claim's entry in claims.json: its verdict, the evidence, and the figures it is read from.

    A run check gets the claims file's `models`, its `noise` model (the seed-noise floors of
    single-seed decisions) and the runs' learning curves (`curves`, empty without curves.parquet)
    in its params, next to the claim's own thresholds. It never sees a run that failed for a reason
    other than training; a claim that needs one is inconclusive and names it (`needed_failures`).
    """
    failures, short = [], 0
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
        frame, short = within_budget(frame, claim["params"].get("min_epochs"))
        failures, frame = needed_failures(failed(frame), claim["params"], models), trained(frame)
        params = {
            "models": models,
            "noise": noise,
            "curves": NO_CURVES if curves is None else curves,
            **claim["params"],
        }
        figures = [f"figures/{name}.png" for name in used]
    looks = max((int(experiments[name].get("looks", 1)) for name in used), default=1)
    look = min((int(experiments[name].get("look", looks)) for name in used), default=looks)
    verdict, evidence = judged_as_a_family(CHECKS[claim["check"]], frame, params, look, looks)
    if claim["data"] != SIGNAL and (outside := outside_regime(frame, params, models)):
        alone = f"the runs alone would say {verdict.replace('_', ' ')}: {evidence.get('reason', '')}"
        reason = (
            f"{evidence.get('reason', '')}; {outside['reason']}"
            if verdict == INCONCLUSIVE
            else f"{outside['reason']} ({alone})"
        )
        evidence = {key: value for key, value in evidence.items() if key != "needs"}  # no seed count reaches it
        verdict, evidence = (
            INCONCLUSIVE,
            {**evidence, "regime": outside, "reason": reason, "to_decide": outside["reach"]},
        )
    elif verdict == INCONCLUSIVE:
        evidence = {**evidence, **to_decide(evidence, frame, params, short)}
    if failures:
        verdict, evidence = failed_runs_verdict(verdict, evidence, failures)
    if claim["data"] != SIGNAL:
        evidence = {"experiments": used, **({"runs_under_budget_left_out": short} if short else {}), **evidence}
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


def judged_as_a_family(check, frame: pd.DataFrame, params: dict, look: int = 1, looks: int = 1) -> tuple[str, dict]:
    """A claim of k parts judged at look `look` of `looks` (its profile's adaptive rounds): each part holds at the
    look's alpha and fails at alpha/k (`stats.within`; set-valued parts at alpha/(2k) per set), so the claim is
    wrongly reproduced, and wrongly refuted, at most 5% of the time each: a first pass counts the parts, the second
    decides them. The seeds that would decide each undecided part at the last look are kept (`needs`, for
    skipinit.rounds)."""
    with family(1, look, looks), collecting_needs() as needs:
        verdict, evidence = check(frame, params)
    parts = int(evidence.get("parts", 1))
    if parts > 1:
        with family(parts, look, looks), collecting_needs() as needs:
            verdict, evidence = check(frame, params)
        parts = max(parts, int(evidence.get("parts", 1)))
    if look < looks and verdict == INCONCLUSIVE:  # the seeds a later round adds must decide at the last look
        with family(parts, looks, looks), collecting_needs() as needs:
            check(frame, params)
    alpha = look_alpha(look, looks)
    looked = f" at look {look} of {looks}" if looks > 1 else ""
    return verdict, {
        **evidence,
        **({"needs": needs} if needs and verdict == INCONCLUSIVE else {}),
        "interval_level": (
            f"a part holds at one-sided alpha {alpha:.3g}, fails at {alpha / parts:.3g} ({parts} part(s){looked}; the "
            f"claim wrongly reproduced or refuted at most {100 * ALPHA:g}% of the time each)"
        ),
    }


def outside_regime(frame: pd.DataFrame, params: dict, models: dict) -> dict | None:
    """Why the runs lie outside the regime the claim speaks of (`regime:` in its params), or None where they do not.

    `min_train_acc_pp`: every model the claim names reaches this final training accuracy at its best lr, at each
    setting (nets trained near convergence, as the paper's 200 epochs train them); `matched_fit_pp`: their
    training accuracies there lie within this of each other (a comparison of generalization at matched fit). An
    underfit net never decides such a claim: outside the regime it is inconclusive, with what would reach it.
    """
    regime = params.get("regime") or {}
    if not regime or frame.empty:
        return None
    fits = training_fits(frame, named_models(params, models), models)
    if fits.empty:
        return None
    problems = []
    if (needed := regime.get("min_train_acc_pp")) is not None and (low := fits[fits["train_acc"] < needed]).size:
        worst = low.sort_values("train_acc").iloc[0]
        others = f"; {len(low) - 1} more model-setting(s) below it" if len(low) > 1 else ""
        problems.append(
            f"{worst['model']} reaches {worst['train_acc']:.1f}% training accuracy at its best lr after "
            f"{int(worst['epochs'])} epochs on {int(worst['train_images'])} images ({worst['where']}), under the "
            f"{needed:g}% of nets trained near convergence{others}"
        )
    if (matched := regime.get("matched_fit_pp")) is not None:
        spread = fits.groupby("where")["train_acc"].agg(lambda acc: acc.max() - acc.min())
        if (unmatched := spread[spread > matched]).size:
            problems.append(
                f"the models' training accuracies differ by {unmatched.max():.1f} pp ({unmatched.idxmax()}), more "
                f"than the {matched:g} pp of a comparison at matched fit"
            )
    if not problems:
        return None
    longest = fits.loc[fits["epochs"].idxmax()]
    reach = (
        f"the paper trains {PAPER_EPOCHS} epochs on {PAPER_IMAGES:,} images, "
        f"{PAPER_EPOCHS * PAPER_IMAGES / (longest['epochs'] * longest['train_images']):.0f}x the images seen here"
    )
    return {
        "train_accuracy": fits.drop(columns="where").to_dict("records"),
        "reason": f"outside the paper's regime at this budget: {'; '.join(problems)} ({reach})",
        "reach": f"outside the paper's regime at this budget: {reach}, so that every net trains near convergence",
    }


def training_fits(frame: pd.DataFrame, names: list[str], models: dict) -> pd.DataFrame:
    """Per named model and setting: the mean final training accuracy over seeds at the lr of its best test score."""
    keys = [key for key in ("depth", "width", "batch_size", "epochs", "train_subset") if key in frame]
    records = []
    for name in names:
        for setting, rows in scored(frame.query(models[name])).groupby(keys):
            means = rows.groupby("lr")[["score", "train_acc"]].mean()
            best = means.loc[means["score"].idxmax()]
            where = ", ".join(f"{key} {value}" for key, value in zip(keys, setting))
            images = dict(zip(keys, setting)).get("train_subset") or PAPER_IMAGES
            epochs = dict(zip(keys, setting)).get("epochs", 1)
            records.append(
                {
                    "model": name,
                    "where": where,
                    "train_acc": float(best["train_acc"]),
                    "epochs": epochs,
                    "train_images": images,
                }
            )
    return pd.DataFrame.from_records(records)


def needed_failures(failures: pd.DataFrame, params: dict, models: dict) -> list[dict]:
    """The failed runs a claim needs: those of the models its params name (every one where it names none)."""
    named = set(named_models(params, models))
    if named and not failures.empty:
        failures = failures[failures.index.isin([i for name in named for i in failures.query(models[name]).index])]
    return [{"cell_id": row["cell_id"], "error": row.get("error")} for _, row in failures.iterrows()]


def failed_runs_verdict(verdict: str, evidence: dict, failures: list[dict]) -> tuple[str, dict]:
    """A claim that needs runs which failed for a reason other than training is undecided: those cells
    might have changed any part of it. Its verdict becomes inconclusive (not_run stays), naming them."""
    reason = (
        f"{len(failures)} run(s) this claim needs failed for a reason other than training, so they are no "
        f"evidence ({failures[0]['error']}): {', '.join(f['cell_id'] for f in failures)}; rerun them (make run "
        "retrains only the failed packs)"
    )
    return (verdict if verdict == NOT_RUN else INCONCLUSIVE), {
        **evidence,
        "failed_runs": failures,
        "reason": f"{reason}; {evidence.get('reason', '')}".rstrip("; "),
    }


def within_budget(frame: pd.DataFrame, min_epochs: int | None) -> tuple[pd.DataFrame, int]:
    """The runs a claim needing `min_epochs` may be judged on, and how many shorter runs were left out.

    A claim whose data mixes budgets (a 10-epoch regularization study beside a 2-epoch batch-size
    sweep) is judged on the long runs alone, so that no comparison pairs a long run with a short one.
    Where no run is long enough all stay, and the check says the budget is too short.
    """
    if not min_epochs or frame.empty:
        return frame, 0
    long_enough = frame["epochs"] >= min_epochs
    return (frame[long_enough], int((~long_enough).sum())) if long_enough.any() else (frame, 0)


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


def judge_files(runs_path: Path | None, curves_path: Path | None, signal_path: Path | None, spec: dict) -> list[dict]:
    """Every claim of `spec` judged on one profile's Parquet files: runs, and curves and signal where given and present.

    Without runs.parquet (cells trained but not aggregated) every run claim is not_run; the signal
    claims are judged wherever signal.parquet is.
    """
    present = {
        name: Path(path) if path and Path(path).exists() else None
        for name, path in (("runs", runs_path), ("curves", curves_path), ("signal", signal_path))
    }
    signal = pd.read_parquet(present["signal"]) if present["signal"] else NO_SIGNAL
    curves = read_curves(present["curves"]) if present["curves"] else NO_CURVES
    if present["runs"]:
        runs, experiments = pd.read_parquet(present["runs"]), read_experiment_meta(present["runs"])
    else:
        runs, experiments = pd.DataFrame({"experiments": pd.Series(dtype=object)}), {}
    models = spec.get("models", {})
    verdicts = [judge(claim, runs, signal, experiments, models, curves, spec.get("noise")) for claim in spec["claims"]]
    if not present["runs"]:
        for entry in verdicts:
            if entry["evidence"].get("experiments") == []:
                entry["evidence"]["reason"] = "no runs.parquet in this results folder (trained cells not aggregated)"
    return verdicts


def write(
    runs_path: Path | None,
    curves_path: Path | None,
    signal_path: Path | None,
    claims_config: str | Path,
    json_path: Path,
    md_path: Path,
) -> None:
    """Judge every claim of `claims_config` (`judge_files`); write claims.json and claims.md.

    Each entry records the claims file's sha256 (`claims_sha256`): which registered thresholds it was judged by.
    """
    digest = hashlib.sha256(Path(claims_config).read_bytes()).hexdigest()
    verdicts = [
        {**entry, "claims_sha256": digest}
        for entry in judge_files(runs_path, curves_path, signal_path, load_spec(claims_config))
    ]
    write_json(json_path, verdicts)
    write_text(md_path, markdown(verdicts, claims_config))
