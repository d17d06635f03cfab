"""The canonical 32 x 32 datasets as a batch source held on the device and augmented there: no workers.

The dataset is copied to the device once, zero-padded by PAD pixels; each epoch draws, from a
`torch.Generator`, a permutation, crop offsets and flips for the whole training set, and a step
crops, flips and gathers its batch with one advanced-indexing op and normalizes it: no
per-sample Python, no worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from skipinit.data.batches import Serving, derive_seed, full_batches, normalization, normalize
from skipinit.data.canonical import CanonicalDataset, balanced_subset

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
PAD = 4  # random-crop padding, pixels


def pad_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x 32 x 32 x 3 -> uint8 N x 40 x 40 x 3 on the device, zero border of PAD pixels."""
    images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    n, height, width, channels = images.shape
    padded = torch.zeros((n, height + 2 * PAD, width + 2 * PAD, channels), dtype=torch.uint8, device=device)
    padded[:, PAD : PAD + height, PAD : PAD + width] = images
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


def augment(
    padded: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, size: int = 32
) -> torch.Tensor:
    """Random crop + horizontal flip of a batch as one gather: `padded[index]` cropped at (dy, dx).

    `index`, `dy`, `dx`, `flip` share any shape S; the result is uint8 S x size x size x C.
    A flipped crop reads its columns right to left.
    """
    offsets = torch.arange(size, device=padded.device)
    rows = dy[..., None] + offsets
    columns = torch.where(flip[..., None], dx[..., None] + (size - 1 - offsets), dx[..., None] + offsets)
    return padded[index[..., None, None], rows[..., :, None], columns[..., None, :]]


def test_chunk(device: torch.device) -> int:
    """Test images per forward pass of a whole pack: large on a GPU (few launches), cache-sized on a CPU, where a
    2,000-image forward pass of WRN-16-1 ran 2.8x slower than the same images in passes of 250 (bench/RESULTS.md)."""
    return 4096 if device.type == "cuda" else 256


class OnDeviceData:
    """A canonical dataset (uint8 32 x 32 images) held on the device and augmented there: no workers."""

    def __init__(self, dataset: CanonicalDataset, cells: list[dict], serving: Serving, device: torch.device):
        first = cells[0]
        self.device, self.channels_last = device, serving.channels_last
        self.batch_size = int(first["batch_size"])
        self.seeds = [int(cell["seed"]) for cell in cells]
        self.shared = len(set(self.seeds)) == 1
        self.test_chunk = max(32, test_chunk(device) // len(cells))
        self.num_classes = dataset.num_classes
        subset = balanced_subset(dataset.train_labels, int(first["train_subset"]))
        self.train_images = pad_images(dataset.train_images[subset], device)
        self.train_labels = torch.from_numpy(np.asarray(dataset.train_labels)[subset]).long().to(device)
        # The curve's evaluations read the class-balanced `test_subset`; the final one reads the whole test set, the
        # paper's quantity (its positions of the subset: `test_subset_index`).
        self.test_subset_index = balanced_subset(dataset.test_labels, int(first["test_subset"]))
        self.final_images = torch.from_numpy(np.ascontiguousarray(dataset.test_images)).to(device)
        self.final_labels = torch.from_numpy(np.asarray(dataset.test_labels)).long().to(device)
        index = torch.from_numpy(np.asarray(self.test_subset_index)).long().to(device)
        self.test_images, self.test_labels = self.final_images[index], self.final_labels[index]
        self.num_train, self.num_test, self.num_final = len(subset), len(index), len(self.final_labels)
        self.steps_per_epoch = full_batches(self.num_train, self.batch_size, "training images")
        self.scale, self.shift = normalization(CIFAR_MEAN, CIFAR_STD, device)
        self.fingerprint = {
            "train": self.num_train,
            "test": self.num_test,
            "classes": dataset.num_classes,
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
        images = augment(
            self.train_images, index, plan["dy"][..., window], plan["dx"][..., window], plan["flip"][..., window]
        )
        return normalize(images, self.scale, self.shift, self.channels_last), self.train_labels[index]

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plans(epoch)
        for step_in_epoch in range(start, self.steps_per_epoch):
            yield self.batch(plan, step_in_epoch)

    def test_batches(self, final: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The curve's test subset in passes of `test_chunk` images; with `final`, the whole test set in its order."""
        images, labels = (self.final_images, self.final_labels) if final else (self.test_images, self.test_labels)
        for start in range(0, len(labels), self.test_chunk):
            window = slice(start, start + self.test_chunk)
            yield normalize(images[window], self.scale, self.shift, self.channels_last), labels[window]
