"""The provenance line of a figure: which profile, data, network, budget and seeds it comes from.

Plain Python over rows (runs.parquet records or the profile's cells, which share their keys), so
that the Snakemake report captions can state the same line at parse time without matplotlib.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping


def provenance(profile: str, *parts: str) -> str:
    """`profile <name> · part · part ...`, empty parts left out."""
    return " · ".join([f"profile {profile}", *(part for part in parts if part)])


def values_text(values: Iterable) -> str:
    """`16/100` for the distinct values, sorted (numbers as `%g`)."""
    distinct = sorted(set(values))
    return "/".join(f"{value:g}" if isinstance(value, numbers.Number) else str(value) for value in distinct)


def seeds_text(seeds: Iterable) -> str:
    """`1 seed (0)`, `4 seeds (0, 100, 101, 102)`, `8 seeds (0-4, 100-102)`: how many seeds a figure averages over,
    and which (runs of three or more consecutive seeds as ranges once there are more than four)."""
    distinct = sorted({int(seed) for seed in seeds})
    if not distinct:
        return ""
    if len(distinct) <= 4:
        which = ", ".join(map(str, distinct))
    else:
        runs: list[list[int]] = []
        for seed in distinct:
            if runs and seed == runs[-1][-1] + 1:
                runs[-1].append(seed)
            else:
                runs.append([seed])
        which = ", ".join(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)) for run in runs)
    return f"{len(distinct)} seed{'s' if len(distinct) > 1 else ''} ({which})"


def experiment_line(profile: str, rows: Iterable[Mapping]) -> str:
    """The provenance of an experiment's figure from its rows (runs or cells): data, net, epochs, batch, lrs, seeds."""
    rows = list(rows)
    if not rows:
        return provenance(profile, "no runs")

    def column(key):
        return [row[key] for row in rows]

    lrs = sorted(set(column("lr")))
    lr = f"lr {lrs[0]:g} (one value)" if len(lrs) == 1 else f"lr grid {lrs[0]:g}-{lrs[-1]:g} ({len(lrs)} values)"
    epochs = values_text(column("epochs"))
    return provenance(
        profile,
        values_text(column("dataset")),
        f"{values_text(a.upper() for a in column('arch'))} depth {values_text(column('depth'))}, "
        f"width {values_text(column('width'))}",
        f"{epochs} epoch{'' if epochs == '1' else 's'}",
        f"batch {values_text(column('batch_size'))}",
        lr,
        seeds_text(column("seed")),
    )
