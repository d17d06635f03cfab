"""Training engine: one pack of cells, trained in one process as one batched computation.

A *pack* is a list of cells that differ only in learning rate and seed (see `grid.py`).

Design, in the order a step runs:

- **Data.** The trainer reads its batches from a data source, whose epoch is a function of
  (cell seed, epoch) alone, so a resumed run redraws the same batches without saved RNG state.
  The canonical 32 x 32 datasets (`OnDeviceData`) are copied to the device once, zero-padded by
  4 pixels; each epoch draws, from a `torch.Generator`, a permutation, crop offsets and flips for
  the whole training set, and a step crops, flips and gathers its batch with one advanced-indexing
  op and normalizes it: no per-sample Python, no worker processes. ImageNet, too large for the
  device, streams from its image folder (`skipinit.imagenet.ImageNetStream`): DataLoader workers
  decode, crop and flip uint8 batches, the device normalizes them.
- **Members.** Each member's model is built after `torch.manual_seed(cell seed)`, so its
  initialization equals the same cell trained alone. All parameters of all members live in one
  flat `[N, P]` buffer (one row per member), and the parameters the forward uses are views into it;
  so are the gradients, so autograd accumulates straight into the flat gradient buffer.
- **Forward.** One member (pack of one): the module itself, no packing machinery. Several members:
  *channel packing* (see `pack_channels`): the members run side by side in the channel dimension,
  a conv becoming one grouped conv, a BN one BN over N*C channels (running statistics updated in
  place in the stacked buffers), the classifier a batched matmul, dropout drawing independent
  masks per member. This is what `torch.vmap` over `functional_call` computes, minus vmap's
  per-op batching rules (batch norm becomes an unfused normalize, multiply and add, forward and
  backward: vmap packing was 1.3x slower on CPU at 8 members, bench/RESULTS.md); every
  pack is checked against each member's own network at construction, and vmap (stacked
  parameters and BN buffers with `in_dims=0`, `randomness="different"`) remains the fallback for a
  model channel packing cannot express. Members that share a seed share the batch; otherwise every
  member gets its own augmented batch. The loss is the sum of the members' mean cross-entropies,
  so one backward gives each member exactly its own gradient.
- **Update.** SGD with momentum (optionally Nesterov) and L2 weight decay (added to the gradient of
  every parameter, BN scales and biases and SkipInit's alpha included) written as a handful of
  whole-buffer tensor ops on `[N, P]`, with the learning rate a per-member column, times a
  per-parameter row where the model asks for one (Fixup's scalars, `models.lr_multipliers`). A member whose
  loss is non-finite or above `divergence_loss` stops updating: `torch.where` keeps its parameters
  and momentum, and the first bad step is recorded on the device; nothing is read back per step.
- **Epoch end.** One host sync reads the epoch's summed losses and accuracies; evaluation on the
  full test set (or the cell's class-balanced `test_subset`); one log line per member; an atomic
  checkpoint with an embedded sha256, from which a killed run resumes bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skipinit.data import CanonicalDataset, balanced_subset
from skipinit.fileio import atomic_path
from skipinit.grid import CELL_DEFAULTS, PACKED_KEYS
from skipinit.models import lr_multipliers

if TYPE_CHECKING:
    from skipinit.imagenet import ImageNetFolder

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
PAD = 4  # random-crop padding, pixels
SCHEDULES = ("halving", "step", "cosine")
OOM_HINT = "reduce the pack size (`pack:`) or set `ghost_batch_size` / a smaller batch"
CHECKPOINT_MAGIC = b"skipinit-train-checkpoint-v1\n"

# Warnings that are expected and harmless here, silenced while a pack trains (see engine_settings):
# - parameter views of the flat [N, P] buffer have non-dense strides across members, so autograd
#   warns that accumulating into their grads may be slower; it accumulates in place all the same;
# - under vmap, adaptive_avg_pool2d of a channels_last input resizes its output with as_strided_,
#   which takes functorch's per-member fallback: correct, and cheap for the one tiny pooling op.
EXPECTED_WARNINGS = (
    "grad and param do not obey the gradient layout contract",
    "There is a performance drop because we have not yet implemented the batching rule for aten::as_strided_",
    "There is a performance drop because we have not yet implemented the batching rule for aten::lerp_",  # ghost BN stats
)


@dataclasses.dataclass
class EngineOptions:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "bf16"  # bf16 | fp32 ; bf16 autocast only takes effect on CUDA
    compile: bool = False  # torch.compile where it pays
    channels_last: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms + fixed threads; CPU runs repeat bit for bit
    eval_every: int = 1  # evaluate on the full test set every k epochs (and always at the last epoch)
    divergence_loss: float = 1e3  # a cell whose training loss is non-finite or above this has diverged
    threads: int | None = None  # torch.set_num_threads on CPU; also the ImageNet loader's worker processes
    image_size: int = 224  # ImageNet crop in pixels (evaluation resizes to 8/7 of it first); 32 x 32 data keep their size
    micro_batch: int = 0  # examples per forward/backward (0: the whole batch); see PackTrainer.step


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: unreadable, truncated, or failing its checksum."""


# --------------------------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Data on the device
# --------------------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (cell seed, epoch, purpose): no saved RNG state needed."""
    return int(np.random.SeedSequence([int(p) % (1 << 63) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def pad_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x 32 x 32 x 3 -> uint8 N x 40 x 40 x 3 on the device, zero border of PAD pixels."""
    images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    n, height, width, channels = images.shape
    padded = torch.zeros((n, height + 2 * PAD, width + 2 * PAD, channels), dtype=torch.uint8, device=device)
    padded[:, PAD:PAD + height, PAD:PAD + width] = images
    return padded


def epoch_plan(num_images: int, seed: int, epoch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Order, crop offsets and flips for one epoch of one seed, drawn on the device."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, epoch, 1))
    return {
        "index": torch.randperm(num_images, generator=generator, device=device),
        "dy": torch.randint(0, 2 * PAD + 1, (num_images,), generator=generator, device=device),
        "dx": torch.randint(0, 2 * PAD + 1, (num_images,), generator=generator, device=device),
        "flip": torch.randint(0, 2, (num_images,), generator=generator, device=device).bool(),
    }


def augment(padded: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Random crop + horizontal flip of a batch as one gather: `padded[index]` cropped at (dy, dx).

    `index`, `dy`, `dx`, `flip` share any shape S; the result is uint8 S x size x size x C.
    A flipped crop reads its columns right to left.
    """
    offsets = torch.arange(size, device=padded.device)
    rows = dy[..., None] + offsets
    columns = torch.where(flip[..., None], dx[..., None] + (size - 1 - offsets), dx[..., None] + offsets)
    return padded[index[..., None, None], rows[..., :, None], columns[..., None, :]]


def normalize(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W]; uint8 [N, B, H, W, C] -> channel-stacked [B, N*C, H, W].

    Per-channel CIFAR mean/std normalization. The HWC source makes the result channels_last for
    free; a stacked batch is laid out [B, H, W, N, C] in memory, so member n's channels are
    n*C..n*C+C-1 of a channels_last tensor (what the packed, grouped convolutions read).
    """
    x = torch.addcmul(shift, images.float(), scale)
    if x.dim() == 5:
        members, batch, height, width, channels = x.shape
        x = x.permute(1, 2, 3, 0, 4).reshape(batch, height, width, members * channels)
    x = x.permute(0, 3, 1, 2)
    return x if channels_last else x.contiguous()


def normalization(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) for `normalize`: uint8 pixel p becomes (p / 255 - mean) / std."""
    std_tensor = torch.tensor(std, device=device)
    return 1.0 / (255.0 * std_tensor), -torch.tensor(mean, device=device) / std_tensor


# --------------------------------------------------------------------------------------------
# Data sources: where a trainer's batches come from
# --------------------------------------------------------------------------------------------
#
# `OnDeviceData` below serves the canonical 32 x 32 datasets; `skipinit.imagenet.ImageNetStream`
# an ImageNet folder read from disk. Both offer `num_classes`, `num_train`, `num_test`,
# `steps_per_epoch`, `shared` (the members share a seed, hence one batch), `fingerprint` (what
# a checkpoint must have been trained on), `train_batches(epoch)`: the epoch's `steps_per_epoch`
# batches, drawn from (cell seed, epoch) alone so that a resumed run redraws them, and
# `test_batches()`. A batch is the normalized float inputs on the device with their labels:
# [B, C, H, W] and [B] when shared, else channel-stacked [B, N*C, H, W] (see `normalize`) and [N, B].


def full_batches(num_images: int, batch_size: int, what: str) -> int:
    """Steps per epoch: the last partial batch is dropped, so every step sees `batch_size` examples."""
    if num_images < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {num_images} {what}")
    return num_images // batch_size


class OnDeviceData:
    """A canonical dataset (uint8 32 x 32 images) held on the device and augmented there: no workers."""

    def __init__(self, dataset: CanonicalDataset, cells: list[dict], options: EngineOptions, device: torch.device):
        first = cells[0]
        self.device, self.channels_last = device, options.channels_last
        self.batch_size = int(first["batch_size"])
        self.seeds = [int(cell["seed"]) for cell in cells]
        self.shared = len(set(self.seeds)) == 1
        self.test_chunk = max(100, 4096 // len(cells))
        self.num_classes = dataset.num_classes
        subset = balanced_subset(dataset.train_labels, int(first["train_subset"]))
        self.train_images = pad_images(dataset.train_images[subset], device)
        self.train_labels = torch.from_numpy(np.asarray(dataset.train_labels)[subset]).long().to(device)
        test = balanced_subset(dataset.test_labels, int(first.get("test_subset", 0)))
        self.test_images = torch.from_numpy(np.ascontiguousarray(dataset.test_images[test])).to(device)
        self.test_labels = torch.from_numpy(np.asarray(dataset.test_labels)[test]).long().to(device)
        self.num_train, self.num_test = len(subset), len(test)
        self.steps_per_epoch = full_batches(self.num_train, self.batch_size, "training images")
        self.scale, self.shift = normalization(CIFAR_MEAN, CIFAR_STD, device)
        self.fingerprint = {
            "train": self.num_train, "test": self.num_test, "classes": dataset.num_classes,
            "sha256": dataset.provenance.get("canonical_sha256") or dataset.provenance.get("source_sha256"),
        }

    def plans(self, epoch: int) -> dict[str, torch.Tensor]:
        """The epoch's plan: [n] tensors when every member shares a seed, else [N, n]."""
        seeds = self.seeds[:1] if self.shared else self.seeds
        plans = [epoch_plan(self.num_train, seed, epoch, self.device) for seed in seeds]
        if self.shared:
            return plans[0]
        return {key: torch.stack([plan[key] for plan in plans]) for key in plans[0]}

    def batch(self, plan: dict[str, torch.Tensor], step_in_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented, normalized inputs and labels of one step: [B, ...] shared or [N, B, ...]."""
        window = slice(step_in_epoch * self.batch_size, (step_in_epoch + 1) * self.batch_size)
        index = plan["index"][..., window]
        images = augment(self.train_images, index, plan["dy"][..., window], plan["dx"][..., window], plan["flip"][..., window])
        return normalize(images, self.scale, self.shift, self.channels_last), self.train_labels[index]

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plans(epoch)
        for step_in_epoch in range(self.steps_per_epoch):
            yield self.batch(plan, step_in_epoch)

    def test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.num_test, self.test_chunk):
            window = slice(start, start + self.test_chunk)
            yield normalize(self.test_images[window], self.scale, self.shift, self.channels_last), self.test_labels[window]


def data_source(dataset, cells: list[dict], options: EngineOptions, device: torch.device):
    """The batches for `dataset`: a CanonicalDataset held on the device, or an ImageNetFolder streamed from disk."""
    from skipinit.imagenet import ImageNetFolder, ImageNetStream

    if isinstance(dataset, ImageNetFolder):
        return ImageNetStream(dataset, cells, options, device)
    return OnDeviceData(dataset, cells, options, device)


# --------------------------------------------------------------------------------------------
# Channel packing: the members side by side in the channel dimension
# --------------------------------------------------------------------------------------------
#
# A pack of N networks runs as one network on channel-stacked tensors [B, N*C, ...], member n
# owning channels n*C..(n+1)*C-1: a conv becomes a grouped conv (groups x N), a BN one BN over
# N*C channels (per-channel statistics, so exactly per member), the classifier a batched matmul,
# and ReLU, pooling, dropout and residual additions act on every channel alike. Each kernel is
# the member's own, run once for all members: no vmap, no per-op batching overhead.


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
            state = {"weight": weight, "bias": bias, "running_mean": mean, "running_var": var, "num_batches_tracked": self.num_batches_tracked}
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
        per_channel = self.value.repeat_interleave(x.shape[1] // self.members)
        # In x's dtype, as a 0-dim scalar would be in the member's own network (bf16 stays bf16).
        per_channel = per_channel.view(1, -1, *([1] * (x.dim() - 2))).to(x.dtype)
        return x * per_channel if self.multiply else x + per_channel


def pack_leaf(name: str, module: nn.Module, leaves: dict, buffers: dict, members: int) -> nn.Module | None:
    """The channel-packed stand-in for one leaf module, the module itself if it holds no state, or None."""
    from skipinit.models import ScalarBias, ScalarGain

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


# --------------------------------------------------------------------------------------------
# Members: models, flat parameter buffer, forward
# --------------------------------------------------------------------------------------------

PACKING = "auto"  # auto (channels, else vmap) | channels | vmap: how packs of several members run


def build_model(cell: dict, num_classes: int) -> nn.Module:
    """The cell's network, on the CPU (initialization does not depend on the device)."""
    from skipinit.models import resnet50_v2, wide_resnet

    alpha = cell["alpha_init"]
    alpha = "1/sqrt(d)" if str(alpha).replace(" ", "") == "1/sqrt(d)" else float(alpha)
    settings = {"alpha_init": alpha, "ghost_batch_size": int(cell["ghost_batch_size"]) or None, "dropout": float(cell["dropout"])}
    if cell["arch"] == "wrn":
        return wide_resnet(int(cell["depth"]), int(cell["width"]), cell["variant"], num_classes, **settings)
    if cell["arch"] == "resnet50_v2":
        return resnet50_v2(cell["variant"], num_classes, **settings)
    raise ValueError(f"arch={cell['arch']!r} is not supported by the training engine; allowed: wrn, resnet50_v2")


class Members:
    """The models of a pack as one flat parameter buffer, with one forward for all of them.

    `params`, `grads` and `momentum` are [N, P] tensors (a row per member); the parameters the
    forward uses are views of `params` and their `.grad`s views of `grads`. `lr_scale` is the [P]
    learning-rate multiplier of every parameter entry, or None where all are 1. `buffers` maps each BN
    buffer name to a stacked [N, ...] tensor (the module's own buffer for a pack of one).
    `mode`: 'plain' (one member: the module itself), 'channels' (see pack_channels) or 'vmap'
    (`functional_call` under `torch.vmap`: the fallback for modules channel packing can't express).
    """

    def __init__(self, cells: list[dict], num_classes: int, device: torch.device, log: Callable[[str], None] = print):
        models = []
        for cell in cells:
            torch.manual_seed(int(cell["seed"]))
            models.append(build_model(cell, num_classes))
        self.size = len(models)
        self.layout, offset = [], 0
        for name, param in models[0].named_parameters():
            self.layout.append((name, tuple(param.shape), offset))
            offset += param.numel()
        multipliers = lr_multipliers(models[0])
        self.lr_scale = None
        if multipliers:
            self.lr_scale = torch.ones(offset, device=device)
            for name, shape, start in self.layout:
                self.lr_scale[start:start + math.prod(shape)] = multipliers.get(name, 1.0)
        self.params = torch.zeros((self.size, offset), device=device)
        self.grads = torch.zeros_like(self.params)
        self.momentum = torch.zeros_like(self.params)
        with torch.no_grad():
            for row, model in enumerate(models):
                self.params[row] = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(device)
        if self.size == 1:
            self.mode = "plain"
            self.module = models[0].to(device)
            self.leaves = dict(self.module.named_parameters())
            for name, shape, offset in self.layout:
                self.leaves[name].data = self.member_view(self.params, offset, shape, 0)
            self.buffers = dict(self.module.named_buffers())
        else:
            self.leaves = {name: nn.Parameter(self.stacked_view(self.params, offset, shape)) for name, shape, offset in self.layout}
            self.buffers = {name: torch.stack([m.get_buffer(name) for m in models]).to(device) for name, _ in models[0].named_buffers()}
            self.mode, self.module = "vmap", copy.deepcopy(models[0]).to("meta")  # vmap: a skeleton, functional_call supplies state
            if PACKING in ("auto", "channels"):
                packed = pack_channels(models[0], self.leaves, self.buffers, self.size)
                problem = "a module it cannot pack" if packed is None else self.check_packing(packed, models[0], device)
                if problem is None:
                    self.mode, self.module = "channels", packed
                else:
                    log(f"channel packing unavailable ({problem}); packing with torch.vmap instead")
        for name, shape, offset in self.layout:
            self.leaves[name].grad = self.stacked_view(self.grads, offset, shape) if self.size > 1 else self.member_view(self.grads, offset, shape, 0)

    def stacked_view(self, flat: torch.Tensor, offset: int, shape: tuple) -> torch.Tensor:
        return flat[:, offset:offset + math.prod(shape)].view(self.size, *shape)

    def member_view(self, flat: torch.Tensor, offset: int, shape: tuple, member: int) -> torch.Tensor:
        return flat[member, offset:offset + math.prod(shape)].view(shape)

    @torch.no_grad()
    def check_packing(self, packed: nn.Module, model: nn.Module, device: torch.device) -> str | None:
        """Compare the packed forward with each member's own (eval mode, perturbed parameters).

        A guard against a model whose containers do something channel-dependent: the members'
        parameters get a seeded perturbation (so zero-initialized layers are exercised too), and
        are restored exactly afterwards. TF32 is off meanwhile, so float32 agrees to ~1e-6.
        """
        generator = torch.Generator(device=device).manual_seed(0)
        saved = self.params.clone()
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        reference = copy.deepcopy(model).to(device).eval()
        packed.eval()
        try:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            self.params.add_(0.05 * torch.randn(self.params.shape, generator=generator, device=device))
            x = torch.randn((2, 3, 32, 32), generator=generator, device=device)
            got = packed(torch.cat([x] * self.size, dim=1))
            got = got.view(2, self.size, -1).transpose(0, 1)
            for member in range(self.size):
                state = {name: self.member_view(self.params, offset, shape, member) for name, shape, offset in self.layout}
                state.update({name: value[member] for name, value in self.buffers.items()})
                want = torch.func.functional_call(reference, state, (x,))
                error = (got[member] - want).abs().max().item()
                if not error <= 1e-4 * (1.0 + want.abs().max().item()):
                    return f"member {member} differs from its own network by {error:.3g}"
        finally:
            self.params.copy_(saved)
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
            packed.train()
        return None

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits [N, B, classes] from one batch [B, C, H, W] (`shared`) or channel-stacked [B, N*C, H, W]."""
        if self.mode == "plain":
            return self.module(x).unsqueeze(0)
        if self.mode == "channels":
            if shared:
                stacked = torch.cat([x] * self.size, dim=1)
                x = stacked.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else stacked
            out = self.module(x)
            return out.view(out.shape[0], self.size, -1).transpose(0, 1)
        if not shared:
            x = x.view(x.shape[0], self.size, -1, *x.shape[2:]).transpose(0, 1)  # [N, B, C, H, W]
        call = lambda params, buffers, inputs: torch.func.functional_call(self.module, (params, buffers), (inputs,))  # noqa: E731
        batched = torch.func.vmap(call, in_dims=(0, 0, None if shared else 0), randomness="different")
        return batched(self.leaves, self.buffers, x)

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        """Buffers with the member dim (added for a pack of one), for checkpoints."""
        return {name: (b if self.size > 1 else b.unsqueeze(0)).detach().cpu().clone() for name, b in self.buffers.items()}

    @torch.no_grad()
    def load_state(self, params: torch.Tensor, momentum: torch.Tensor, buffers: dict[str, torch.Tensor]) -> None:
        self.params.copy_(params)
        self.momentum.copy_(momentum)
        for name, value in buffers.items():
            self.buffers[name].copy_(value if self.size > 1 else value[0])


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy [N] (float32) and number of correct predictions [N] of each member."""
    members, batch, classes = logits.shape
    labels = labels.expand(members, batch)
    per_example = F.cross_entropy(logits.reshape(-1, classes).float(), labels.reshape(-1), reduction="none")
    return per_example.view(members, batch).mean(1), (logits.argmax(-1) == labels).sum(1)


@torch.no_grad()
def sgd_step(params: torch.Tensor, grads: torch.Tensor, momentum_buffer: torch.Tensor, lr: torch.Tensor, active: torch.Tensor,
             weight_decay: float, momentum: float, nesterov: bool, lr_scale: torch.Tensor | None = None) -> None:
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


# --------------------------------------------------------------------------------------------
# Checkpoints: one file, payload + embedded sha256, written atomically
# --------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` atomically (temp file + os.replace) with its sha256 embedded in the header."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(CHECKPOINT_MAGIC + digest + b"\n" + payload)
            handle.flush()
            os.fsync(handle.fileno())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and verify a checkpoint; raise CheckpointError if it is not exactly what was written."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CheckpointError(f"unreadable ({error})") from None
    head = len(CHECKPOINT_MAGIC)
    if not data.startswith(CHECKPOINT_MAGIC) or len(data) < head + 65:
        raise CheckpointError("not a skipinit training checkpoint (bad header or truncated)")
    recorded, payload = data[head:head + 64].decode(errors="replace"), data[head + 65:]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != recorded:
        raise CheckpointError(f"checksum mismatch (sha256 {actual[:12]}... != recorded {recorded[:12]}...)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # a valid checksum over an unloadable payload: still garbage
        raise CheckpointError(f"unloadable payload ({type(error).__name__}: {error})") from None


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} asked for CUDA, but torch {torch.__version__} sees no CUDA device; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: the engine runs on cpu or cuda")
    return device


def is_out_of_memory(error: BaseException) -> bool:
    """A resource fault: CUDA OOM, or the CPU allocator giving up."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    patterns = ("out of memory", "can't allocate memory", "alloc_failed")  # CUDA, CPU allocator, cuBLAS/cuDNN
    return isinstance(error, RuntimeError) and any(pattern in message for pattern in patterns)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressBar:
    """A minimal bar over steps on stderr, drawn only for a terminal (log files stay clean)."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self.enabled = total > 0 and sys.stderr.isatty()
        self.every = max(1, total // 100)

    def update(self, done: int) -> None:
        if self.enabled and (done % self.every == 0 or done == self.total):
            filled = 30 * done // self.total
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (len(self.label) + 50) + "\r")
            sys.stderr.flush()


@contextlib.contextmanager
def engine_settings(options: EngineOptions, device: torch.device):
    """Threads, determinism, cuDNN autotuning and warning filters for one pack; restored afterwards."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            if options.threads:
                torch.set_num_threads(int(options.threads))
            if options.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
                torch.use_deterministic_algorithms(True, warn_only=True)  # warn, never crash, on an op without one
            if device.type == "cuda":
                torch.backends.cudnn.deterministic = options.deterministic
                torch.backends.cudnn.benchmark = not options.deterministic  # fixed shapes: autotuning pays
            yield
        finally:
            torch.set_num_threads(saved[0])
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


def micro_batch_size(batch_size: int, micro_batch: int) -> int:
    """Examples per forward/backward: `micro_batch` where it splits the batch evenly, else the whole batch."""
    if micro_batch <= 0 or micro_batch >= batch_size:
        return batch_size
    if batch_size % micro_batch:
        raise ValueError(f"micro_batch={micro_batch} does not divide batch_size={batch_size}; choose a divisor, or micro_batch: 0")
    return micro_batch


DIVERGENCE_POLL_STEPS = 8  # how often a step looks (without waiting) whether every member has diverged


class PackTrainer:
    """Everything one pack needs on the device: its data source, members, schedule, divergence state."""

    def __init__(self, cells: list[dict], dataset: CanonicalDataset | ImageNetFolder, options: EngineOptions,
                 log: Callable[[str], None] = print):
        if not cells:
            raise ValueError("train_pack needs at least one cell")
        self.cells = [dict(cell) for cell in cells]
        self.config = [{**CELL_DEFAULTS, **cell} for cell in cells]
        check_pack(self.config)
        first = self.config[0]
        if first["schedule"] not in SCHEDULES:
            raise ValueError(f"schedule={first['schedule']!r} is unknown; allowed: {', '.join(SCHEDULES)}")
        if options.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision={options.precision!r}: use bf16 or fp32")
        self.options, self.log = options, log
        self.device = resolve_device(options.device)
        self.size = len(cells)
        self.epochs = int(first["epochs"])
        self.batch_size = int(first["batch_size"])
        self.use_bf16 = self.device.type == "cuda" and options.precision == "bf16"
        self.precision = "bf16" if self.use_bf16 else "fp32"
        self.micro_batch = micro_batch_size(self.batch_size, options.micro_batch)

        self.data = data_source(dataset, self.config, options, self.device)
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.epochs * self.steps_per_epoch
        self.seeds = [int(cell["seed"]) for cell in self.config]
        self.shared = self.data.shared  # one batch serves every member
        self.members = Members(self.config, self.data.num_classes, self.device, log)
        self.lrs = lr_table(first["schedule"], [float(c["lr"]) for c in self.config], self.total_steps, self.device)
        self.weight_decay, self.momentum = float(first["weight_decay"]), float(first["momentum"])
        self.nesterov = bool(first["nesterov"])
        self.alive = torch.ones(self.size, dtype=torch.bool, device=self.device)
        self.diverged_at = torch.full((self.size,), -1, dtype=torch.long, device=self.device)
        self.threshold = float(options.divergence_loss)
        self.alive_host = torch.ones(self.size, dtype=torch.bool, pin_memory=self.device.type == "cuda")
        self.alive_copied: torch.cuda.Event | None = None

        self.epoch, self.step_count = 0, 0
        self.curves: list[list[dict]] = [[] for _ in cells]
        self.wall_seconds = self.train_seconds = 0.0
        self.loss_fn, self.update_fn = self.forward_losses, sgd_step
        if options.compile:
            self.loss_fn = CompiledOrEager(self.forward_losses, log, "forward")
            self.update_fn = CompiledOrEager(sgd_step, log, "SGD update")

    # ---- steps ----------------------------------------------------------------------------

    def autocast(self):
        if self.use_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_losses(self, x: torch.Tensor, y: torch.Tensor, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.members.forward(x, shared)
        return member_losses(logits, y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, divergence check and SGD update of every member; no host sync.

        A batch larger than `micro_batch` runs as equal micro-batches whose gradients accumulate in
        the flat gradient buffer, each scaled by 1/chunks: the mean loss of the whole batch, in the
        memory of one micro-batch. Batch norm then normalizes over each micro-batch (and updates its
        running statistics once per micro-batch), as a ghost batch norm of that size would.
        """
        self.members.grads.zero_()
        chunks = self.batch_size // self.micro_batch
        losses, correct = 0.0, 0
        for inputs, labels in zip(x.split(self.micro_batch), y.split(self.micro_batch, dim=-1)):
            part_losses, part_correct = self.loss_fn(inputs, labels, self.shared)
            (part_losses.sum() / chunks).backward()
            losses, correct = losses + part_losses.detach() / chunks, correct + part_correct
        bad = ~torch.isfinite(losses) | (losses > self.threshold)
        self.diverged_at = torch.where(bad & self.alive, self.step_count, self.diverged_at)
        self.alive &= ~bad
        self.update_fn(self.members.params, self.members.grads, self.members.momentum, self.lrs[self.step_count], self.alive,
                       self.weight_decay, self.momentum, self.nesterov, self.members.lr_scale)
        self.step_count += 1
        return losses, correct

    def train_epoch(self, epoch: int) -> dict:
        """One epoch of every member; reads the device once, at the end."""
        torch.manual_seed(derive_seed(*self.seeds, epoch, 2))  # dropout masks, reproducible on resume
        self.members.train(True)
        loss_sum = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        correct_sum = torch.zeros(self.size, dtype=torch.long, device=self.device)
        bar = ProgressBar(self.steps_per_epoch, f"epoch {epoch + 1}/{self.epochs}")
        start = time.perf_counter()
        steps = 0
        for k, (x, y) in enumerate(self.data.train_batches(epoch)):
            losses, correct = self.step(x, y)
            loss_sum += losses
            correct_sum += correct
            steps += 1
            bar.update(k + 1)
            if steps % DIVERGENCE_POLL_STEPS == 0 and self.all_diverged_lately():
                break  # every member has diverged: the rest of the budget would change nothing
        lr_now = self.lrs[self.step_count - 1].tolist()
        losses = (loss_sum / steps).tolist()  # the one sync of the epoch
        accuracy = (100.0 * correct_sum.double() / (steps * self.batch_size)).tolist()
        seconds = time.perf_counter() - start
        bar.close()
        self.train_seconds += seconds
        return {"train_loss": losses, "train_acc": accuracy, "lr": lr_now, "seconds": seconds, "steps": steps}

    def all_diverged_lately(self) -> bool:
        """Whether every member had diverged a few steps ago, asked without waiting for the device.

        On the CPU the flags are simply read. On CUDA the flags travel to pinned host memory by a
        non-blocking copy; its value is read only once its event reports completion, so the step
        loop never stalls (the answer is a few steps stale, which only delays the early stop).
        """
        if self.device.type != "cuda":
            return not bool(self.alive.any())
        if self.alive_copied is not None and not self.alive_copied.query():
            return False
        finished = self.alive_copied is not None and not bool(self.alive_host.any())
        self.alive_host.copy_(self.alive, non_blocking=True)
        self.alive_copied = torch.cuda.Event()
        self.alive_copied.record()
        return finished

    @torch.no_grad()
    def evaluate(self) -> tuple[list[float], list[float]]:
        """Mean test loss and accuracy (percent) of every member on the full test set."""
        self.members.train(False)
        count = self.data.num_test
        loss_sum = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        correct_sum = torch.zeros(self.size, dtype=torch.long, device=self.device)
        for x, y in self.data.test_batches():
            losses, correct = self.loss_fn(x, y, True)
            loss_sum += losses.double() * x.shape[0]
            correct_sum += correct
        self.members.train(True)
        return (loss_sum / count).tolist(), (100.0 * correct_sum.double() / count).tolist()

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "cells": self.cells, "fingerprint": self.data.fingerprint, "layout": [list(entry) for entry in self.members.layout],
            "epoch": self.epoch, "step": self.step_count,
            "params": self.members.params.detach().cpu().clone(), "momentum": self.members.momentum.cpu().clone(),
            "buffers": self.members.stacked_buffers(), "alive": self.alive.cpu().clone(), "diverged_at": self.diverged_at.cpu().clone(),
            "curves": self.curves, "wall_seconds": self.wall_seconds, "train_seconds": self.train_seconds,
        }

    def resume(self, checkpoint: str | os.PathLike | None) -> None:
        """Continue from `checkpoint` if it exists, verifies and belongs to this pack; else start fresh."""
        if checkpoint is None or not Path(checkpoint).exists():
            return
        try:
            state = load_checkpoint(checkpoint)
            mismatch = self.mismatch(state)
        except CheckpointError as error:
            self.log(f"checkpoint {checkpoint} is corrupt: {error}; ignoring it and starting from scratch")
            return
        if mismatch:
            self.log(f"checkpoint {checkpoint} belongs to another run ({mismatch}); ignoring it and starting from scratch")
            return
        self.members.load_state(state["params"], state["momentum"], state["buffers"])
        self.alive.copy_(state["alive"])
        self.diverged_at.copy_(state["diverged_at"])
        self.epoch, self.step_count, self.curves = int(state["epoch"]), int(state["step"]), state["curves"]
        self.wall_seconds, self.train_seconds = float(state["wall_seconds"]), float(state["train_seconds"])
        self.log(f"resuming from checkpoint {checkpoint} after epoch {self.epoch}/{self.epochs} (step {self.step_count})")

    def mismatch(self, state: dict) -> str | None:
        """Why a verified checkpoint cannot be resumed here (another pack, dataset or model), or None."""
        try:
            if state["cells"] != self.cells:
                return "different cells"
            if state["fingerprint"] != self.data.fingerprint:
                return "different dataset"
            if [tuple(entry) for entry in state["layout"]] != [(n, tuple(s), o) for n, s, o in self.members.layout]:
                return "different model layout"
            buffers = self.members.stacked_buffers()
            if (tuple(state["params"].shape) != tuple(self.members.params.shape)
                    or tuple(state["momentum"].shape) != tuple(self.members.momentum.shape)
                    or {k: tuple(v.shape) for k, v in state["buffers"].items()} != {k: tuple(v.shape) for k, v in buffers.items()}
                    or tuple(state["alive"].shape) != (self.size,) or tuple(state["diverged_at"].shape) != (self.size,)):
                return "different parameter or buffer shapes"
            if not 0 <= int(state["epoch"]) <= self.epochs:
                return f"epoch {state['epoch']} outside 0..{self.epochs}"
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(f"incomplete state ({type(error).__name__}: {error})") from None
        return None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, checkpoint: str | os.PathLike | None = None) -> list[dict]:
        """Train every member to its epoch budget (or until all diverge); return one result each."""
        self.resume(checkpoint)
        session_start, session_wall0 = time.perf_counter(), self.wall_seconds
        session_epochs = 0
        while self.epoch < self.epochs and bool(self.alive.any()):
            metrics = self.train_epoch(self.epoch)
            self.epoch += 1
            all_diverged = not bool(self.alive.any())
            evaluate = self.epoch == self.epochs or all_diverged or self.epoch % max(1, self.options.eval_every) == 0
            test_loss, test_acc = self.evaluate() if evaluate else ([None] * self.size, [None] * self.size)
            self.wall_seconds = session_wall0 + time.perf_counter() - session_start
            session_epochs += 1
            eta = (time.perf_counter() - session_start) / session_epochs * (self.epochs - self.epoch)
            rate = self.size * metrics["steps"] * self.batch_size / metrics["seconds"]
            diverged_at = self.diverged_at.tolist()
            for i in range(self.size):
                point = {
                    "epoch": self.epoch, "step": self.step_count, "lr": metrics["lr"][i],
                    "train_loss": metrics["train_loss"][i], "train_acc": metrics["train_acc"][i],
                    "test_loss": test_loss[i], "test_acc": test_acc[i], "seconds": self.wall_seconds,
                }
                self.curves[i].append(point)
                self.log(self.progress_line(i, point, rate, eta, diverged_at[i]))
            if checkpoint is not None:
                save_checkpoint(checkpoint, self.state())
        return self.results()

    def progress_line(self, i: int, point: dict, rate: float, eta: float, diverged_at: int) -> str:
        cell = self.config[i]
        test = "n/a" if point["test_acc"] is None else f"{point['test_acc']:.2f}%"
        line = (f"epoch {point['epoch']}/{self.epochs} lr={cell['lr']:g} seed={cell['seed']} | "
                f"train loss {point['train_loss']:.4f} acc {point['train_acc']:.2f}% | test acc {test} | "
                f"lr now {point['lr']:.4g} | {rate:.0f} img/s (pack) | ETA {format_seconds(eta)}")
        return line + (f" | DIVERGED at step {diverged_at}" if diverged_at >= 0 else "")

    def results(self) -> list[dict]:
        diverged_at = self.diverged_at.tolist()
        device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        rate = self.size * self.step_count * self.batch_size / self.train_seconds if self.train_seconds else None
        results = []
        for i, cell in enumerate(self.cells):
            curve = self.curves[i]
            last = curve[-1] if curve else {}
            evaluated = [point for point in curve if point["test_acc"] is not None]
            diverged = diverged_at[i] >= 0
            results.append({
                **cell,
                "test_acc": evaluated[-1]["test_acc"] if evaluated else None,
                "test_loss": evaluated[-1]["test_loss"] if evaluated else None,
                "train_loss": last.get("train_loss"), "train_acc": last.get("train_acc"),
                "diverged": diverged, "diverged_step": diverged_at[i] if diverged else None,
                "status": "diverged" if diverged else "ok", "error": None,
                "epochs_completed": self.epoch, "steps": self.step_count,
                "wall_seconds": self.wall_seconds, "images_per_second": rate,
                "device": device_name, "torch_version": torch.__version__, "precision": self.precision,
                "pack_size": self.size, "micro_batch": self.micro_batch, "curve": [dict(point) for point in curve],
            })
        return results


class CompiledOrEager:
    """`torch.compile(fn)`, falling back to `fn` for good (with one log line) if compiling fails.

    Compilation happens before the compiled code runs, so a failed attempt has changed no state.
    """

    def __init__(self, fn: Callable, log: Callable[[str], None], what: str):
        self.fn, self.log, self.what = fn, log, what
        self.compiled = torch.compile(fn)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as error:
                if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    raise  # a real error in the computation, not in compiling it
                first_line = (str(error).strip().splitlines() or [""])[0]
                self.log(f"torch.compile of the {self.what} failed ({type(error).__name__}: {first_line}); running it eagerly")
                self.compiled = None
        return self.fn(*args)


def check_pack(cells: list[dict]) -> None:
    """Members of a pack may differ only in lr and seed: everything else is one computation."""
    first = cells[0]
    for cell in cells[1:]:
        differing = sorted(k for k in CELL_DEFAULTS if k not in PACKED_KEYS and cell[k] != first[k])
        if differing:
            raise ValueError(f"cells of one pack may differ only in {', '.join(PACKED_KEYS)}; these differ too: {', '.join(differing)}")


def failed_results(cells: list[dict], error: BaseException, device: str, precision: str) -> list[dict]:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    message = f"{type(error).__name__}: {reason}. Hint: {OOM_HINT}"
    return [{
        **cell, "test_acc": None, "test_loss": None, "train_loss": None, "train_acc": None,
        "diverged": False, "diverged_step": None, "status": "failed", "error": message,
        "epochs_completed": 0, "steps": 0, "wall_seconds": None, "images_per_second": None,
        "device": device, "torch_version": torch.__version__, "precision": precision, "pack_size": len(cells), "micro_batch": None, "curve": [],
    } for cell in cells]


def train_pack(cells: list[dict], dataset: CanonicalDataset | ImageNetFolder, options: EngineOptions, checkpoint: str | os.PathLike | None = None,
               log: Callable[[str], None] = print) -> list[dict]:
    """Train a pack of cells (differing only in lr and seed) as one batched computation.

    `dataset`: a CanonicalDataset (held on the device) or, for ImageNet cells, an ImageNetFolder
    (streamed from disk, `options.image_size` px crops).

    Returns one result per cell, in input order: the cell's keys plus test_acc/test_loss (final,
    full test set, percent / mean cross-entropy), train_loss/train_acc (mean over the last epoch's
    steps), diverged, diverged_step (0-based global step of the first non-finite or too-large
    loss, else None), status ('ok' | 'diverged' | 'failed'), error, epochs_completed, steps,
    wall_seconds (this pack, all sessions), images_per_second (the *pack's* training throughput:
    images of all members together per second of training, evaluation excluded), device,
    torch_version, precision (effective: fp32 on CPU), pack_size and curve (per epoch: epoch,
    step, lr at the epoch's last step, train/test metrics with test_* None where not evaluated,
    seconds = wall seconds since the pack started).

    Divergence never raises: the member stops updating and the others go on; a pack whose members
    have all diverged stops early. An out-of-memory error marks every member 'failed', with a
    hint, and returns normally. With `checkpoint`, the state is saved atomically after every epoch
    and resumed on restart; a corrupt or foreign checkpoint is logged and training starts over.
    """
    device = resolve_device(options.device)
    precision = "bf16" if device.type == "cuda" and options.precision == "bf16" else "fp32"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with engine_settings(options, device):
        try:
            return PackTrainer(cells, dataset, options, log).run(checkpoint)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            failure = failed_results(cells, error, device_name, precision)
        # Out of the handler, the traceback (and the device memory its frames hold) is gone.
        if device.type == "cuda":
            torch.cuda.empty_cache()
        log(f"pack of {len(cells)} cell(s) failed on {device_name}: {failure[0]['error']}")
        return failure
