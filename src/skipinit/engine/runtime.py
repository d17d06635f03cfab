"""The process around a pack: device, threads and determinism, OOM detection, progress, torch.compile."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from skipinit.engine.options import EngineOptions
from skipinit.vocab import PRECISIONS

# Warnings that are expected and harmless here, silenced while a pack trains (see engine_settings):
# - parameter views of the flat [N, P] buffer have non-dense strides across members, so autograd
#   warns that accumulating into their grads may be slower; it accumulates in place all the same;
# - under vmap, adaptive_avg_pool2d of a channels_last input resizes its output with as_strided_,
#   which takes functorch's per-member fallback: correct, and cheap for the one tiny pooling op.
EXPECTED_WARNINGS = (
    "grad and param do not obey the gradient layout contract",
    "There is a performance drop because we have not yet implemented the batching rule for aten::as_strided_",
    # ghost batch norm's statistics:
    "There is a performance drop because we have not yet implemented the batching rule for aten::lerp_",
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={name!r} asked for CUDA, but torch {torch.__version__} sees no CUDA device; use --device cpu or "
            "auto"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: the engine runs on cpu or cuda")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16 kernels pay.

    On other x86 CPUs oneDNN emulates bf16 with fp32 arithmetic plus conversions: slower than fp32.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(probe is not None for probe in probes):
        return any(probe() for probe in probes)
    try:  # torch before the probes: the kernel's CPU flags (Linux)
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device, native_bf16: bool | None = None) -> str:
    """The precision a pack runs in: `auto` is bf16 on CUDA and on CPUs with native bf16, else fp32.

    `native_bf16`: whether this CPU has it (None: ask the CPU, `cpu_has_native_bf16`).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r} is unknown; allowed: {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16"
    return "bf16" if (cpu_has_native_bf16() if native_bf16 is None else native_bf16) else "fp32"


def is_out_of_memory(error: BaseException) -> bool:
    """A resource fault: CUDA OOM, or the CPU allocator giving up."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    patterns = ("out of memory", "can't allocate memory", "alloc_failed")  # CUDA, CPU allocator, cuBLAS/cuDNN
    return isinstance(error, RuntimeError) and any(pattern in message for pattern in patterns)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_bar(total: int, label: str, done: int = 0) -> tqdm:
    """A live bar over an epoch's steps on a terminal, redrawn at most once a second; nothing in a log file (tqdm's
    `disable=None`: off where stderr is no terminal), which gets the one line per epoch the trainer logs."""
    return tqdm(total=total, initial=done, desc=label, unit="step", disable=None, mininterval=1.0, leave=False)


@contextlib.contextmanager
def engine_settings(options: EngineOptions, device: torch.device):
    """Threads, determinism, cuDNN autotuning and warning filters for one pack; restored afterwards."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            if options.threads:
                torch.set_num_threads(int(options.threads))
            if options.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
                torch.use_deterministic_algorithms(True, warn_only=True)  # warn, never crash, on an op without one
            if device.type == "cuda":
                torch.backends.cudnn.deterministic = options.deterministic
                torch.backends.cudnn.benchmark = not options.deterministic  # fixed shapes: autotuning pays
            yield
        finally:
            torch.set_num_threads(saved[0])
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]


class CompiledOrEager:
    """`torch.compile(fn)`, falling back to `fn` for good (with one log line) if compiling fails.

    Compilation happens before the compiled code runs, so a failed attempt has changed no state.
    """

    def __init__(self, fn: Callable, log: Callable[[str], None], what: str):
        self.fn, self.log, self.what = fn, log, what
        self.compiled = torch.compile(fn)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as error:
                if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    raise  # a real error in the computation, not in compiling it
                first_line = (str(error).strip().splitlines() or [""])[0]
                self.log(
                    f"torch.compile of the {self.what} failed ({type(error).__name__}: {first_line}); running it "
                    "eagerly"
                )
                self.compiled = None
        return self.fn(*args)
