"""Tables in the paper's form: accuracy (mean +- std over seeds) at the best learning rate.

The best learning rate of a (model, depth, batch size) group is the one with the highest
mean final test accuracy over seeds; a diverged run counts as what it scored (NaN as 0),
so an lr that diverges on some seeds is not picked for its lucky ones. A run that failed for
another reason (out of memory, a device error) is no evidence and is left out (`runtable.trained`).

Each experiment gets one table per format: Markdown and LaTeX in the paper's wide form
(a row per model, a column per depth or batch size, cells `acc ± std (lr)`), and CSV in the
long form (a row per group, every number), for machines.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from skipinit.fileio import write_text
from skipinit.runtable import best_lr_summary, read_experiment_meta, runs_of, trained

GROUP_KEYS = {
    "depth": ["label", "depth", "width", "batch_size"],
    "trainability": ["label", "depth", "width", "batch_size"],
    "batch_size": ["label", "batch_size", "depth", "width"],
    "regularization": ["label", "depth", "width", "batch_size"],
    "imagenet": ["label", "batch_size"],
    "generic": ["label", "depth", "width", "batch_size"],
}
# The setting a kind varies, which becomes the wide table's columns.
COLUMN_OF_KIND = {
    "depth": "depth",
    "trainability": "depth",
    "batch_size": "batch_size",
    "regularization": "batch_size",
    "imagenet": "batch_size",
}
COLUMN_TITLES = {"depth": "depth {}", "batch_size": "batch {}"}
TABLE_FORMATS = ("md", "tex", "csv")
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def summary(runs: pd.DataFrame, experiment: str, kind: str) -> pd.DataFrame:
    return best_lr_summary(runs_of(runs, experiment), GROUP_KEYS.get(kind, GROUP_KEYS["generic"]))


def cell_text(row: pd.Series) -> str:
    """`93.1 ± 0.2 (n=3, lr 0.1)`: mean ± sd over n seeds, no ± from one seed; `diverged` when every run at the
    best lr did (so at every lr)."""
    if row["diverged_runs"] >= row["seeds"]:
        return "diverged"
    text = f"{row['test_acc_mean']:.1f}"
    if row["seeds"] > 1:
        text += f" ± {row['test_acc_std']:.1f}"
    text += f" (n={int(row['seeds'])}, lr {row['best_lr']:g}"
    if row["diverged_runs"]:
        text += f"; {int(row['diverged_runs'])}/{int(row['seeds'])} diverged"
    return text + ")"


def paper_form(frame: pd.DataFrame, kind: str, model_order: list[str] | None = None) -> pd.DataFrame:
    """Wide table as in the paper: a row per model (in `model_order`), a column per value of the varied setting."""
    if frame.empty:
        return pd.DataFrame({"model": []})
    frame = frame.assign(cell=frame.apply(cell_text, axis=1))
    column = COLUMN_OF_KIND.get(kind)
    if column is None:
        long = frame[["label", "depth", "width", "batch_size", "cell"]]
        return long.rename(columns={"label": "model", "cell": "test accuracy % (best lr)"})
    wide = frame.pivot_table(index="label", columns=column, values="cell", aggfunc="first")
    wide = wide.reindex([label for label in (model_order or sorted(wide.index)) if label in wide.index])
    wide.columns = [COLUMN_TITLES[column].format(value) for value in wide.columns]
    return wide.fillna("-").reset_index().rename(columns={"label": "model"})


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def render(frame: pd.DataFrame, fmt: str, caption: str) -> str:
    if fmt == "md":
        return f"{caption}\n\n" + frame.to_markdown(index=False) + "\n"
    if fmt == "tex":
        return frame.to_latex(index=False, caption=latex_escape(caption), escape=True).replace("±", r"$\pm$") + "\n"
    if fmt == "csv":
        return frame.to_csv(index=False)
    raise ValueError(f"unknown table format {fmt!r}")


def budget_of(runs: pd.DataFrame) -> str:
    """What a table's numbers reflect: epochs, training images, seeds (a 2-epoch gap is not the paper's 200-epoch
    one)."""
    if runs.empty:
        return ""
    epochs = "/".join(str(int(e)) for e in sorted(runs["epochs"].unique()))
    subsets = sorted({int(s) for s in runs["train_subset"].fillna(0)})
    images = (
        "the full training set"
        if subsets == [0]
        else "a training subset of " + "/".join(f"{s:,}" if s else "all" for s in subsets) + " images"
    )
    seeds = int(runs["seed"].nunique())
    return f"Budget: {epochs} epoch(s) on {images}, {seeds} seed(s) per cell."


def caption_of(experiment: str, meta: dict, frame: pd.DataFrame, runs: pd.DataFrame | None = None) -> str:
    """The table's caption: what a cell holds, over how many seeds, and the budget it reflects."""
    seeds = sorted(frame["seeds"].astype(int).unique()) if not frame.empty else []
    spread = (
        "from a single seed (n=1)" if seeds == [1] else f"mean ± sd over n = {'/'.join(map(str, seeds)) or 'the'} seeds"
    )
    budget = budget_of(runs) if runs is not None else ""
    return (
        (
            f"{experiment}: final test accuracy in percent, {spread}, at the best learning rate (in brackets); "
            f"diverged runs count as 0. {budget} {meta.get('description', '')}"
        )
        .replace("  ", " ")
        .strip()
    )


def paper_table(paper_path: str | Path | None, kind: str) -> str:
    """The paper's own numbers for an experiment kind (config/paper_v1.yaml) as a Markdown table, or "" where it has
    none."""
    if not paper_path:
        return ""
    section = (yaml.safe_load(Path(paper_path).read_text()) or {}).get(kind)
    if not section:
        return ""
    lines = [
        section["caption"].strip(),
        "",
        "| model | " + " | ".join(section["columns"]) + " |",
        "| --- | " + " | ".join("---" for _ in section["columns"]) + " |",
    ]
    lines += [f"| {model} | " + " | ".join(cells) + " |" for model, cells in section["rows"].items()]
    return "\n" + "\n".join(lines) + "\n"


def write_tables(
    runs_path: Path, experiment: str, outputs: dict[str, Path], paper: str | Path | None = None
) -> list[Path]:
    """One experiment's table in each format of `outputs` ({md, tex, csv}: path); the CSV is the long, machine-readable
    form. The Markdown one ends with the paper's own numbers for the experiment's kind, where `paper` has them."""
    runs = trained(pd.read_parquet(runs_path))
    meta = read_experiment_meta(runs_path)[experiment]
    kind = meta["kind"]
    frame = summary(runs, experiment, kind)
    rows = runs_of(runs, experiment)
    model_order = list(dict.fromkeys(rows["label"]))  # as the profile lists them
    caption = caption_of(experiment, meta, frame, rows)
    for fmt, path in outputs.items():
        text = render(frame if fmt == "csv" else paper_form(frame, kind, model_order), fmt, caption)
        write_text(path, text + (paper_table(paper, kind) if fmt == "md" else ""))
    return [Path(path) for path in outputs.values()]
