"""Learning-rate schedules, as one [steps, members] table computed before training."""

from __future__ import annotations

import math

import numpy as np
import torch

from skipinit.vocab import SCHEDULES


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at global `step` (0-based) of `total_steps`.

    halving: the paper's schedule: constant for the first half of the budget, then halved at the
      start of every further 1/20 of it (10 halvings, ending at base/1024); integer arithmetic, so
      the boundaries are exact. step: x0.1 at 50% and again at 75%. cosine: half a cosine to 0.
    """
    if schedule == "halving":
        return 0.5 ** max(0, (20 * step) // total_steps - 9)
    if schedule == "step":
        return 0.1 ** (int(2 * step >= total_steps) + int(4 * step >= 3 * total_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    raise ValueError(f"schedule={schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")


def lr_table(schedule: str, base_lrs: list[float], total_steps: int, device: torch.device) -> torch.Tensor:
    """[total_steps, N] learning rates, computed once so a step only indexes a row (no host->device copy)."""
    factors = np.array([lr_factor(schedule, step, total_steps) for step in range(total_steps)], dtype=np.float64)
    table = factors[:, None] * np.asarray(base_lrs, dtype=np.float64)[None, :]
    return torch.from_numpy(table.astype(np.float32)).to(device)
