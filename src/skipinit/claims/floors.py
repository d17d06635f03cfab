"""The seed-noise floors of the claims file (`noise:`): the spread one setting's runs cannot show themselves,
measured per setting, test-set size and precision on seeds no profile judges (`claims.noise` measures them), and
the stated widening where none was measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Floor:
    """The seed-to-seed spread (pp) one setting's runs cannot show themselves: sds with their degrees of freedom."""

    gap_sd_pp: float  # sd over seeds of a paired accuracy gap between two models
    gap_df: int
    accuracy_sd_pp: float  # sd over seeds of one model's accuracy
    accuracy_df: int
    source: str
    lr_gap_sd_pp: float | None = None  # sd over seeds of one model's accuracy at one lr minus another lr
    lr_gap_df: int | None = None

    def lr_gap(self) -> tuple[float, int, str]:
        """The lr-difference floor, or where none was measured sqrt(2) accuracy floors (a seed's two lrs share its
        initialization and data order, which makes their difference spread less than two independent runs')."""
        if self.lr_gap_sd_pp is not None:
            return self.lr_gap_sd_pp, int(self.lr_gap_df), self.source
        return math.sqrt(2) * self.accuracy_sd_pp, self.accuracy_df, f"sqrt(2) x the accuracy floor; {self.source}"

    def widened(self, factor: float, source: str) -> Floor:
        lr_sd, lr_df, _ = self.lr_gap()
        return Floor(
            self.gap_sd_pp * factor,
            self.gap_df,
            self.accuracy_sd_pp * factor,
            self.accuracy_df,
            source,
            lr_sd * factor,
            lr_df,
        )


SIZE_KEY, PRECISION_KEY = "test_images", "precision"  # the floor keys that are not cell settings


@dataclass(frozen=True)
class NoiseModel:
    """The claims file's `noise:`: floors measured per setting, and the widening of the widest where none was."""

    floors: tuple[tuple[dict, Floor], ...]
    widening: float
    widening_source: str

    @classmethod
    def from_params(cls, params: dict) -> NoiseModel:
        noise = params.get("noise")
        if not noise:
            raise ValueError("the claims file has no `noise:` section (seed-noise floors)")
        return cls.from_spec(noise)

    @classmethod
    def from_spec(cls, noise: dict) -> NoiseModel:
        floors = tuple(
            (
                dict(entry["where"]),
                Floor(
                    float(entry["gap_sd_pp"]),
                    int(entry["gap_df"]),
                    float(entry["accuracy_sd_pp"]),
                    int(entry["accuracy_df"]),
                    str(entry["source"]),
                    float(entry["lr_gap_sd_pp"]) if entry.get("lr_gap_sd_pp") is not None else None,
                    int(entry["lr_gap_df"]) if entry.get("lr_gap_df") is not None else None,
                ),
            )
            for entry in noise["floors"]
        )
        return cls(floors, float(noise["unmeasured_widening"]), str(noise["widening_source"]))

    def floor_for(self, rows: pd.DataFrame) -> Floor:
        """The floor measured where `rows` (one setting) were run, else the same setting's in another precision or
        the widest floor, widened, saying so.

        A floor's `test_images` matches runs evaluated on at least as many images of the same test set (the
        per-image churn between seeds, part of every seed spread, only shrinks with more images): the floor with
        the most images that matches is taken. `precision` must match exactly.
        """
        ordered = sorted(self.floors, key=lambda entry: -float(entry[0].get(SIZE_KEY, 0)))
        keys = {key for where, _ in self.floors for key in where}
        ran = {key: rows[key] for key in keys if key in rows and not rows[key].isna().any()}
        ran = {key: (float(values.min()) if key == SIZE_KEY else set(values.unique())) for key, values in ran.items()}
        for where, floor in ordered:
            if matches(ran, where):
                return floor
        for where, floor in ordered:
            if matches(ran, {key: value for key, value in where.items() if key != PRECISION_KEY}):
                at = ", ".join(f"{key} {value}" for key, value in where.items())
                return floor.widened(
                    self.widening,
                    f"measured at {at}, another precision than these runs': widened x{self.widening:g} "
                    f"({self.widening_source})",
                )
        where, floor = max(self.floors, key=lambda entry: entry[1].accuracy_sd_pp)
        at = ", ".join(f"{key} {value}" for key, value in where.items())
        return floor.widened(
            self.widening,
            f"unmeasured in this setting: the floor of {at} widened x{self.widening:g} ({self.widening_source})",
        )


def matches(ran: dict, where: dict) -> bool:
    """Whether runs whose settings took the values `ran` ({key: set of values}; test images: the fewest) were run
    where a floor's `where:` says (test images: at least as many)."""
    for key, value in where.items():
        if key not in ran:
            return False
        if key == SIZE_KEY:
            if ran[key] < float(value):
                return False
        elif ran[key] != {value}:
            return False
    return True
