"""Whether this CPU's int8 kernel saturates, so that a model with 8-bit weights scores differently here.

onnxruntime multiplies a model's uint8 activations by its int8 weights. With VNNI the products are summed
exactly; with AVX2 only (vpmaddubsw, e.g. AMD EPYC Zen 2 and 3) each pair of products is summed in 16 bits and
saturates past 32,767, which 8-bit weights reach (255 x 127 x 2). Models exported since 7-bit weights
(``weight_bits: 7`` in labels.json) cannot saturate anywhere; an older folder on such a CPU gets scores its
thresholds were not calibrated on, and the classifier says so when it loads (measured on the 8-bit v19b: 5.6% of
the challenge suite's English look-alikes flagged on an AVX2-only EPYC, 4.9% with VNNI).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

__all__ = ["int8_saturates"]

_CPUINFO = Path("/proc/cpuinfo")


@functools.lru_cache(maxsize=1)
def int8_saturates() -> bool:
    """True on an x86 CPU that has AVX2 but no VNNI (read from /proc/cpuinfo); False where that cannot be told
    (another OS, another architecture), so nothing is claimed that was not seen."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & set(flags)
