"""Seeds where they decide: the cells each further round of a profile adds (profile key `adaptive:`).

Round 1 trains the grid. After it, every run claim is judged at its look's alpha (0.005 before the last look,
`stats.look_alpha`); a claim still undecided whose every undecided part more seeds can decide at the last look's
alpha (`stats.decide_text` records how many, at the spread measured) asks for that many paired seeds, if that is at
most `max_seeds`, in the models it names, at every setting of its experiments and at each model's lrs within noise of
its best there (`selection.near_best`, where the held-out choice of each seed's lr falls). Claims are served
cheapest first, from the round's own cell times (`wall_seconds`), until the round's `minutes` are spent; a
claim that does not fit waits. The i-th added seed is `first_seed + i - 1` in every model, so added seeds stay
paired across models and rounds.

Looking again cannot raise a claim's error above 5%: the looks spend 0.005 each before the last and the rest,
less a margin for seeds chosen from the first look's data, at the last; a wrong verdict at the end needs a wrong
bound at some look (the union bound; tests/test_calibration.py simulates the rule with the truth on a band's edge).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skipinit import manifest
from skipinit.claims.needs import claim_rows, seed_need, undecided_models
from skipinit.claims.registry import INCONCLUSIVE, SIGNAL
from skipinit.claims.selection import near_best
from skipinit.fileio import write_json
from skipinit.grid import cell_id, packs
from skipinit.profile import pack_file
from skipinit.runtable import scored, trained
from skipinit.vocab import CELL_KEYS

ROUND = "round"  # a round manifest's number (round 1 is results/<name>/manifest.json)
ADDED = "added"  # per claim served: the seeds it asked for and the cells it got
PER_SEED = ("lr", "seed")  # what an added seed varies; everything else of a cell stays


def round_folder(results: str | Path, number: int) -> Path:
    """Where round `number` (>= 2) keeps its manifest and pack files."""
    return Path(results) / "rounds" / str(number)


def plain(value):
    """A runs.parquet value as the JSON type a cell holds."""
    return value.item() if hasattr(value, "item") else value


def claim_cells(
    runs: pd.DataFrame, params: dict, target: int, settings: dict, only: list[str] | None = None
) -> list[dict]:
    """The cells that bring a claim's models (`only` these, where given) to `target` seeds: per model and setting,
    at its lrs within noise of its best, the added seeds it lacks; each with the measured seconds of its model,
    setting and lr."""
    rows = trained(claim_rows(runs, params, only))
    if rows.empty:
        return []
    group = [key for key in CELL_KEYS if key not in PER_SEED]
    added_seeds = [settings["first_seed"] + i for i in range(settings["max_seeds"])]
    cells = []
    for _, setting_rows in rows.groupby(group, dropna=False):
        best = float(scored(setting_rows).groupby("lr")["score"].mean().idxmax())
        lrs = near_best(setting_rows, params, best)
        for lr in lrs:
            at_lr = setting_rows[setting_rows["lr"] == lr]
            have = set(int(seed) for seed in at_lr["seed"])
            missing = [seed for seed in added_seeds if seed not in have][: max(0, target - len(have))]
            template = {key: plain(at_lr.iloc[0][key]) for key in CELL_KEYS}
            seconds = float(at_lr["wall_seconds"].mean()) if "wall_seconds" in at_lr else 0.0
            experiments = list(dict.fromkeys(name for names in at_lr["experiments"] for name in names))
            for seed in missing:
                cell = {**template, "lr": float(lr), "seed": int(seed)}
                cells.append({"cell": cell, "seconds": seconds, "experiments": experiments})
    return cells


def plan_round(verdicts: list[dict], runs: pd.DataFrame, spec: dict, settings: dict) -> tuple[list[dict], list[dict]]:
    """(cells to add, what each claim asked and got) for one further round within `settings["minutes"]`."""
    budget = 60.0 * float(settings["minutes"])
    wanted = []
    for verdict in verdicts:
        claim = next(c for c in spec["claims"] if c["id"] == verdict["id"])
        need = seed_need(verdict["evidence"].get("needs", []))
        if verdict["verdict"] != INCONCLUSIVE or claim["data"] == SIGNAL or need is None or need[0] <= need[1]:
            continue
        target = need[0]
        if target > int(settings["max_seeds"]):
            why = f"needs {target} seeds, over adaptive.max_seeds ({settings['max_seeds']})"
            wanted.append({"claim": verdict["id"], "seeds": target, "served": False, "why": why})
            continue
        used = set(verdict["evidence"].get("experiments", []))
        rows = runs[runs["experiments"].map(lambda names, used=used: bool(set(names) & used))]
        params = {"models": spec.get("models", {}), "noise": spec.get("noise"), **claim["params"]}
        needs = verdict["evidence"]["needs"]
        if undecided_models(needs):  # each undecided model to the seeds its own estimate asks for
            targets = {}
            for part in needs:
                targets[part["model"]] = max(targets.get(part["model"], 0), part["seeds"])
            cells = [
                cell for model, seeds in targets.items() for cell in claim_cells(rows, params, seeds, settings, [model])
            ]
        else:
            cells = claim_cells(rows, params, target, settings)
        wanted.append({"claim": verdict["id"], "seeds": need[0], "target": target, "cells": cells})
    chosen: dict[str, dict] = {}
    spent = 0.0
    for entry in sorted((w for w in wanted if "cells" in w), key=lambda w: sum(c["seconds"] for c in w["cells"])):
        new = {cell_id(c["cell"]): c for c in entry["cells"] if cell_id(c["cell"]) not in chosen}
        cost = sum(c["seconds"] for c in new.values())
        entry["served"] = bool(new) and spent + cost <= budget
        entry["core_seconds"] = round(cost, 1)
        if entry["served"]:
            chosen.update(new)
            spent += cost
        else:
            entry["why"] = (
                "nothing to add" if not new else f"needs {cost / 60:.1f} core-min; {budget - spent:.0f} s left"
            )
    log = [{key: value for key, value in entry.items() if key != "cells"} for entry in wanted]
    for entry, full in zip(log, wanted):
        if entry.get("served"):
            entry["cells"] = [cell_id(c["cell"]) for c in full["cells"]]
    return list(chosen.values()), log


def write_round(
    results: str | Path, number: int, first: dict, cells: list[dict], log: list[dict], pack_size: int
) -> dict:
    """Round `number`'s manifest (the keys of results/<name>/manifest.json, with only its own cells and packs) and
    its pack files, under `round_folder`; returns the manifest."""
    folder = round_folder(results, number)
    by_id = {cell_id(c["cell"]): c["cell"] for c in cells}
    job_packs = packs(by_id, pack_size)
    experiments = {
        name: {**spec, "cells": [cell_id(c["cell"]) for c in cells if name in c["experiments"]]}
        for name, spec in first[manifest.EXPERIMENTS].items()
    }
    content = {
        **{key: first[key] for key in (manifest.NAME, manifest.FILES, manifest.OVERRIDES, manifest.CONFIG)},
        manifest.EXPERIMENTS: experiments,
        manifest.PACKS: {key: [cell_id(cell) for cell in members] for key, members in job_packs.items()},
        ROUND: number,
        ADDED: log,
    }
    (folder / "packs").mkdir(parents=True, exist_ok=True)  # the checkpoint's output, also where nothing is added
    for key, members in job_packs.items():
        write_json(pack_file(folder, key), members)
    write_json(folder / "manifest.json", content)
    return content
