"""One GPU per training process when several share a machine.

`snakemake --cores N --resources gpu=K` lets at most K training jobs (each asking
`gpu=1`) run at once, but it does not say *which* GPU a job gets: every process would
start on GPU 0. `claim_gpu` picks a free one before CUDA is initialized:

- each GPU slot is a lock file, `<lock dir>/<slot>.lock`, taken with `fcntl.flock`
  and held for the life of the process (the kernel releases it when the process
  exits, also on a crash or `kill -9`, so a slot is never leaked);
- the first free slot is exported as `CUDA_VISIBLE_DEVICES`, so the process sees
  exactly one GPU, as `cuda:0`;
- where every slot is taken (another workflow shares the machine), it waits for one.

`CUDA_VISIBLE_DEVICES` that names one device (SLURM sets it for a one-GPU job) is left
as it is. One that names several (a grouped SLURM job with several GPUs, or a user
restricting the run to some GPUs) is the pool: each process takes one of those.
CPU runs (`device=cpu`, or no GPU on the machine) and an explicit `cuda:N` do nothing.

The lock folder is `$SKIPINIT_GPU_LOCK_DIR`, else `$TMPDIR/skipinit-gpu-locks-<uid>` (the
system temp folder when TMPDIR is unset): this user's own, mode 0700, refused when it is a
symlink or another user's; inside a SLURM job the slots are keyed by the job id, as SLURM
may number a job's GPUs from 0 in every job. Lock files are opened with O_NOFOLLOW and
never written.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("skipinit")

ENV = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_ENV = "SKIPINIT_GPU_LOCK_DIR"

# Claims of this process: the open lock files must stay referenced (and so open) until exit.
_HELD: list[Claim] = []


@dataclass
class Claim:
    """The outcome of `claim_gpu`: which device this process uses and the lock that reserves it."""

    device: str | None  # the entry now in CUDA_VISIBLE_DEVICES (an index or a GPU UUID); None: nothing claimed
    reason: str  # why, in words (for the log)
    lock_path: Path | None = None
    _handle: IO | None = field(default=None, repr=False)

    @property
    def claimed(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        """Give the slot back (normally never needed: it is released when the process exits)."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        if self in _HELD:
            _HELD.remove(self)


def default_lock_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    """`$SKIPINIT_GPU_LOCK_DIR`, else a folder of this user's own in the temporary folder: in a shared /tmp another
    user could otherwise create it first, and replace or hold its lock files."""
    if environ.get(LOCK_DIR_ENV):
        return Path(environ[LOCK_DIR_ENV])
    base = Path(environ.get("TMPDIR") or tempfile.gettempdir())
    return base / f"skipinit-gpu-locks-{os.geteuid()}"


def own_folder(folder: Path) -> None:
    """Create `folder` (mode 0700) or accept it only as a real folder owned by this user that no one else can write
    to; OSError (naming why) otherwise, where a planted symlink or another user's folder could steer the locks."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{folder} is not a folder (a symlink or a file)")
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(f"{folder} belongs to another user or others can write to it")


def count_gpus() -> int:
    """GPUs on this machine, counted without initializing CUDA in this process.

    `torch.cuda.device_count()` would initialize the CUDA driver, after which a new
    CUDA_VISIBLE_DEVICES has no effect; `nvidia-smi -L` runs in its own process.
    """
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return sum(1 for _ in gpus.iterdir()) if gpus.is_dir() else 0
    except OSError:
        return 0


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _slug(entry: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", entry)


def _try_lock(path: Path) -> IO | None:
    """The open, exclusively locked file, or None when another process holds it. Opened without following a
    symlink and never written: a lock file planted as a link to another file cannot make this clobber it (the
    lock is what counts; `lslocks` shows who holds it)."""
    handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "rb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except BaseException:
        handle.close()
        raise
    return handle


def claim_gpu(
    device: str = "auto",
    *,
    gpu_count: int | Callable[[], int] = count_gpus,
    lock_dir: str | os.PathLike | None = None,
    environ: MutableMapping[str, str] = os.environ,
    timeout: float | None = None,
    poll: float = 1.0,
) -> Claim:
    """Reserve one GPU for this process and export it as CUDA_VISIBLE_DEVICES.

    Call it before anything initializes CUDA. `gpu_count` (a number, or a function
    counting the machine's GPUs), `lock_dir` and `environ` are injectable for tests.
    Waits while every slot is taken; after `timeout` seconds (None: no limit) it
    raises TimeoutError.
    """
    device = (device or "auto").lower()
    if device == "cpu" or re.fullmatch(r"cuda:\d+", device):
        return Claim(None, f"device={device}: left as it is")

    preset = environ.get(ENV)
    namespace = "local"
    if preset is not None:
        pool = _entries(preset)
        if len(pool) <= 1 or pool[0] == "-1":
            return Claim(pool[0] if pool else None, f"{ENV}={preset!r} set by the caller: respected")
        if environ.get("SLURM_JOB_ID"):
            namespace = f"slurm-{environ['SLURM_JOB_ID']}"
        source = f"{ENV}={preset}"
    else:
        count = gpu_count() if callable(gpu_count) else int(gpu_count)
        if count <= 1:
            return Claim(None, f"{count} GPU(s) visible: nothing to choose")
        pool = [str(index) for index in range(count)]
        source = f"{count} GPUs"

    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir(environ)
    try:
        own_folder(folder)
        folder = folder / namespace
        own_folder(folder)
    except OSError as error:
        log.warning("GPU: cannot use the lock folder %s (%s): not choosing a GPU", folder, error.strerror or error)
        return Claim(None, f"no lock folder {folder}")

    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = False
    while True:
        for entry in pool:
            path = folder / f"{_slug(entry)}.lock"
            try:
                handle = _try_lock(path)
            except OSError as error:
                log.warning("GPU: cannot lock %s (%s): not choosing a GPU", path, error.strerror)
                return Claim(None, f"cannot lock {path}")
            if handle is not None:
                environ[ENV] = entry
                claim = Claim(entry, f"slot {entry} of {source}", path, handle)
                _HELD.append(claim)
                log.info("GPU: took slot %s of %s (%s=%s, lock %s)", entry, source, ENV, entry, path)
                return claim
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"every GPU slot of {source} stayed taken for {timeout:g} s (locks in {folder})")
        if not waiting:
            log.info("GPU: all %d slots of %s are taken (locks in %s); waiting for one", len(pool), source, folder)
            waiting = True
        time.sleep(poll)
