"""Signal propagation through residual networks at initialization (Figure 2 of De & Smith, 2020).

For every residual block l, ``measure`` records on one batch, in training mode at initialization:

- ``skip_var``: the variance of the block input x_l, i.e. of the skip path, as the mean over
  channels (features) of each channel's variance over the batch and spatial positions: the
  statistic BN divides by and its moving variance estimates;
- ``skip_var_pooled``: the variance of x_l across channels, pooled over batch, channels and
  positions: the paper's skip-path variance (Figure 2). It adds to ``skip_var`` the spread of the
  channel means (law of total variance), i.e. the mean shift that ReLU branches accumulate in
  conv nets; in the linear nets of Figure 2(a, b) the feature means stay near 0 and the two agree
  to about 1/batch;
- ``branch_var``: the variance of the residual branch output, after SkipInit's alpha: exactly
  what the block adds to the skip path (per-channel, as ``skip_var``);
- ``bn_moving_var``: for BN networks, the moving variance of the BN layer at the branch input
  after one training-mode pass from a fresh running variance with momentum 1. That is the
  (unbiased) batch variance BN normalizes by, so it equals ``skip_var * n / (n - 1)`` with n
  values per channel: by construction, not a finding. Against ``skip_var_pooled`` it is what
  Figure 2(c) compares. NaN for networks without BN.

Variances use 1/n normalization. With ``skip_var`` the paper's theory holds exactly in
expectation over the weights: an unnormalized linear block doubles skip_var, a BN linear block
adds a branch of variance 1, so skip_var = 2^(l-1) and l.

``depth`` is the number of residual blocks for every model, linear or convolutional, and the
block-1 input is rescaled to variance exactly 1 (for conv nets the stem output is rescaled).
Networks without BN are positively homogeneous at initialization (no nonlinearity or ReLU, zero
biases), so their activations are carried renormalized between blocks with the scale tracked
in float64: ``linear-unnormalized`` at 1000 blocks reaches 2^999, far beyond float32.

Linear networks are built one block at a time (a 1000-block net of width 1000 would hold 4 GB of
weights) from the same random stream as ``torch.manual_seed(seed)``, Gaussian inputs, then
``models.linear_resnet``. The convolutional networks are ``single_stage_resnet``: a stem
conv then ``depth`` pre-activation Wide-ResNet blocks with identity skips and no downsampling.
"""

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from skipinit.models import ResidualBlock, linear_residual_block, single_stage_resnet

MODELS = ("linear-unnormalized", "linear-batchnorm", "conv-batchnorm", "conv-skipinit", "conv-unnormalized")
STATISTICS = ["skip_var", "skip_var_pooled", "branch_var", "bn_moving_var"]  # see the module docstring
COLUMNS = ["model", "depth", "block", "seed", *STATISTICS]
DEFAULT_WIDTH = {"linear": 1000, "conv": 16}


def channel_variance(x: torch.Tensor) -> float:
    """Mean over channels (dim 1) of the per-channel variance over all other dims, 1/n normalized."""
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).var(dim=1, unbiased=False)
    return per_channel.double().mean().item()


def pooled_variance(x: torch.Tensor) -> float:
    """Variance over every element (batch, channels, positions), 1/n normalized: the paper's skip-path variance."""
    return x.double().var(unbiased=False).item()


def measure(
    model_name: str,
    depth: int,
    seed: int,
    inputs: torch.Tensor | None = None,
    *,
    width: int | None = None,
    batch_size: int = 256,
    alpha_init: float | str = 0.0,
) -> pd.DataFrame:
    """Per-block signal statistics of a freshly initialized ``model_name`` network with ``depth`` blocks.

    ``inputs`` (conv nets only): images N x 3 x 32 x 32, normalized per channel; when None,
    ``batch_size`` Gaussian inputs are drawn from ``seed``. ``width`` defaults to 1000 features
    (linear) or 16 channels (conv). ``alpha_init`` is SkipInit's alpha for ``conv-skipinit``.
    Leaves the global RNG untouched.
    """
    if model_name not in MODELS:
        raise ValueError(f"model_name must be one of {MODELS}, got {model_name!r}")
    kind, variant = model_name.split("-")
    width = width or DEFAULT_WIDTH[kind]
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "linear":
            if inputs is not None:
                raise ValueError("inputs are for the conv networks; linear networks see Gaussian inputs")
            x = torch.randn(batch_size, width)
            blocks = (linear_residual_block(width, variant) for _ in range(depth))
        else:
            if inputs is None:
                inputs = torch.randn(batch_size, 3, 32, 32)
            network = single_stage_resnet(depth, width, variant, alpha_init=alpha_init).train()
            x = network.stem(inputs)
            blocks = (m for m in network.modules() if isinstance(m, ResidualBlock))
        rows = _propagate(blocks, x, renormalize=variant != "batchnorm")

    frame = pd.DataFrame(rows, columns=STATISTICS)
    frame.insert(0, "model", model_name)
    frame.insert(1, "depth", depth)
    frame.insert(2, "block", range(1, len(frame) + 1))
    frame.insert(3, "seed", seed)
    return frame


def _propagate(blocks: Iterable[ResidualBlock], x: torch.Tensor, renormalize: bool) -> list[tuple]:
    """Feed ``x``, rescaled to unit variance, through ``blocks``; the ``STATISTICS`` of each block."""
    rows = []
    x = x / math.sqrt(channel_variance(x))
    scale = 1.0  # variance of the true activations relative to those carried in x
    for block in blocks:
        norm = next((m for m in block.preact.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))), None)
        if norm is not None:
            norm.momentum = 1.0
        branch_outputs: list[torch.Tensor] = []
        hook = block.branch.register_forward_hook(lambda module, args, output, kept=branch_outputs: kept.append(output))
        out = block(x)
        hook.remove()
        moving_var = math.nan if norm is None else norm.running_var.double().mean().item()
        skip, pooled, branch = channel_variance(x), pooled_variance(x), channel_variance(branch_outputs[0])
        rows.append((scale * skip, scale * pooled, scale * branch, scale * moving_var))
        if renormalize:
            step = channel_variance(out)
            out, scale = out / math.sqrt(step), scale * step
        x = out
    return rows


def study(
    models: Sequence[str],
    depths: Sequence[int] | Mapping[str, Sequence[int]],
    seeds: Sequence[int],
    inputs_for_conv: torch.Tensor | None = None,
    **kw,
) -> pd.DataFrame:
    """``measure`` every model at every depth (one list for all, or one per model) and seed, concatenated.

    ``inputs_for_conv`` go to the conv networks only; ``kw`` to every ``measure`` call.
    """
    frames = [
        measure(name, depth, seed, inputs_for_conv if name.startswith("conv") else None, **kw)
        for name in models
        for depth in (depths[name] if isinstance(depths, Mapping) else depths)
        for seed in seeds
    ]
    return pd.concat(frames, ignore_index=True)
