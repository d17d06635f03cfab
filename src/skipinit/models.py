"""Residual networks for the SkipInit reproduction (De & Smith, NeurIPS 2020).

Every network is a stack of one kind of module, ``ResidualBlock``, computing
``out = output_scale * (skip + branch(preact(x)))``. The variants differ only in which
layers the small helpers below put into ``preact``, ``branch`` and ``shortcut``, and in
whether the block has a skip path at all:

- ``batchnorm``: BN-ReLU before every conv, bias-free convs; optionally ghost batch norm.
- ``skipinit``: no normalization, convs with biases, a learnable scalar ``alpha`` at the end
  of every residual branch (alpha = 0 makes every block the identity at initialization).
- ``unnormalized``: no normalization, convs with biases: the control that fails at depth.
- ``scaled``: as ``unnormalized``, but every block output is divided by sqrt(2).
- ``plain``: as ``unnormalized``, without skip connections: every block is its branch alone,
  ``out = branch(preact(x))``, so the net is a plain stack of pre-activated convs (the control
  that shows what skip connections alone buy in trainable depth). A plain net has no skip
  path anywhere: a downsampling block is just its strided convs, with no 1x1 shortcut conv
  (the residual nets' two or three shortcut convs are absent; depth is still 6N+4, the
  layers on the branch path of the residual layout).
- ``fixup`` (Zhang et al., 2019): scalar biases (init 0) before every conv, activation and
  the classifier, a scalar multiplier (init 1) at the end of every branch, the last conv of
  every branch zero-initialized, the other branch convs scaled by d^(-1/(2m-2)) (d residual
  blocks, m convs per branch) and a zero-initialized classifier. As in its authors' code, the
  scalars and the classifier's bias train at a tenth of the learning rate (`lr_multipliers`).

Initialization: convs He-normal with fan_in, as in the PyTorch WRN reference code (fan_in
preserves the variance of the forward signal, which the signal study relies on); conv
biases 0; BN weight 1, bias 0; classifier PyTorch's default (zeros for Fixup).
"""

from dataclasses import dataclass

import torch
from torch import nn

from skipinit.vocab import VARIANTS, alpha_value, wrn_residual_blocks


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from sub-batches of ``ghost_batch_size`` examples.

    The batch is split into equal chunks normalized separately; the running statistics move
    towards the mean over chunks of the chunk statistics. A batch that ``ghost_batch_size`` does not
    divide is refused (the profile check refuses such a setting before any job): a silent
    fallback to another size would train with statistics other than the ones the row records.
    Batches no larger than ``ghost_batch_size`` and evaluation use plain batch norm.
    """

    def __init__(self, num_features: int, ghost_batch_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.ghost_batch_size = ghost_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if not self.training or batch <= self.ghost_batch_size:
            return super().forward(x)
        if batch % self.ghost_batch_size:
            raise ValueError(f"ghost_batch_size={self.ghost_batch_size} does not divide the batch of {batch}")
        chunk = self.ghost_batch_size
        chunks = x.reshape(batch // chunk, chunk, *x.shape[1:]).float()  # statistics in float32, as BN under AMP
        mean = chunks.mean(dim=(1, 3, 4), keepdim=True)
        var = chunks.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
        out = ((chunks - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        if self.track_running_stats:
            count = chunk * x.shape[2] * x.shape[3]
            self._update_running_stats(mean.mean(0).flatten(), var.mean(0).flatten() * count / (count - 1))
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)


class ScalarGain(nn.Module):
    """Learnable scalar multiplier: SkipInit's alpha, Fixup's multiplier."""

    def __init__(self, init: float):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class ScalarBias(nn.Module):
    """Learnable scalar bias, initialized at 0 (Fixup)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class MemberDropout(nn.Module):
    """Dropout on [B, features] whose scaled keep-mask (`noise`) the training engine sets before each forward.

    The engine draws each member's mask from that member's own generator (`engine.dropout`), so a
    cell's masks depend on its seed alone, whatever it is packed with. Without a mask (a model used
    outside the engine) it is `F.dropout`, drawing from the global generator.
    """

    def __init__(self, p: float, features: int):
        super().__init__()
        self.p, self.features = p, features
        self.noise: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.noise is None:
            return nn.functional.dropout(x, self.p, True)
        return x * self.noise.to(x.dtype)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: ``out = output_scale * (skip + branch(preact(x)))``.

    ``skip`` is ``x`` itself, or ``shortcut(preact(x))`` where a 1x1 conv changes the shape (the
    WRN reference layout: a stage's first block feeds its activated input to both paths).
    ``branch`` ends with the variant's scalars, so its output is exactly what is added to the
    skip path: hook the block for the skip-path input and ``branch`` for the branch output.
    With ``has_skip=False`` (the ``plain`` variant) there is no skip path: ``out = branch(preact(x))``.
    """

    def __init__(
        self,
        preact: nn.Module,
        branch: nn.Module,
        shortcut: nn.Module | None = None,
        output_scale: float = 1.0,
        has_skip: bool = True,
    ):
        super().__init__()
        if shortcut is not None and not has_skip:
            raise ValueError("a block without a skip path has no shortcut")
        self.preact = preact
        self.branch = branch
        self.shortcut = shortcut
        self.output_scale = output_scale
        self.has_skip = has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.preact(x)
        if not self.has_skip:
            return self.branch(activated) * self.output_scale
        skip = x if self.shortcut is None else self.shortcut(activated)
        return (skip + self.branch(activated)) * self.output_scale


class ResNet(nn.Module):
    """stem -> stages of residual blocks -> head (final pre-activation, pooling, dropout, classifier)."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module], head: nn.Module, variant: str):
        super().__init__()
        self.variant = variant
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@dataclass(frozen=True)
class _Settings:
    """What every block of one network shares."""

    variant: str
    num_blocks: int  # d, for Fixup's rescaling
    alpha: float
    ghost_batch_size: int | None


def _norm_act(channels: int, settings: _Settings) -> nn.Module:
    """The pre-activation in front of a conv: BN-ReLU, bias-ReLU for Fixup, otherwise ReLU."""
    if settings.variant == "batchnorm":
        if settings.ghost_batch_size is None:
            return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        return nn.Sequential(GhostBatchNorm2d(channels, settings.ghost_batch_size), nn.ReLU())
    if settings.variant == "fixup":
        return nn.Sequential(ScalarBias(), nn.ReLU())
    return nn.ReLU()


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, variant: str) -> nn.Module:
    """He-initialized conv: bias-free before BN, behind a scalar bias for Fixup, otherwise with a zero bias."""
    bias = variant not in ("batchnorm", "fixup")
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(ScalarBias(), conv) if variant == "fixup" else conv


def _residual_block(in_channels: int, convs: list[tuple[int, int, int]], settings: _Settings) -> ResidualBlock:
    """A block whose branch chains ``convs`` given as (kernel_size, out_channels, stride), pre-activated."""
    variant = settings.variant
    layers, channels = [], in_channels
    for index, (kernel_size, out_channels, stride) in enumerate(convs):
        if index > 0:
            layers.append(_norm_act(channels, settings))
        layers.append(_conv(channels, out_channels, kernel_size, stride, variant))
        channels = out_channels
    if variant == "skipinit":
        layers.append(ScalarGain(settings.alpha))
    elif variant == "fixup":
        layers += [ScalarGain(1.0), ScalarBias()]
        branch_convs = [m for layer in layers for m in layer.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv in branch_convs[:-1]:
                conv.weight.mul_(settings.num_blocks ** (-1.0 / (2 * len(branch_convs) - 2)))
            branch_convs[-1].weight.zero_()

    stride = max(stride for _, _, stride in convs)
    has_skip = variant != "plain"
    shortcut = None
    if has_skip and (stride != 1 or channels != in_channels):
        shortcut = _conv(in_channels, channels, 1, stride, variant)
    return ResidualBlock(
        preact=_norm_act(in_channels, settings),
        branch=nn.Sequential(*layers),
        shortcut=shortcut,
        output_scale=2**-0.5 if variant == "scaled" else 1.0,
        has_skip=has_skip,
    )


def _resnet(
    stem: nn.Module,
    stem_channels: int,
    stages: list[tuple[list[tuple[int, int, int]], int]],
    variant: str,
    num_classes: int,
    alpha_init: float | str,
    ghost_batch_size: int | None,
    dropout: float,
) -> ResNet:
    """Assemble a ResNet from ``stages`` given as (convs of the stage's first block, number of blocks).

    Blocks after the first of a stage repeat its convs with stride 1.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if ghost_batch_size is not None and variant != "batchnorm":
        raise ValueError(f"ghost_batch_size needs the batchnorm variant, got variant={variant!r}")
    num_blocks = sum(count for _, count in stages)
    settings = _Settings(variant, num_blocks, alpha_value(alpha_init, num_blocks), ghost_batch_size)

    built_stages, channels = [], stem_channels
    for convs, count in stages:
        repeated = [(kernel_size, out_channels, 1) for kernel_size, out_channels, _ in convs]
        blocks = [_residual_block(channels, convs, settings)]
        blocks += [_residual_block(convs[-1][1], repeated, settings) for _ in range(count - 1)]
        built_stages.append(nn.Sequential(*blocks))
        channels = convs[-1][1]

    classifier = nn.Linear(channels, num_classes)
    head = [_norm_act(channels, settings), nn.AdaptiveAvgPool2d(1), nn.Flatten(), MemberDropout(dropout, channels)]
    if variant == "fixup":
        nn.init.zeros_(classifier.weight)
        nn.init.zeros_(classifier.bias)
        head.append(ScalarBias())
    return ResNet(stem, built_stages, nn.Sequential(*head, classifier), variant)


def lr_multipliers(model: nn.Module, fixup_scalar_lr: float) -> dict[str, float]:
    """Learning-rate multipliers by parameter name; a parameter not named trains at the full rate.

    Fixup's authors train every bias and scale (its scalar biases and multipliers, and the
    classifier's bias) at a tenth of the learning rate (Zhang et al., 2019, official code): the
    profile's `fixup_scalar_lr`, 0.1 by default, is the control they published. Every other variant, SkipInit's alpha
    included, uses one rate.
    """
    if getattr(model, "variant", None) != "fixup":
        return {}
    return {name: fixup_scalar_lr for name, _ in model.named_parameters() if name.endswith(("bias", "gain"))}


def wide_resnet(
    depth: int,
    width: int,
    variant: str,
    num_classes: int = 10,
    *,
    alpha_init: float | str = 0.0,
    ghost_batch_size: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Pre-activation Wide-ResNet-``depth``-``width`` (Zagoruyko & Komodakis, 2016) for 32x32 images.

    16-channel stem, three stages of N = (depth - 4) / 6 blocks of two 3x3 convs, widths
    16k, 32k, 64k and strides 1, 2, 2; ``dropout`` acts before the classifier.
    """
    blocks_per_stage = wrn_residual_blocks(depth) // 3
    stages = [
        ([(3, stage_width, stride), (3, stage_width, 1)], blocks_per_stage)
        for stage_width, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2))
    ]
    return _resnet(_conv(3, 16, 3, 1, variant), 16, stages, variant, num_classes, alpha_init, ghost_batch_size, dropout)


def single_stage_resnet(
    num_blocks: int, width: int, variant: str, num_classes: int = 10, *, alpha_init: float | str = 0.0
) -> nn.Module:
    """Stem conv to ``width`` channels, then ``num_blocks`` Wide-ResNet blocks with identity skips throughout.

    The convolutional network of the signal propagation study (Figure 2c): no downsampling.
    """
    stages = [([(3, width, 1), (3, width, 1)], num_blocks)]
    return _resnet(_conv(3, width, 3, 1, variant), width, stages, variant, num_classes, alpha_init, None, 0.0)


def resnet50_v2(
    variant: str,
    num_classes: int = 1000,
    *,
    alpha_init: float | str = 0.0,
    ghost_batch_size: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Pre-activation bottleneck ResNet-50 (He et al., 2016, "Identity mappings") for ImageNet.

    7x7 stride-2 stem conv and 3x3 stride-2 max pool, stages of [3, 4, 6, 3] bottleneck blocks
    (1x1, 3x3, 1x1 convs; widths 64..512, expansion 4) with the stride on the 3x3 conv.
    """
    stem = nn.Sequential(_conv(3, 64, 7, 2, variant), nn.MaxPool2d(3, stride=2, padding=1))
    stages = [
        ([(1, width, 1), (3, width, stride), (1, 4 * width, 1)], count)
        for width, stride, count in ((64, 1, 3), (128, 2, 4), (256, 2, 6), (512, 2, 3))
    ]
    return _resnet(stem, 64, stages, variant, num_classes, alpha_init, ghost_batch_size, dropout)


def linear_residual_block(width: int, variant: str) -> ResidualBlock:
    """``x + W BN(x)`` (batchnorm) or ``x + W x`` (unnormalized) with LeCun-normal ``W`` and no bias.

    BN has no affine parameters (the paper's analysis); its batch statistics are per feature.
    """
    if variant not in ("batchnorm", "unnormalized"):
        raise ValueError(f"linear residual networks are 'batchnorm' or 'unnormalized', got variant={variant!r}")
    linear = nn.utils.skip_init(nn.Linear, width, width, bias=False)
    nn.init.normal_(linear.weight, std=width**-0.5)
    preact = nn.BatchNorm1d(width, affine=False) if variant == "batchnorm" else nn.Identity()
    return ResidualBlock(preact, linear)


def linear_resnet(width: int = 1000, blocks: int = 10, variant: str = "batchnorm") -> nn.Module:
    """Deep linear residual network of the paper's appendix: ``blocks`` linear residual blocks, no classifier."""
    return nn.Sequential(*(linear_residual_block(width, variant) for _ in range(blocks)))
