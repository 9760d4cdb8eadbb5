"""The CPU a benchmark ran on: every benchmark prints it beside its numbers (machines of one kind differ:
a Xeon with VNNI runs int8 twice as fast as fp32, an AMD EPYC with AVX2 gains nothing from int8)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model(flags: bool = False) -> str:
    """The ``model name`` of /proc/cpuinfo; with ``flags``, whether the CPU has VNNI (fast int8)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), None)
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    if flags:
        name += " (VNNI)" if "avx512_vnni" in info or "avx_vnni" in info else " (no VNNI)"
    return name
