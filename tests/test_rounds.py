"""Seeds where they decide (skipinit.rounds): which cells a further round adds, within its budget, paired."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skipinit import manifest, rounds
from skipinit.claims.judge import judge
from skipinit.cli import main
from skipinit.grid import cell_id
from skipinit.runtable import METADATA_KEY, PROFILE_KEY

from test_claims import CLAIM, CLAIMS_FILE, SPEC
from test_tables import curves_of, run_row, runs_frame

SETTINGS = {"rounds": 2, "minutes": 30, "max_seeds": 4, "first_seed": 100}
EXPERIMENTS = {"depth": {"kind": "depth", "description": "", "looks": 2, "look": 1}}  # round 1's runs


def depth_runs(skipinit_acc: float = 24.0, seeds=(0,)) -> pd.DataFrame:
    """The depth study at 100 layers (the setting of a measured floor): batch norm trains clearly, alpha = 1 and
    unnormalized diverge, SkipInit near the band's edge (trains from chance + 8 = 18%)."""
    rows = []
    for seed in seeds:
        common = {
            "depth": 100,
            "lr": 0.1,
            "seed": seed,
            "epochs": 4,
            "batch_size": 64,
            "width": 1,
            "train_subset": 2560,
        }
        rows += [
            run_row(40.0, variant="batchnorm", **common),
            run_row(skipinit_acc, variant="skipinit", alpha_init="0", **common),
            run_row(skipinit_acc, variant="skipinit", alpha_init="1/sqrt(d)", **common),
            run_row(0.0, diverged=True, variant="skipinit", alpha_init="1", **common),
            run_row(0.0, diverged=True, variant="unnormalized", **common),
        ]
    frame = runs_frame(rows)
    frame["test_images"], frame["test_subset"] = 2000.0, 2000  # the measured floor's setting
    frame["precision"] = "bf16"
    frame["wall_seconds"] = 60.0
    return frame


def first_manifest(runs: pd.DataFrame) -> dict:
    """Round 1's manifest of `runs`: one experiment, each cell a pack of its own."""
    return {
        manifest.NAME: "t",
        manifest.FILES: [],
        manifest.OVERRIDES: {},
        manifest.EXPERIMENTS: {"depth": {"kind": "depth", "description": "", "cells": sorted(runs["cell_id"])}},
        manifest.PACKS: {cell: [cell] for cell in runs["cell_id"]},
        manifest.CONFIG: {"adaptive": SETTINGS, "pack": 4, "packing": "sequential"},
    }


def verdicts_of(runs: pd.DataFrame) -> list[dict]:
    claims = [CLAIM["depth-small-alpha-trains"], CLAIM["depth-unnormalized-fails"]]
    return [judge(claim, runs, pd.DataFrame(), EXPERIMENTS, SPEC["models"], noise=SPEC["noise"]) for claim in claims]


def test_an_undecided_claim_gets_paired_seeds_in_its_undecided_models_and_nothing_else():
    runs = depth_runs()
    verdicts = verdicts_of(runs)
    assert [v["verdict"] for v in verdicts] == ["inconclusive", "inconclusive"]
    cells, added = rounds.plan_round(verdicts, runs, SPEC, SETTINGS)
    served = {entry["claim"]: entry for entry in added}
    assert served["depth-small-alpha-trains"]["served"] and served["depth-unnormalized-fails"]["served"]
    # only the models whose own estimates are undecided (SkipInit alpha 0 and 1/sqrt(d)), not batch norm nor the
    # diverged nets, whose failing is decided
    seeds = {}
    for c in cells:
        seeds.setdefault((c["cell"]["variant"], c["cell"]["alpha_init"]), set()).add(c["cell"]["seed"])
    assert set(seeds) == {("skipinit", "0"), ("skipinit", "1/sqrt(d)")}
    # paired: every model's added seeds are first_seed, first_seed + 1, ..., up to the seeds its estimate asks for
    first, asked = SETTINGS["first_seed"], served["depth-small-alpha-trains"]["seeds"]
    assert all(added == set(range(first, first + asked - 1)) for added in seeds.values())
    assert sum(c["seconds"] for c in cells) == sum(entry["core_seconds"] for entry in added if entry["served"])
    # a claim that asks for more seeds than max_seeds allows gets nothing
    none, refused = rounds.plan_round(verdicts, runs, SPEC, {**SETTINGS, "max_seeds": 1})
    assert none == [] and all("max_seeds" in entry["why"] for entry in refused)


def test_the_round_spends_no_more_than_its_minutes():
    runs = depth_runs()
    verdicts = verdicts_of(runs)
    cells, added = rounds.plan_round(verdicts, runs, SPEC, {**SETTINGS, "minutes": 1.5})
    # cheapest first: depth-unnormalized-fails' one cell (1 core-minute) fits, depth-small-alpha-trains' one more not
    assert [c["cell"]["alpha_init"] for c in cells] == ["0"]
    cells, added = rounds.plan_round(verdicts, runs, SPEC, {**SETTINGS, "minutes": 0.5})
    assert cells == [] and "core-min" in next(e for e in added if e["claim"] == "depth-small-alpha-trains")["why"]
    none, _ = rounds.plan_round(verdicts, runs, SPEC, {**SETTINGS, "minutes": 0})
    assert none == []


def test_a_decided_claim_and_a_claim_no_seed_count_decides_get_nothing():
    decided = depth_runs(skipinit_acc=35.0)
    assert {v["verdict"] for v in verdicts_of(decided)} == {"reproduced"}
    assert rounds.plan_round(verdicts_of(decided), decided, SPEC, SETTINGS)[0] == []
    on_edge = depth_runs(skipinit_acc=18.0)  # the mean on the band's edge: no seed count decides it
    cells, added = rounds.plan_round(verdicts_of(on_edge), on_edge, SPEC, SETTINGS)
    assert cells == [] and not any(entry.get("served") for entry in added)


def test_a_round_manifest_adds_its_cells_to_the_first_and_its_packs_hold_them(tmp_path):
    runs = depth_runs()
    cells, added = rounds.plan_round(verdicts_of(runs), runs, SPEC, SETTINGS)
    first = first_manifest(runs)
    content = rounds.write_round(tmp_path, 2, first, cells, added, pack_size=4)
    path = rounds.round_folder(tmp_path, 2) / "manifest.json"
    assert json.loads(path.read_text())[rounds.ROUND] == 2
    assert manifest.result_files(path, content)[0].parent.parent.parts[: len(tmp_path.parts)] == tmp_path.parts
    assert str(manifest.result_files(path, content)[0]).startswith(str(tmp_path / "cells"))
    merged = manifest.merged([first, content])
    assert set(merged[manifest.EXPERIMENTS]["depth"]["cells"]) == set(runs["cell_id"]) | {
        cell_id(c["cell"]) for c in cells
    }
    packed = [
        cell
        for key in content[manifest.PACKS]
        for cell in json.loads((tmp_path / "rounds/2/packs" / f"{key}.json").read_text())
    ]
    assert {cell_id(cell) for cell in packed} == {cell_id(c["cell"]) for c in cells}
    assert manifest.experiment_meta(merged)["depth"]["looks"] == 2


def test_the_add_seeds_command_writes_the_round_the_claims_ask_for(tmp_path):
    """`python -m skipinit add-seeds` as the checkpoint runs it: round 1's Parquet files, its manifest and the
    claims file in; round 2's manifest and pack files out, under results/<name>/rounds/2/."""
    results = tmp_path / "results" / "t"
    results.mkdir(parents=True)
    runs = depth_runs()
    metadata = {PROFILE_KEY: b"t", METADATA_KEY: json.dumps(EXPERIMENTS).encode()}
    for frame, name in ((runs, "runs.parquet"), (curves_of(runs), "curves.parquet")):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.replace_schema_metadata(metadata), results / name)
    first = first_manifest(runs)
    (results / "manifest.json").write_text(json.dumps(first))
    out = results / "rounds" / "2" / "manifest.json"
    arguments = ["add-seeds", "--round", "2", "--runs", str(results / "runs.parquet")]
    arguments += ["--curves", str(results / "curves.parquet"), "--manifest", str(results / "manifest.json")]
    main([*arguments, "--claims-config", str(CLAIMS_FILE), "--out", str(out)])
    content = manifest.read(out)
    added = {cell for cells in content[manifest.PACKS].values() for cell in cells}
    expected, _ = rounds.plan_round(verdicts_of(runs), runs, SPEC, SETTINGS)
    assert added == {cell_id(c["cell"]) for c in expected} and added
    assert all((results / "rounds" / "2" / "packs" / f"{key}.json").is_file() for key in content[manifest.PACKS])
    # sequential packing: each added cell a job of its own, so that a round's few cells run side by side
    assert all(len(cells) == 1 for cells in content[manifest.PACKS].values())
    with pytest.raises(SystemExit, match="rounds/2/manifest.json"):
        main([*arguments, "--claims-config", str(CLAIMS_FILE), "--out", str(tmp_path / "elsewhere.json")])
