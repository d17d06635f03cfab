"""Atomic writes and checksums: a kill must never leave a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from the rest of a group
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The file's sha256, read in chunks. Not `hashlib.file_digest`: it is Python 3.11's, and the package supports
    3.10 (the system Python of many clusters)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar that holds `path`'s sha256 (`<file>.sha256`, sha256sum's format)."""
    return Path(f"{path}.sha256")


def write_checksum(path: str | os.PathLike) -> str:
    digest = sha256_file(path)
    write_text(checksum_path(path), f"{digest}  {Path(path).name}\n")
    return digest


class IntegrityError(RuntimeError):
    """A file does not match its recorded checksum."""


def verify_checksum(path: str | os.PathLike, rebuild_hint: str) -> str:
    """Check `path` against its sidecar sha256; raise one clear error naming the file and the fix."""
    path = Path(path)
    sidecar = checksum_path(path)
    if not path.exists():
        raise IntegrityError(f"{path} does not exist. Rebuild it with: {rebuild_hint}")
    if not sidecar.exists():
        raise IntegrityError(
            f"{path} has no checksum file {sidecar.name}; it may be incomplete. Rebuild it with: {rebuild_hint}"
        )
    expected = sidecar.read_text().split()[0]
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} is corrupt or was altered (sha256 {actual[:12]}... != recorded {expected[:12]}...). "
            f"Delete it and rebuild it with: {rebuild_hint}"
        )
    return actual
