"""The loss of every member and the SGD update of all of them, as whole-buffer tensor ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy [N] (float32) and number of correct predictions [N] of each member."""
    members, batch, classes = logits.shape
    per_example = F.cross_entropy(
        logits.reshape(-1, classes).float(), labels.expand(members, batch).reshape(-1), reduction="none"
    )
    return per_example.view(members, batch).mean(1), member_hits(logits, labels).sum(1)


def member_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether each member's prediction of each example is right: bool [N, B]."""
    return logits.argmax(-1) == labels.expand(logits.shape[0], logits.shape[1])


@torch.no_grad()
def sgd_step(
    params: torch.Tensor,
    grads: torch.Tensor,
    momentum_buffer: torch.Tensor,
    lr: torch.Tensor,
    active: torch.Tensor,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    lr_scale: torch.Tensor | None = None,
) -> None:
    """One SGD step on [N, P] buffers with per-member lr [N]; members not `active` keep their state.

    As torch.optim.SGD (dampening 0): g = grad + weight_decay * p (L2 on *all* parameters, BN
    scales/biases and SkipInit's alpha included), buf = momentum * buf + g, d = g + momentum * buf
    (Nesterov) or buf, p -= lr * d. `lr_scale` [P] multiplies each parameter's lr, as a param group
    of its own would. `torch.where` rather than a zero lr, so NaNs of a diverged member never leak
    into its frozen state.
    """
    keep = active[:, None]
    if weight_decay:
        grads.add_(params, alpha=weight_decay)
    new_buffer = torch.add(grads, momentum_buffer, alpha=momentum)
    direction = torch.add(grads, new_buffer, alpha=momentum) if nesterov else new_buffer
    if lr_scale is not None:
        direction = direction * lr_scale
    new_params = torch.addcmul(params, lr[:, None], direction, value=-1.0)
    params.copy_(torch.where(keep, new_params, params))
    momentum_buffer.copy_(torch.where(keep, new_buffer, momentum_buffer))
