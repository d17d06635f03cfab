"""Channel packing: the members of a pack side by side in the channel dimension.

A pack of N networks runs as one network on channel-stacked tensors [B, N*C, ...], member n
owning channels n*C..(n+1)*C-1: a conv becomes a grouped conv (groups x N), a BN one BN over
N*C channels (per-channel statistics, so exactly per member), the classifier a batched matmul,
and ReLU, pooling, dropout and residual additions act on every channel alike. Each kernel is
the member's own, run once for all members: no vmap, no per-op batching overhead.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from skipinit.models import ScalarBias, ScalarGain


class PackedConv2d(nn.Module):
    """N convolutions as one grouped convolution; weight [N, O, I, kh, kw], bias [N, O]."""

    def __init__(self, conv: nn.Conv2d, weight: nn.Parameter, bias: nn.Parameter | None, members: int):
        super().__init__()
        self.weight, self.bias, self.members = weight, bias, members
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        bias = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups * self.members)


class PackedBatchNorm(nn.Module):
    """N batch norms as one over N*C channels; running statistics land in the stacked [N, C] buffers."""

    def __init__(self, norm: nn.Module, state: dict[str, torch.Tensor | None]):
        super().__init__()
        self.weight, self.bias = state["weight"], state["bias"]  # [N, C] parameters, or None
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, state[name])  # [N, C], [N, C], [N], or None
        self.momentum, self.eps, self.track_running_stats = norm.momentum, norm.eps, norm.track_running_stats
        # A subclass (ghost batch norm) keeps its own forward, run on the packed state.
        self.subclass = norm if type(norm) not in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.reshape(-1)
        bias = None if self.bias is None else self.bias.reshape(-1)
        mean = None if self.running_mean is None else self.running_mean.view(-1)
        var = None if self.running_var is None else self.running_var.view(-1)
        if self.subclass is not None:
            state = {
                "weight": weight,
                "bias": bias,
                "running_mean": mean,
                "running_var": var,
                "num_batches_tracked": self.num_batches_tracked,
            }
            return torch.func.functional_call(self.subclass, {k: v for k, v in state.items() if v is not None}, (x,))
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)  # as nn.BatchNorm does (momentum is set, so only a counter)
        batch_statistics = self.training or mean is None
        if self.training and not self.track_running_stats:
            mean = var = None
        return F.batch_norm(x, mean, var, weight, bias, batch_statistics, self.momentum, self.eps)


class PackedLinear(nn.Module):
    """N linear layers as one batched matmul: [B, N*C] -> [B, N*K]; weight [N, K, C], bias [N, K]."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, members: int):
        super().__init__()
        self.weight, self.bias, self.members = weight, bias, members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        per_member = x.reshape(batch, self.members, -1).transpose(0, 1)  # [N, B, C]
        if self.bias is None:
            out = torch.bmm(per_member, self.weight.transpose(1, 2))
        else:
            out = torch.baddbmm(self.bias[:, None, :], per_member, self.weight.transpose(1, 2))
        return out.transpose(0, 1).reshape(batch, -1)


class PackedScalar(nn.Module):
    """A learnable scalar per member (SkipInit's alpha, Fixup's gain or bias) over its channels."""

    def __init__(self, value: nn.Parameter, members: int, multiply: bool):
        super().__init__()
        self.value, self.members, self.multiply = value, members, multiply

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # expand, not repeat_interleave, which may size its output on the host (a sync a CUDA graph capture forbids)
        per_channel = self.value[:, None].expand(self.members, x.shape[1] // self.members).reshape(-1)
        # In x's dtype, as a 0-dim scalar would be in the member's own network (bf16 stays bf16).
        per_channel = per_channel.view(1, -1, *([1] * (x.dim() - 2))).to(x.dtype)
        return x * per_channel if self.multiply else x + per_channel


def pack_leaf(name: str, module: nn.Module, leaves: dict, buffers: dict, members: int) -> nn.Module | None:
    """The channel-packed stand-in for one leaf module, the module itself if it holds no state, or None."""
    own = [n for n, _ in module.named_parameters(recurse=False)] + [n for n, _ in module.named_buffers(recurse=False)]
    if not own:
        return module  # ReLU, pooling, flatten, dropout, identity: the same on every channel
    get = lambda key: leaves.get(f"{name}.{key}", buffers.get(f"{name}.{key}"))  # noqa: E731
    if type(module) is nn.Conv2d and module.padding_mode == "zeros":
        return PackedConv2d(module, get("weight"), get("bias"), members)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum is not None:
        keys = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        return PackedBatchNorm(module, {key: get(key) for key in keys})
    if type(module) is nn.Linear:
        return PackedLinear(get("weight"), get("bias"), members)
    if type(module) in (ScalarGain, ScalarBias):
        return PackedScalar(get("gain" if type(module) is ScalarGain else "bias"), members, type(module) is ScalarGain)
    return None


def pack_channels(model: nn.Module, leaves: dict, buffers: dict, members: int) -> nn.Module | None:
    """A copy of `model` whose leaf modules run all members on channel-stacked tensors (None: can't).

    Containers keep their own forward (sequencing, residual additions, scaling), which acts on
    every channel alike. `leaves` and `buffers` hold the stacked [N, ...] state by module path.
    """
    packed = copy.deepcopy(model).to("meta")
    for name, module in list(packed.named_modules()):
        if not name or next(module.children(), None) is not None:
            continue
        replacement = pack_leaf(name, module, leaves, buffers, members)
        if replacement is None:
            return None
        parent, _, child = name.rpartition(".")
        setattr(packed.get_submodule(parent) if parent else packed, child, replacement)
    return packed
