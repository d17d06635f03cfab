"""Dataset preparation: every source becomes one canonical, checksummed `.npz` file.

The canonical file holds uint8 images (N x 32 x 32 x 3), int64 labels, the class names
and a provenance record (source, sha256 of the source, sizes), for train and test.
Training reads only this file, so every run is tied to the exact bytes it learned from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

from skipinit.fileio import IntegrityError, atomic_path, sha256_file, verify_checksum, write_checksum

SOURCES = ("cifar10", "imagefolder", "synthetic")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataNotFoundError(RuntimeError):
    """No data at the configured place, and no way to fetch it."""


def remedies(dataset: str, source: str, path: str | None) -> str:
    """One paragraph naming the config keys that fix a missing dataset."""
    return (
        f"No data for dataset '{dataset}' (data_source={source}, data_path={path}). Remedies: "
        "point at an image folder or .tar.gz in the cifar10-jpeg layout with "
        "`--config data_source=imagefolder data_path=/path/to/cifar10-jpeg.tar.gz dataset=cifar10-jpeg`; "
        "or use the official CIFAR-10 (downloaded where the network allows, else an existing copy) with "
        "`--config data_source=cifar10 data_path=/path/to/cifar10-root dataset=cifar10`; "
        "or run without real data on the synthetic generator with "
        "`--config data_source=synthetic dataset=synthetic` (or `--configfile config/smoke.yaml`)."
    )


@dataclasses.dataclass(frozen=True)
class CanonicalDataset:
    train_images: np.ndarray  # uint8, N x 32 x 32 x 3
    train_labels: np.ndarray  # int64, N
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    provenance: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def save_canonical(dataset: CanonicalDataset, path: str | os.PathLike) -> str:
    """Write the canonical file atomically and its sha256 sidecar; return the digest."""
    for split in ("train", "test"):
        images = getattr(dataset, f"{split}_images")
        labels = getattr(dataset, f"{split}_labels")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise ValueError(f"{split} images must be uint8 N x 32 x 32 x 3, got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"{split} labels must have shape ({len(images)},), got {labels.shape}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                train_images=dataset.train_images,
                train_labels=dataset.train_labels.astype(np.int64),
                test_images=dataset.test_images,
                test_labels=dataset.test_labels.astype(np.int64),
                classes=np.array(dataset.classes),
                provenance=np.array(json.dumps(dataset.provenance)),
            )
    return write_checksum(path)


def rebuild_hint(path: str | os.PathLike) -> str:
    return f"`rm {path} && snakemake --cores all {path}` (or `make run`)"


def load_canonical(path: str | os.PathLike, verify: bool = True) -> CanonicalDataset:
    """Load a canonical file, refusing it if its bytes differ from the recorded sha256."""
    if verify:
        digest = verify_checksum(path, rebuild_hint(path))
    with np.load(path) as archive:
        provenance = json.loads(str(archive["provenance"]))
        if verify:
            provenance["canonical_sha256"] = digest
        return CanonicalDataset(
            train_images=archive["train_images"],
            train_labels=archive["train_labels"],
            test_images=archive["test_images"],
            test_labels=archive["test_labels"],
            classes=tuple(str(c) for c in archive["classes"]),
            provenance=provenance,
        )


def canonical_sizes(path: str | os.PathLike) -> tuple[int, int]:
    """(train, test) image counts of a canonical file, from its labels alone (no image is read)."""
    with np.load(path) as archive:
        return len(archive["train_labels"]), len(archive["test_labels"])


def from_official_cifar10(
    root: str | os.PathLike, download: bool = True, reader: type | None = None
) -> CanonicalDataset:
    """Official CIFAR-10 through torchvision: an existing copy under `root`, else a download.

    `reader` is torchvision's CIFAR10 dataset class, or a subclass with other checksums (the tests'
    files in the official format).
    """
    from torchvision.datasets import CIFAR10

    CIFAR10 = reader or CIFAR10  # noqa: N806
    root = Path(root)
    splits = {}
    for train in (True, False):
        try:
            splits[train] = CIFAR10(root=str(root), train=train, download=False)
        except RuntimeError:
            if not download:
                raise DataNotFoundError(f"no official CIFAR-10 under {root} and downloading is off") from None
            try:
                splits[train] = CIFAR10(root=str(root), train=train, download=True)
            except Exception as error:  # no network: urllib raises URLError, OSError, ...
                raise DataNotFoundError(f"no official CIFAR-10 under {root} and the download failed: {error}") from None
    base = Path(splits[True].root) / splits[True].base_folder
    files = sorted(p for p in base.iterdir() if p.is_file())
    source_digest = _digest_of_files(files)
    return CanonicalDataset(
        train_images=np.ascontiguousarray(splits[True].data, dtype=np.uint8),
        train_labels=np.asarray(splits[True].targets, dtype=np.int64),
        test_images=np.ascontiguousarray(splits[False].data, dtype=np.uint8),
        test_labels=np.asarray(splits[False].targets, dtype=np.int64),
        classes=tuple(splits[True].classes),
        provenance={
            "source": "cifar10",
            "source_name": Path(root).name,
            "source_sha256": source_digest,
            "files": [p.name for p in files],
        },
    )


def from_image_folder(path: str | os.PathLike) -> CanonicalDataset:
    """An image folder (`train/<class>/*`, `test/<class>/*`) or a .tar.gz holding one, through ImageFolder."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist")
    if path.is_file():
        source_digest = verify_listed_checksum(path)
        with tempfile.TemporaryDirectory(prefix="skipinit-extract-") as scratch:
            try:
                with tarfile.open(path) as archive:
                    archive.extractall(scratch, filter="data")
            except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
                raise IntegrityError(
                    f"{path} is truncated or corrupt ({error}); restore the archive, then rerun the same command"
                ) from None
            root = _find_split_root(Path(scratch))
            dataset = _read_image_folder(
                root, shown_as=lambda file: f"{path}:{Path(file).relative_to(scratch).as_posix()}"
            )
    else:
        root = _find_split_root(path)
        source_digest = _digest_of_files(sorted(p for p in root.rglob("*") if p.is_file()))
        dataset = _read_image_folder(root, shown_as=str)
    # the source's name, not the path it was given by: the canonical file's sha256 (every result row's
    # dataset_sha256) then depends on the images alone, not on where a checkout keeps them
    provenance = {"source": "imagefolder", "source_name": path.name, "source_sha256": source_digest}
    return dataclasses.replace(dataset, provenance=provenance)


def verify_listed_checksum(path: Path) -> str:
    """The archive's sha256, checked against a `SHA256SUMS` beside it when that lists the archive."""
    digest = sha256_file(path)
    sums = path.parent / "SHA256SUMS"
    if sums.exists():
        listed = dict(reversed(line.split(maxsplit=1)) for line in sums.read_text().splitlines() if line.strip())
        expected = listed.get(path.name) or listed.get(f"*{path.name}")
        if expected and expected != digest:
            raise IntegrityError(
                f"{path} does not match its sha256 in {sums} ({digest[:12]}... != {expected[:12]}...): "
                "it is truncated or altered; restore the archive, then rerun the same command"
            )
    return digest


def synthetic(train_size: int = 512, test_size: int = 256, num_classes: int = 10, seed: int = 0) -> CanonicalDataset:
    """A seeded, learnable stand-in for CIFAR-10: each class is a smooth template plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(num_classes, 4, 4, 3))
    templates = np.kron(coarse, np.ones((1, 8, 8, 1)))  # 32 x 32 blocks, easy but not trivial

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % num_classes
        rng.shuffle(labels)
        pixels = 128 + 40 * templates[labels] + 40 * rng.normal(size=(n, 32, 32, 3))
        return np.clip(pixels, 0, 255).astype(np.uint8), labels.astype(np.int64)

    train_images, train_labels = draw(train_size)
    test_images, test_labels = draw(test_size)
    return CanonicalDataset(
        train_images,
        train_labels,
        test_images,
        test_labels,
        classes=tuple(f"class{i}" for i in range(num_classes)),
        provenance={"source": "synthetic", "seed": seed, "source_sha256": None},
    )


def prepare(
    source: str, path: str | None, *, download: bool = True, synthetic_options: dict | None = None
) -> CanonicalDataset:
    if source == "cifar10":
        return from_official_cifar10(path, download=download)
    if source == "imagefolder":
        return from_image_folder(path)
    if source == "synthetic":
        return synthetic(**(synthetic_options or {}))
    raise ValueError(f"data_source={source!r} is unknown; allowed: {', '.join(SOURCES)}")


def balanced_subset(labels: np.ndarray, size: int) -> np.ndarray:
    """Indices of the first `size` examples taken class by class in turn: deterministic and balanced."""
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    order = np.argsort(labels, kind="stable")
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    for start, count in zip(starts, counts):
        rank_in_class[order[start : start + count]] = np.arange(count)
    interleaved = np.lexsort((labels, rank_in_class))
    return np.sort(interleaved[:size])


def standardized(images: np.ndarray):
    """uint8 N x 32 x 32 x 3 images as a float N x 3 x 32 x 32 tensor with zero mean, unit variance per channel."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std


def _read_image_folder(root: Path, shown_as) -> CanonicalDataset:
    """Every image of `root`'s train/ and test/ as uint8 32 x 32 x 3; `shown_as(file)` names a file in errors.

    An image that does not decode, or is not 32 x 32, stops the preparation with one line naming
    it (inside its archive, where it came from one) before anything is written.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder

    splits = {}
    for split in ("train", "test"):
        folder = ImageFolder(str(root / split))
        images = np.empty((len(folder), 32, 32, 3), dtype=np.uint8)
        for index, (file, _) in enumerate(folder.samples):
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise IntegrityError(
                    f"{shown_as(file)} is not a readable image ({reason}); remove or replace it, then rerun the same "
                    "command"
                ) from None
            if pixels.shape != (32, 32, 3):
                raise IntegrityError(
                    f"{shown_as(file)} is {pixels.shape[1]}x{pixels.shape[0]}; expected 32x32 images: remove or "
                    "replace it, then rerun the same command"
                )
            images[index] = pixels
        splits[split] = (images, np.asarray(folder.targets, dtype=np.int64), tuple(folder.classes))
    if splits["train"][2] != splits["test"][2]:
        raise ValueError(f"train and test class folders differ under {root}")
    return CanonicalDataset(*splits["train"][:2], *splits["test"][:2], classes=splits["train"][2], provenance={})


def _find_split_root(path: Path) -> Path:
    """The folder holding `train/` and `test/`: `path` itself or one level below (a tarball's top folder)."""
    for candidate in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise DataNotFoundError(f"{path} holds no train/ and test/ image folders")


def _digest_of_files(files: list[Path]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()
