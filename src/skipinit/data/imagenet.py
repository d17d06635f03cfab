"""The ImageNet data source: an image folder (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`) streamed from disk.

ImageNet (1.28 M training images, about 150 GB) does not fit on the device, so unlike the
canonical 32 x 32 datasets held there (`ondevice.OnDeviceData`), its images are read, decoded,
cropped and flipped by DataLoader worker processes (`threads` of them) into uint8 HWC batches,
pinned when the device is a GPU; the device receives them by non-blocking copies and does the
float conversion, mean/std normalization and channels_last layout itself (`batches.normalize`).

- **Listing** as torchvision's ImageFolder: classes are the sorted folder names (the same in
  train/ and val/), files sorted within each, label = class index. Paths are held in one numpy
  bytes array, not a list of Python strings, so forked workers do not copy 1.28 M refcounted objects.
- **Transforms** as the usual ImageNet recipe: training RandomResizedCrop(image_size) (area
  8%-100%, aspect 3/4-4/3, torchvision's algorithm) and a horizontal flip; evaluation resizes the
  shorter side to image_size * 8/7 (256 for 224) and center-crops image_size. Bilinear,
  antialiased (PIL).
- **Reproducible**: an epoch's order and the seed of every sample's augmentation are drawn in the
  main process from (cell seed, epoch) (`batches.derive_seed`), so the batches depend neither on the
  number of workers nor on which worker decodes what, and a run resumed from an epoch checkpoint
  sees exactly the batches an uninterrupted one would. Workers are seeded from (seed, epoch,
  worker) too, for any library that draws from a global generator.
- **Provenance**: `sha256` digests the sorted file list with file sizes, not the contents
  (hashing 150 GB in every job would cost more than an epoch).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skipinit.data.batches import Serving, derive_seed, full_batches, normalization, normalize
from skipinit.data.canonical import DataNotFoundError, balanced_subset
from skipinit.fileio import atomic_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
LAYOUT = "an image-folder ImageNet: train/<class>/*.JPEG and val/<class>/*.JPEG with the same class folders"


class ImageNetLayoutError(DataNotFoundError):
    """An ImageNet root that is not an image folder with matching train/ and val/ splits."""


def class_folders(root: str | os.PathLike) -> list[str]:
    """The sorted class folder names, checked to be the same in train/ and val/ (no files listed: cheap)."""
    root = Path(root)
    found = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise ImageNetLayoutError(
                f"{folder} is missing; point imagenet.root at {LAYOUT} (set it to null to skip ImageNet)"
            )
        found[split] = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if found["train"] != found["val"]:
        only_train, only_val = (
            sorted(set(found["train"]) - set(found["val"])),
            sorted(set(found["val"]) - set(found["train"])),
        )
        differences = "; ".join(
            f"only in {split}/: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} ({len(names)})"
            for split, names in (("train", only_train), ("val", only_val))
            if names
        )
        raise ImageNetLayoutError(
            f"train/ and val/ of {root} have different class folders ({differences}); sort val/ into the same "
            "class folders as train/ (the official validation images come flat: move each into its class's folder)"
        )
    return found["train"]


class ImageNetFolder:
    """The listing of an image-folder ImageNet: class names, and per split file paths (relative, bytes) and labels."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.classes = tuple(class_folders(self.root))
        if not self.classes:
            raise ImageNetLayoutError(f"{self.root / 'train'} has no class folders; point imagenet.root at {LAYOUT}")
        digest = hashlib.sha256()
        self.files: dict[str, np.ndarray] = {}
        self.labels: dict[str, np.ndarray] = {}
        for split in SPLITS:
            paths, labels, empty = [], [], []
            for label, name in enumerate(self.classes):
                entries = sorted(
                    (entry.name, entry.stat().st_size)
                    for entry in os.scandir(self.root / split / name)
                    if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file()
                )
                if not entries:
                    empty.append(name)
                for file, size in entries:
                    path = f"{split}/{name}/{file}"
                    digest.update(f"{path}\t{size}\n".encode(errors="surrogateescape"))
                    paths.append(os.fsencode(path))
                labels += [label] * len(entries)
            if empty:
                raise ImageNetLayoutError(
                    f"{self.root / split} has class folders without images "
                    f"({', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''}); "
                    f"every class needs images ({', '.join(IMAGE_EXTENSIONS)}) in both splits: {LAYOUT}"
                )
            self.files[split] = np.array(paths)
            self.labels[split] = np.array(labels, dtype=np.int64)
        self.sha256 = digest.hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """The listing as one .npz (`open_imagenet` reads it back): listed once per dataset by the workflow's
        list_imagenet rule, not by every job (1.28 M files stat'ed, minutes on a network file system)."""
        arrays = {f"{kind}_{split}": getattr(self, kind)[split] for kind in ("files", "labels") for split in SPLITS}
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, root=str(self.root), classes=np.array(self.classes), sha256=self.sha256, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageNetFolder:
        """A listing `save` wrote, without reading the folder again."""
        with np.load(path) as saved:
            folder = cls.__new__(cls)
            folder.root, folder.classes, folder.sha256 = (
                Path(str(saved["root"])),
                tuple(map(str, saved["classes"])),
                str(saved["sha256"]),
            )
            folder.files = {split: saved[f"files_{split}"] for split in SPLITS}
            folder.labels = {split: saved[f"labels_{split}"] for split in SPLITS}
        return folder


def open_imagenet(path: str | os.PathLike) -> ImageNetFolder:
    """An ImageNet listing: read from a saved listing (.npz), or made by listing the image folder at `path`."""
    return ImageNetFolder.load(path) if Path(path).is_file() else ImageNetFolder(path)


# --------------------------------------------------------------------------------------------
# Per-image work, in the DataLoader's worker processes
# --------------------------------------------------------------------------------------------


def random_resized_crop_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a crop covering `scale` of the area at aspect `ratio`: torchvision's algorithm.

    Ten tries at a random area and log-uniform aspect; if none fits, the largest central crop
    whose aspect lies within `ratio`.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target_area * aspect))), int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            return left, top, left + w, top + h
    if width / height < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def train_crop(image: Image.Image, size: int, rng: random.Random) -> Image.Image:
    """RandomResizedCrop(size) and a horizontal flip with probability 1/2."""
    image = image.resize((size, size), Image.Resampling.BILINEAR, box=random_resized_crop_box(*image.size, rng))
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def eval_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize(size * 8/7), i.e. the shorter side to 256 for 224, then CenterCrop(size), as torchvision computes them."""
    resize = round(size * 8 / 7)
    width, height = image.size
    new_width, new_height = (
        (resize, int(resize * height / width)) if width <= height else (int(resize * width / height), resize)
    )
    left, top = int(round((new_width - size) / 2)), int(round((new_height - size) / 2))
    return image.resize((new_width, new_height), Image.Resampling.BILINEAR).crop((left, top, left + size, top + size))


class SplitImages:
    """One pass over a split for a DataLoader: item k is image `order[k]` as uint8 HWC and its label.

    With `sample_seeds`, item k is augmented for training from its own seed; without, evaluation-cropped.
    """

    def __init__(
        self, folder: ImageNetFolder, split: str, order: np.ndarray, size: int, sample_seeds: np.ndarray | None = None
    ):
        self.root, self.files, self.labels = str(folder.root), folder.files[split], folder.labels[split]
        self.order, self.size, self.sample_seeds = order, size, sample_seeds

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[np.ndarray, int]:
        index = int(self.order[k])
        with open(os.path.join(self.root, os.fsdecode(self.files[index])), "rb") as handle:
            image = Image.open(handle).convert("RGB")  # ImageNet holds a few CMYK and grayscale JPEGs
        if self.sample_seeds is None:
            image = eval_crop(image, self.size)
        else:
            image = train_crop(image, self.size, random.Random(int(self.sample_seeds[k])))
        return np.asarray(image, dtype=np.uint8).copy(), int(self.labels[index])


def seed_worker(parts: tuple[int, ...], worker: int) -> None:
    """Seed a worker's global generators from (seed, epoch, worker): nothing drawn there depends on the run's
    history."""
    seed = derive_seed(*parts, worker)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# --------------------------------------------------------------------------------------------
# The batch source the trainer reads (see batches.py)
# --------------------------------------------------------------------------------------------


class ImageNetStream:
    """Batches of an ImageNetFolder, decoded by `serving.workers` worker processes (none: by this one), normalized on
    the device."""

    def __init__(self, folder: ImageNetFolder, cells: list[dict], serving: Serving, device: torch.device):
        seeds = sorted({int(cell["seed"]) for cell in cells})
        if len(seeds) > 1:
            raise ValueError(
                f"an ImageNet pack's members must share one seed, got seeds {seeds}: each seed would need its own "
                "input pipeline; use pack: 1, or a pack size that groups one seed's learning rates"
            )
        first = cells[0]
        self.folder, self.device, self.channels_last = folder, device, serving.channels_last
        self.seed, self.shared = seeds[0], True
        self.batch_size, self.image_size = int(first["batch_size"]), int(serving.image_size)
        self.workers = int(serving.workers or 0)
        self.num_classes = len(folder.classes)
        self.train_indices = balanced_subset(folder.labels["train"], int(first["train_subset"]))
        self.test_indices = balanced_subset(folder.labels["val"], int(first["test_subset"]))
        self.num_train, self.num_test = len(self.train_indices), len(self.test_indices)
        self.num_final = len(folder.labels["val"])
        self.steps_per_epoch = full_batches(self.num_train, self.batch_size, f"training images of {folder.root}")
        self.scale, self.shift = normalization(IMAGENET_MEAN, IMAGENET_STD, device)
        self.fingerprint = {
            "train": self.num_train,
            "test": self.num_test,
            "classes": self.num_classes,
            "sha256": folder.sha256,
            "image_size": self.image_size,
        }

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1))
        order = self.train_indices[torch.randperm(self.num_train, generator=generator).numpy()]
        sample_seeds = torch.randint(0, 2**62, (self.num_train,), generator=generator).numpy()
        skip = start * self.batch_size  # a resumed mid-epoch step: the same images from there on, the same crops
        images = SplitImages(self.folder, "train", order[skip:], self.image_size, sample_seeds[skip:])
        return self.batches(images, (self.seed, epoch, 3), drop_last=True)

    def test_batches(self, final: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The curve's validation subset; with `final`, every validation image in the folder's order."""
        indices = np.arange(self.num_final) if final else self.test_indices
        return self.batches(SplitImages(self.folder, "val", indices, self.image_size), (self.seed, 4), drop_last=False)

    def batches(
        self, images: SplitImages, seed_parts: tuple[int, ...], drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decode in workers into (pinned) uint8 batches; copy without blocking, normalize on the device."""
        loader = torch.utils.data.DataLoader(
            images,
            batch_size=self.batch_size,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=functools.partial(seed_worker, seed_parts),
            generator=torch.Generator().manual_seed(
                derive_seed(*seed_parts)
            ),  # leaves the global generator (dropout) alone
        )
        for pixels, labels in loader:
            pixels = pixels.to(self.device, non_blocking=True)
            yield (
                normalize(pixels, self.scale, self.shift, self.channels_last),
                labels.to(self.device, non_blocking=True),
            )
