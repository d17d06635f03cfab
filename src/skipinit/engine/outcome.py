"""What a pack reports: the line it logs per member and epoch, and its rows of result.json (`record.RunResult`),
trained or failed for a reason other than training."""

from __future__ import annotations

import torch

from skipinit.engine.runtime import format_seconds
from skipinit.record import RESULT_SETTINGS, RunResult, pack_hits

OOM_HINT = (
    "reduce the pack size (`pack:`), or set `micro_batch` (the same mean gradient in the memory of a smaller batch)"
)


def progress_line(cell: dict, point: dict, epochs: int, rate: float, eta: float, diverged_at: int) -> str:
    """One member's epoch, as the job's log shows it."""
    test = "n/a" if point["test_acc"] is None else f"{point['test_acc']:.2f}%"
    line = (
        f"epoch {point['epoch']}/{epochs} lr={cell['lr']:g} seed={cell['seed']} | "
        f"train loss {point['train_loss']:.4f} acc {point['train_acc']:.2f}% | test acc {test} | "
        f"lr now {point['lr']:.4g} | {rate:.0f} img/s (pack) | ETA {format_seconds(eta)}"
    )
    return line + (f" | DIVERGED at step {diverged_at}" if diverged_at >= 0 else "")


def pack_results(trainer) -> list[dict]:
    """One result.json row per member of a trained pack (`trainer`, the PackTrainer): its last evaluation and epoch,
    and how the pack ran. The test metrics are the final evaluation's, on the whole test set, with the per-image
    correctness packed (`record.pack_hits`; a diverged member, which scores 0, has every bit 0)."""
    diverged_at = trainer.diverged_at.tolist()
    device_name = torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu"
    seconds = trainer.train_seconds
    rate = trainer.size * trainer.step_count * trainer.batch_size / seconds if seconds else None
    final_losses, hits = (trainer.final[:2], trainer.final[2]) if trainer.final else (None, None)
    results = []
    for i, cell in enumerate(trainer.cells):
        curve = trainer.curves[i]
        last = curve[-1] if curve else {}
        diverged = diverged_at[i] >= 0
        results.append(
            RunResult(
                status="diverged" if diverged else "ok",
                diverged=diverged,
                diverged_step=diverged_at[i] if diverged else None,
                test_acc=final_losses[1][i] if final_losses else None,
                test_loss=final_losses[0][i] if final_losses else None,
                test_images=trainer.data.num_final if final_losses else None,
                test_correct=None if hits is None else pack_hits(hits[i].numpy() & (not diverged)),
                packing=trainer.members.mode,
                train_loss=last.get("train_loss"),
                train_acc=last.get("train_acc"),
                epochs_completed=trainer.epoch,
                steps=trainer.step_count,
                wall_seconds=trainer.wall_seconds,
                images_per_second=rate,
                pack_size=trainer.size,
                device=device_name,
                torch_version=torch.__version__,
                curve=[dict(point) for point in curve],
                **{key: value for key, value in trainer.settings.items() if key in RESULT_SETTINGS},
            ).row(cell)
        )
    return results


def failed_results(cells: list[dict], error: BaseException, device: str, precision: str) -> list[dict]:
    """Every member's row of a pack that failed for a reason other than training (out of memory): the reason and
    a hint, never a score."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    message = f"{type(error).__name__}: {reason}. Hint: {OOM_HINT}"
    record = RunResult.failed(
        message, pack_size=len(cells), device=device, precision=precision, torch_version=torch.__version__
    )
    return [record.row(cell) for cell in cells]
