"""claims.md: the verdicts as a Markdown table linked to their figures, then each claim's evidence."""

from __future__ import annotations

import json
from pathlib import Path

from skipinit.claims.registry import VERDICTS


def markdown(verdicts: list[dict], claims_config: str | Path) -> str:
    """claims.md: one table row per claim, linked to its figures, then each claim's evidence."""
    counts = {verdict: sum(v["verdict"] == verdict for v in verdicts) for verdict in VERDICTS}
    lines = [
        "# Claims of De & Smith (NeurIPS 2020): verdicts",
        "",
        "Computed from `runs.parquet`, `curves.parquet` and `signal.parquet` by the checks in",
        f"`src/skipinit/claims/`, with the thresholds of `{claims_config}`. Inconclusive: the profile is",
        "too small to decide (the evidence says why, and how many seeds would decide it); not run: the",
        "profile has no data for it. Every decided statistic carries one-sided bounds (`ci`, `ci_level`), and",
        "they decide (an intersection-union test): a claim is reproduced when every part holds, a part holding",
        "where its bound(s) at alpha lie inside its band; it is not reproduced when a part fails, its bound at",
        "alpha/k (k parts) lying outside. alpha is 0.05, or where the profile adds seeds in rounds 0.005 at each",
        "earlier look and the rest, less 0.005, at the last (`interval_level`). An accuracy is the paper's quantity,",
        "on the whole",
        "test set; it or a gap pools its (paired) seeds' spread with the seed-noise floor the claims file measured",
        "for its setting (widened where none was), as a t-interval on the pooled degrees of freedom (`method`); fits",
        "are over seeds. A gap at the best lrs takes each seed's lr from the other seeds (`lr_by_seed`), or with one",
        "seed is simultaneous over the lrs within noise of the best (a one-sided subset selection). Optimal learning",
        "rates are ranges over those lrs, so learning-rate and depth ratios are ranges. A claim about nets trained",
        "to convergence is inconclusive outside that regime (`regime`). `paper value`: the paper's number (v1: its",
        "first arXiv version's tables); each band's origin is in the claims file (`band_source`).",
        "",
        "Summary: " + ", ".join(f"{count} {verdict.replace('_', ' ')}" for verdict, count in counts.items()) + ".",
        "",
        "| id | claim | verdict | key evidence | paper value | source | figures |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        links = ", ".join(f"[{Path(figure).stem}]({figure})" for figure in v["figures"]) or "-"
        paper = "-" if v["paper_value"] is None else v["paper_value"]
        cells = [
            f"[{v['id']}](#{v['id']})",
            v["statement"],
            f"**{v['verdict'].replace('_', ' ')}**",
            v["evidence"]["reason"]
            + (f"; **to decide**: {v['evidence']['to_decide']}" if v["evidence"].get("to_decide") else ""),
            paper,
            v["source"],
            links,
        ]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    lines += ["", "## Evidence", ""]
    for v in verdicts:
        lines += [
            f"### {v['id']}",
            "",
            f"{v['statement']} ({v['source']}; check `{v['check']}`): **{v['verdict'].replace('_', ' ')}**.",
            "",
            "```json",
            json.dumps(v["evidence"], indent=1),
            "```",
            "",
        ]
    return "\n".join(lines)
