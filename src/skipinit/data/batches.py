"""What every batch source shares: seeds drawn from (cell seed, epoch), full batches, normalization on the device.

A batch source (`ondevice.OnDeviceData` for the canonical 32 x 32 datasets, `imagenet.ImageNetStream`
for an ImageNet folder) offers `num_classes`, `num_train`, `num_test` (the curve's test subset), `num_final`
(the whole test set, which the final evaluation reads), `steps_per_epoch`, `shared`
(the members share a seed, hence one batch), `fingerprint` (what a checkpoint must have been
trained on), `train_batches(epoch, start=0)`: the epoch's `steps_per_epoch` batches from step `start` on,
drawn from (cell seed, epoch) alone so that a resumed run, also one resumed mid-epoch, redraws them,
and `test_batches(final=False)`. A batch is the normalized
float inputs on the device with their labels: [B, C, H, W] and [B] when shared, else
channel-stacked [B, N*C, H, W] (see `normalize`) and [N, B].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Serving:
    """The few engine settings a batch source needs (the engine's options stay above data/): the memory layout of
    its batches, ImageNet's crop size and its decoding worker processes."""

    channels_last: bool = True
    image_size: int = 224
    workers: int = 0


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (cell seed, epoch, purpose): no saved RNG state needed."""
    return int(
        np.random.SeedSequence([int(p) % (1 << 63) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1)
    )


def full_batches(num_images: int, batch_size: int, what: str) -> int:
    """Steps per epoch: the last partial batch is dropped, so every step sees `batch_size` examples."""
    if num_images < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {num_images} {what}")
    return num_images // batch_size


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


def normalization(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) for `normalize`: uint8 pixel p becomes (p / 255 - mean) / std."""
    std_tensor = torch.tensor(std, device=device)
    return 1.0 / (255.0 * std_tensor), -torch.tensor(mean, device=device) / std_tensor
