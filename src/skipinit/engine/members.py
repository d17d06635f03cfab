"""The members of a pack: their models, one flat parameter buffer, one forward for all."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from skipinit.engine.options import EngineOptions
from skipinit.engine.packing import pack_channels
from skipinit.models import MemberDropout, lr_multipliers, resnet50_v2, wide_resnet
from skipinit.vocab import ALPHA_SQRT_D, ARCHS, canonical_alpha


def build_model(cell: dict, num_classes: int) -> nn.Module:
    """The cell's network, on the CPU (initialization does not depend on the device)."""
    alpha = cell["alpha_init"]
    alpha = ALPHA_SQRT_D if canonical_alpha(alpha) == ALPHA_SQRT_D else float(alpha)
    settings = {
        "alpha_init": alpha,
        "ghost_batch_size": int(cell["ghost_batch_size"]) or None,
        "dropout": float(cell["dropout"]),
    }
    if cell["arch"] == "wrn":
        return wide_resnet(int(cell["depth"]), int(cell["width"]), cell["variant"], num_classes, **settings)
    if cell["arch"] == "resnet50_v2":
        return resnet50_v2(cell["variant"], num_classes, **settings)
    raise ValueError(f"arch={cell['arch']!r} is not supported by the training engine; allowed: {', '.join(ARCHS)}")


class Members:
    """The models of a pack as one flat parameter buffer, with one forward for all of them.

    `params`, `grads` and `momentum` are [N, P] tensors (a row per member); the parameters the
    forward uses are views of `params` and their `.grad`s views of `grads`. `lr_scale` is the [P]
    learning-rate multiplier of every parameter entry, or None where all are 1. `buffers` maps each BN
    buffer name to a stacked [N, ...] tensor (the module's own buffer for a pack of one).
    `mode`: 'plain' (one member: the module itself), 'channels' (see pack_channels) or 'vmap'
    (`functional_call` under `torch.vmap`: the fallback for modules channel packing can't express).
    `dropout_layers` lists each active `MemberDropout` as (p, features); `forward` sets their masks.
    """

    def __init__(
        self,
        cells: list[dict],
        num_classes: int,
        device: torch.device,
        options: EngineOptions,
        log: Callable[[str], None] = print,
        build: Callable[[dict, int], nn.Module] = build_model,
    ):
        models = []
        for cell in cells:
            torch.manual_seed(int(cell["seed"]))
            models.append(build(cell, num_classes))
        self.size = len(models)
        self.layout, offset = [], 0
        for name, param in models[0].named_parameters():
            self.layout.append((name, tuple(param.shape), offset))
            offset += param.numel()
        multipliers = lr_multipliers(models[0], options.fixup_scalar_lr)
        self.lr_scale = None
        if multipliers:
            self.lr_scale = torch.ones(offset, device=device)
            for name, shape, start in self.layout:
                self.lr_scale[start : start + math.prod(shape)] = multipliers.get(name, 1.0)
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
            self.leaves = {
                name: nn.Parameter(self.stacked_view(self.params, offset, shape)) for name, shape, offset in self.layout
            }
            self.buffers = {
                name: torch.stack([m.get_buffer(name) for m in models]).to(device)
                for name, _ in models[0].named_buffers()
            }
            self.mode, self.module = (
                "vmap",
                copy.deepcopy(models[0]).to("meta"),
            )  # vmap: a skeleton, functional_call supplies state
            if options.packing in ("auto", "channels"):
                packed = pack_channels(models[0], self.leaves, self.buffers, self.size)
                problem = "a module it cannot pack" if packed is None else self.check_packing(packed, models[0], device)
                if problem is None:
                    self.mode, self.module = "channels", packed
                else:
                    log(f"channel packing unavailable ({problem}); packing with torch.vmap instead")
        names = [
            name for name, module in models[0].named_modules() if isinstance(module, MemberDropout) and module.p > 0
        ]
        self.dropouts = [self.module.get_submodule(name) for name in names]
        self.dropout_layers = [(module.p, module.features) for module in self.dropouts]
        for name, shape, offset in self.layout:
            self.leaves[name].grad = (
                self.stacked_view(self.grads, offset, shape)
                if self.size > 1
                else self.member_view(self.grads, offset, shape, 0)
            )

    def stacked_view(self, flat: torch.Tensor, offset: int, shape: tuple) -> torch.Tensor:
        return flat[:, offset : offset + math.prod(shape)].view(self.size, *shape)

    def member_view(self, flat: torch.Tensor, offset: int, shape: tuple, member: int) -> torch.Tensor:
        return flat[member, offset : offset + math.prod(shape)].view(shape)

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
                state = {
                    name: self.member_view(self.params, offset, shape, member) for name, shape, offset in self.layout
                }
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

    def forward(self, x: torch.Tensor, shared: bool, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits [N, B, classes] from one batch [B, C, H, W] (`shared`) or channel-stacked [B, N*C, H, W].

        `noise`: each dropout layer's masks [N, B, features] (`dropout.DropoutNoise`), or None (evaluation).
        """
        if noise is None or not self.dropouts:
            return self._forward(x, shared)
        try:
            if self.mode != "vmap":  # one member's [B, F], or the members side by side as [B, N*F]
                for module, masks in zip(self.dropouts, noise):
                    module.noise = (
                        masks[0] if self.mode == "plain" else masks.transpose(0, 1).reshape(masks.shape[1], -1)
                    )
            return self._forward(x, shared, noise)
        finally:
            for module in self.dropouts:
                module.noise = None

    def _forward(self, x: torch.Tensor, shared: bool, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.mode == "plain":
            return self.module(x).unsqueeze(0)
        if self.mode == "channels":
            if shared:
                stacked = torch.cat([x] * self.size, dim=1)
                x = (
                    stacked.contiguous(memory_format=torch.channels_last)
                    if x.is_contiguous(memory_format=torch.channels_last)
                    else stacked
                )
            out = self.module(x)
            return out.view(out.shape[0], self.size, -1).transpose(0, 1)
        if not shared:
            x = x.view(x.shape[0], self.size, -1, *x.shape[2:]).transpose(0, 1)  # [N, B, C, H, W]
        noise = noise or []

        def call(params, buffers, inputs, *masks):
            for module, mask in zip(self.dropouts, masks):
                module.noise = mask  # this member's [B, F], inside the vmapped call
            return torch.func.functional_call(self.module, (params, buffers), (inputs,))

        batched = torch.func.vmap(
            call, in_dims=(0, 0, None if shared else 0, *[0] * len(noise)), randomness="different"
        )
        return batched(self.leaves, self.buffers, x, *noise)

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        """Buffers with the member dim (added for a pack of one), for checkpoints."""
        return {
            name: (b if self.size > 1 else b.unsqueeze(0)).detach().cpu().clone() for name, b in self.buffers.items()
        }

    @torch.no_grad()
    def load_state(self, params: torch.Tensor, momentum: torch.Tensor, buffers: dict[str, torch.Tensor]) -> None:
        self.params.copy_(params)
        self.momentum.copy_(momentum)
        for name, value in buffers.items():
            self.buffers[name].copy_(value if self.size > 1 else value[0])
