"""Which data a pack trains on: an ImageNet folder streamed from disk, or a canonical dataset held on the device.

The one place that tells the two apart, by the pack's dataset name, so that opening the data
(`engine.job`) and serving its batches (`engine.trainer`) cannot disagree.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from skipinit.data.canonical import load_canonical
from skipinit.data.imagenet import ImageNetStream, open_imagenet
from skipinit.data.ondevice import OnDeviceData

IMAGENET = "imagenet"  # the dataset name of ImageNet cells


@dataclasses.dataclass(frozen=True)
class DataKind:
    open: Callable[[str | os.PathLike], Any]  # path -> dataset
    batches: Callable[..., Any]  # (dataset, cells, Serving, device) -> batch source (see batches.py)
    sha256: Callable[[Any], str | None]  # the dataset's provenance, recorded in every result


CANONICAL_KIND = DataKind(load_canonical, OnDeviceData, lambda dataset: dataset.provenance.get("canonical_sha256"))
# ImageNet's digest covers the sorted file names and sizes: hashing 150 GB of contents per job would not pay.
IMAGENET_KIND = DataKind(open_imagenet, ImageNetStream, lambda folder: folder.sha256)


def data_kind(cells: list[dict]) -> DataKind:
    """The kind of a pack's data (its cells share one dataset, `vocab.check_pack`)."""
    return IMAGENET_KIND if cells[0]["dataset"] == IMAGENET else CANONICAL_KIND
