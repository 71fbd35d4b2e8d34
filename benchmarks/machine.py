"""The machine a benchmark ran on, without importing torch: CPU model and flags, cores, load.

machine_description() -> {"cpu": str, "cpu_flags": [str], "cpu_count": int, "platform": str,
                          "load_average_1_5_15": [float, float, float]}
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# The flags that decide which kernels torch can use for fp32 and bf16 on x86.
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                     "amx_tile", "amx_bf16", "amx_int8")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The first CPU's model name and which of INTERESTING_FLAGS it has (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return model, [flag for flag in INTERESTING_FLAGS if flag in flags]


def machine_description() -> dict[str, Any]:
    """What a results table needs to say about the machine; the load says how busy it was."""
    model, flags = cpu_model_and_flags()
    return {"cpu": model, "cpu_flags": flags, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            # Other work on the machine inflates every number; the load says how much.
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
