"""Checkpoints: one file, payload + embedded sha256, written atomically."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from skipinit.engine.options import changed_settings
from skipinit.fileio import atomic_path

CHECKPOINT_MAGIC = b"skipinit-train-checkpoint-v1\n"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: unreadable, truncated, or failing its checksum."""


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
    recorded, payload = data[head : head + 64].decode(errors="replace"), data[head + 65 :]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != recorded:
        raise CheckpointError(f"checksum mismatch (sha256 {actual[:12]}... != recorded {recorded[:12]}...)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # a valid checksum over an unloadable payload: still garbage
        raise CheckpointError(f"unloadable payload ({type(error).__name__}: {error})") from None


def checkpoint_mismatch(saved: dict, current: dict, epochs: int) -> str | None:
    """Why a verified checkpoint `saved` cannot be resumed by the pack whose state is `current` (another pack,
    dataset, model or result-affecting settings), or None; CheckpointError where `saved` lacks what a state holds."""
    try:
        if saved["cells"] != current["cells"]:
            return "different cells"
        if changed := changed_settings(saved.get("settings"), current["settings"]):
            return f"made under other result-affecting settings: {changed}"
        if saved["fingerprint"] != current["fingerprint"]:
            return "different dataset"
        if [tuple(entry) for entry in saved["layout"]] != [(n, tuple(s), o) for n, s, o in current["layout"]]:
            return "different model layout"
        if any(
            _shapes(saved[key]) != _shapes(current[key])
            for key in ("params", "momentum", "buffers", "alive", "diverged_at")
        ):
            return "different parameter or buffer shapes"
        if not 0 <= int(saved["epoch"]) <= epochs:
            return f"epoch {saved['epoch']} outside 0..{epochs}"
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"incomplete state ({type(error).__name__}: {error})") from None
    return None


def _shapes(value) -> tuple | dict:
    return (
        {key: tuple(tensor.shape) for key, tensor in value.items()} if isinstance(value, dict) else tuple(value.shape)
    )
