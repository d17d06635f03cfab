"""A pack's evaluation on the test set: the curve's subset after an epoch, or the whole test set at the end (the
paper's quantity), with each image's correctness."""

from __future__ import annotations

import torch

from skipinit.engine.sgd import member_hits, member_losses


@torch.no_grad()
def evaluate(trainer, final: bool = False) -> tuple[list, list, torch.Tensor | None]:
    """Mean test loss and accuracy (percent) of every member on the curve's test subset; with `final`, on the
    whole test set, with each member's per-image correctness [N, images] (bool, on the CPU) beside them.
    A final evaluation where every member diverged is skipped (a diverged run scores 0 whatever it predicts,
    and a deep net's pass over 10,000 images costs as much as its epoch): no accuracy, every image wrong."""
    if final and not bool(trainer.alive.any()):
        return (
            [None] * trainer.size,
            [None] * trainer.size,
            torch.zeros(trainer.size, trainer.data.num_final, dtype=torch.bool),
        )
    trainer.members.train(False)
    loss_sum = torch.zeros(trainer.size, dtype=torch.float64, device=trainer.device)
    correct_sum = torch.zeros(trainer.size, dtype=torch.long, device=trainer.device)
    hits, count = [], 0
    for x, y in trainer.data.test_batches(final):
        if final:  # eagerly, for the per-image hits
            with trainer.autocast():
                logits = trainer.members.forward(x, True)
            hits.append(member_hits(logits, y))
            losses, correct = member_losses(logits, y)
        else:
            losses, correct = trainer.loss_fn(x, y, True)
        loss_sum += losses.double() * x.shape[0]
        correct_sum += correct
        count += x.shape[0]
    trainer.members.train(True)
    per_image = torch.cat(hits, dim=1).cpu() if final else None
    return (loss_sum / count).tolist(), (100.0 * correct_sum.double() / count).tolist(), per_image
