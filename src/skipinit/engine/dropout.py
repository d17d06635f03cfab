"""Dropout masks drawn per member, each from a generator of the member's own.

A cell's numbers must not depend on its pack: each member's masks come from a `torch.Generator`
seeded from that cell's seed and the epoch alone (`derive_seed(seed, epoch, 2)`), the same on every
device and in every packing mode, and its state travels in a mid-epoch checkpoint.

Masks are drawn eagerly before the step (`draw`), into static buffers that the step reads, so a
captured CUDA graph replays them without capturing a generator. Each member draws one
[micro-batch, features] mask per micro-batch in order, then the buffer is scaled by 1/(1-p), as
`F.dropout` draws and scales on the CPU: a pack of one trains exactly as it did with the global
generator seeded per epoch.
"""

from __future__ import annotations

import torch

from skipinit.data.batches import derive_seed

DROPOUT_STREAM = 2  # the third argument of derive_seed for dropout (1 is the epoch's data plan)


class DropoutNoise:
    """Every member's dropout masks for one step: a [N, B, features] buffer per dropout layer (p, features)."""

    def __init__(self, layers: list[tuple[float, int]], seeds: list[int], batch_size: int, device: torch.device):
        self.layers, self.seeds = layers, seeds
        self.generators = [torch.Generator(device=device) for _ in seeds]
        self.buffers = [torch.empty((len(seeds), batch_size, features), device=device) for _, features in layers]

    def begin_epoch(self, epoch: int) -> None:
        for generator, seed in zip(self.generators, self.seeds):
            generator.manual_seed(derive_seed(seed, epoch, DROPOUT_STREAM))

    def draw(self, micro_batch: int) -> None:
        """The step's masks: member by member, micro-batch by micro-batch, from each member's generator."""
        for (p, _), buffer in zip(self.layers, self.buffers):
            for member, generator in enumerate(self.generators):
                for chunk in buffer[member].split(micro_batch):
                    chunk.bernoulli_(1 - p, generator=generator)
            buffer.div_(1 - p)

    def chunk(self, index: int, micro_batch: int) -> list[torch.Tensor]:
        """The masks of micro-batch `index`: a [N, micro_batch, features] view per layer."""
        return [buffer[:, index * micro_batch : (index + 1) * micro_batch] for buffer in self.buffers]

    def state(self) -> list[torch.Tensor]:
        return [generator.get_state() for generator in self.generators]

    def load(self, states: list[torch.Tensor]) -> None:
        for generator, state in zip(self.generators, states):
            generator.set_state(state)
