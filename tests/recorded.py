"""Records of deterministic CPU runs, one variant per kind of CPU, that a run must repeat bit for bit.

A deterministic CPU run repeats bit for bit on one machine but not across CPUs: oneDNN and MKL pick
their kernels by instruction set and vendor (AVX2 on the AMD EPYC the first records came from,
AVX-512 on a Xeon), and their float sums differ in the last bits. So a record comes in variants:
`<stem><suffix>` (AMD EPYC, 2 cores, the first CI machine) and `<stem>.<cpu><suffix>` for others,
each written by the same old commit, named in the test that reads it. A run must equal one variant
exactly. On a CPU with no variant yet it must come within a tolerance of one, and the test warns
that bit-exactness went unchecked there and names the file that would check it.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

FIXTURES = Path(__file__).parent / "fixtures"
T = TypeVar("T")


def cpu_label() -> str:
    """This CPU's vendor and the instruction set ATen dispatches to, e.g. `genuineintel-avx512`."""
    vendor = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        vendor = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("vendor_id")
            ),
            vendor,
        )
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}".lower()


def variants(stem: str, suffix: str) -> list[Path]:
    """Every recorded variant of fixture `stem`, the first CI machine's first."""
    return [FIXTURES / f"{stem}{suffix}"] + sorted(FIXTURES.glob(f"{stem}.*{suffix}"))


def assert_repeats_a_record(
    got: T,
    records: list[tuple[Path, T]],
    equal: Callable[[T, T], bool],
    close: Callable[[T, T], bool],
    show: Callable[[T, T], None],
) -> None:
    """`got` equals one record exactly; else (warning) comes close to one; else `show` fails on the first."""
    if any(equal(got, expected) for _, expected in records):
        return
    near = [path.name for path, expected in records if close(got, expected)]
    if near:
        warnings.warn(
            f"no bit-exact record for this CPU ({cpu_label()}): within tolerance of {near[0]}; "
            f"record {records[0][0].stem}.{cpu_label()}{records[0][0].suffix} from the commit its test names to check "
            "it exactly",
            stacklevel=2,
        )
        return
    show(got, records[0][1])
