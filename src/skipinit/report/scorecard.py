"""The scorecard: every claim (rows) against every results folder (columns), the page a reader opens first.

Each cell is the claim's verdict on that folder with its deciding finding (the number that decided
it, or why it could not), linked to the claim's figure. The verdicts are read from each folder's
claims.json, as the claims step wrote them: the scorecard judges nothing itself (`make tables`
rebuilds every claims.json from committed Parquet first). A folder without runs.parquet (cells
trained but not aggregated) is still a column: its run claims are not_run, and a note says so.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pandas as pd

from skipinit.claims.judge import load_spec
from skipinit.claims.registry import NOT_REPRODUCED, NOT_RUN, REPRODUCED, VERDICTS
from skipinit.fileio import write_text
from skipinit.vocab import CELL_KEYS

MARKS = {REPRODUCED: "✅", NOT_REPRODUCED: "❌", NOT_RUN: "–"}  # inconclusive: "❔"
KEY_CHARS = 110


def budget_note(folder: Path) -> str:
    """What a folder's numbers reflect: epochs, training subset, seeds, runs; or why it has no runs."""
    runs_path = folder / "runs.parquet"
    if runs_path.exists():
        runs = pd.read_parquet(runs_path)
        subsets = sorted({int(s) for s in runs["train_subset"].fillna(0)})
        subset = (
            "the full training set"
            if subsets == [0]
            else "training subset(s) of " + "/".join(f"{s:,}" if s else "all" for s in subsets) + " images"
        )
        epochs = "/".join(str(int(e)) for e in sorted(runs["epochs"].unique()))
        devices = ", ".join(sorted(runs["device"].astype(str).unique()))
        if "precision" in runs:
            devices += f" ({'/'.join(sorted(runs['precision'].astype(str).unique()))})"
        per_setting = runs.groupby([key for key in CELL_KEYS if key != "seed"], dropna=False)["seed"].nunique()
        low, high = int(per_setting.min()), int(per_setting.max())
        seeds = f"{low} seed(s)" if low == high else f"{low}-{high} seeds"
        return f"{len(runs)} runs, {epochs} epochs, {subset}, {seeds} per setting, on {devices}"
    packs = len(list((folder / "cells").rglob("result.json"))) if (folder / "cells").is_dir() else 0
    signal = "signal claims judged from signal.parquet" if (folder / "signal.parquet").exists() else "no signal.parquet"
    return (
        f"no runs.parquet ({packs} trained pack(s) under cells/, not aggregated: an incomplete run, see its "
        f"PROVENANCE.md): run claims not_run, {signal}"
    )


def key_finding(entry: dict) -> str:
    """The first finding of a verdict's reason: the one that decided it (or why it could not be decided)."""
    first = entry["evidence"]["reason"].split("; ")[0]
    return first if len(first) <= KEY_CHARS else first[: KEY_CHARS - 1] + "…"


def cell(entry: dict, folder: Path, out_dir: Path) -> dict:
    link = os.path.relpath(folder / entry["figures"][0], out_dir) if entry["figures"] else None
    return {"verdict": entry["verdict"], "key": key_finding(entry), "link": link}


def read_claims(path: Path) -> dict[str, dict]:
    """A claims.json by claim id, refused in one line when it is not one."""
    try:
        entries = {entry["id"]: entry for entry in json.loads(path.read_text(encoding="utf-8"))}
        if strange := [
            claim
            for claim, entry in entries.items()
            if entry["verdict"] not in VERDICTS or not entry["evidence"]["reason"]
        ]:
            raise ValueError(f"claims {', '.join(map(str, strange))} have no known verdict or no reason")
        return entries
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such claims file; pass a claims.json the workflow (or `make tables`) wrote"
        ) from None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"{path} is not a claims.json of this package ({type(error).__name__}: {error}); rebuild it "
            "with `python -m skipinit report --results <its folder> --only claims`"
        ) from None


def build(claims_files: list[Path], claims_config: str | Path, out: Path) -> tuple[list[dict], list[dict]]:
    """(claims with their cells per folder, folders with their notes): every claim of `claims_config`, as each
    claims.json judged it."""
    spec = load_spec(claims_config)
    out_dir = Path(out).parent
    columns, rows = (
        [],
        [
            {
                "id": c["id"],
                "statement": c["statement"],
                "source": c["source"],
                "paper": c.get("paper_value"),
                "cells": [],
            }
            for c in spec["claims"]
        ],
    )
    for path in claims_files:
        verdicts, folder = read_claims(path), path.parent
        missing = {
            "verdict": NOT_RUN,
            "figures": [],
            "evidence": {"reason": f"not in {path.name}, judged with an older claims file"},
        }
        entries = [verdicts.get(row["id"], missing) for row in rows]
        counts = {verdict: sum(entry["verdict"] == verdict for entry in entries) for verdict in VERDICTS}
        columns.append({"folder": os.path.relpath(folder, out_dir), "note": budget_note(folder), "counts": counts})
        for row, entry in zip(rows, entries):
            row["cells"].append(cell(entry, folder, out_dir))
    return rows, columns


def markdown_page(rows: list[dict], columns: list[dict], claims_config: str | Path) -> str:
    def md_cell(c: dict) -> str:
        verdict = f"{MARKS.get(c['verdict'], '❔')} **{c['verdict'].replace('_', ' ')}**"
        verdict = f"[{verdict}]({c['link']})" if c["link"] else verdict
        return f"{verdict}: {c['key']}".replace("|", "\\|")

    lines = [
        "# Scorecard: the claims of De & Smith (NeurIPS 2020) and Ioffe & Szegedy (2015)",
        "",
        f"Every claim of `{claims_config}` (rows) as each results folder's `claims.json` (columns) judged it from",
        "its Parquet files, by the checks in `src/skipinit/claims/` (`python -m skipinit scorecard`; `make tables`",
        "rebuilds them and this page). A cell: the verdict, linked to the claim's figure (figures are drawn by",
        "`make tables` / `python -m skipinit report`), and the finding that decided it or why it could",
        "not be decided, with the statistic's 95% interval: it decides (inside the claim's band:",
        "reproduced; outside: not reproduced; straddling: inconclusive, with the seeds that would decide",
        "it). The interval pools the (paired) seeds with the claims file's seed-noise floor for the setting,",
        "each part of a claim at the claim's family level. Each folder's `claims.md` has the full evidence;",
        "each claim's row gives the paper's value where its tables have one (v1: its first arXiv version).",
        "",
        "| results | budget | verdicts |",
        "| --- | --- | --- |",
    ]
    for column in columns:
        counts = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in column["counts"].items())
        lines.append(f"| `{column['folder']}` | {column['note']} | {counts} |")
    lines += ["", "| claim | " + " | ".join(f"`{c['folder']}`" for c in columns) + " |"]
    lines.append("| --- | " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        paper = f" Paper: {row['paper']}." if row["paper"] is not None else ""
        title = f"**{row['id']}**: {row['statement']} ({row['source']}).{paper}".replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {title} | " + " | ".join(md_cell(c) for c in row["cells"]) + " |")
    return "\n".join(lines) + "\n"


def html_page(rows: list[dict], columns: list[dict], claims_config: str | Path) -> str:
    esc = html.escape

    def html_cell(c: dict) -> str:
        verdict = f"{MARKS.get(c['verdict'], '❔')} <b>{esc(c['verdict'].replace('_', ' '))}</b>"
        if c["link"]:
            verdict = f'<a href="{esc(c["link"])}">{verdict}</a>'
        return f'<td class="{esc(c["verdict"])}">{verdict}<br><small>{esc(c["key"])}</small></td>'

    head = "".join(f"<th><code>{esc(c['folder'])}</code><br><small>{esc(c['note'])}</small></th>" for c in columns)
    body = "\n".join(
        f"<tr><td><b>{esc(r['id'])}</b>: {esc(r['statement'])} <small>({esc(r['source'])})"
        + (f"<br>paper: {esc(str(r['paper']))}" if r["paper"] is not None else "")
        + "</small></td>"
        + "".join(html_cell(c) for c in r["cells"])
        + "</tr>"
        for r in rows
    )
    style = (
        "body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
        "table{border-collapse:collapse}.reproduced{background:#e6f4ea}.not_reproduced{background:#fce8e6}"
        ".inconclusive{background:#fef7e0}.not_run{background:#f1f3f4}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>skipinit "
        f"scorecard</title><style>{style}</style></head>"
        f"<body><h1>Scorecard</h1><p>Every claim of <code>{esc(str(claims_config))}</code> as each results folder's "
        "<code>claims.json</code> judged it from its Parquet files (<code>python -m skipinit scorecard</code>).</p>"
        f"<table><tr><th>claim</th>{head}</tr>\n{body}\n</table></body></html>\n"
    )


def write(claims_files: list[str | Path], claims_config: str | Path, out: str | Path) -> list[Path]:
    """The scorecard of `claims_files` (one column each, in order, each once) as Markdown at `out` and HTML next to
    it."""
    out = Path(out)
    unique = [Path(path) for path in dict.fromkeys(os.path.normpath(p) for p in claims_files)]
    rows, columns = build(unique, claims_config, out)
    html_path = out.with_suffix(".html")
    write_text(out, markdown_page(rows, columns, claims_config))
    write_text(html_path, html_page(rows, columns, claims_config))
    return [out, html_path]
