"""Numeric precision of forward passes: float32, or bfloat16 autocast where the hardware has it.

    resolve("auto", device) -> "fp32" | "bf16"
    with autocast("bf16", device): ...

bf16 autocast runs the convolutions (and matrix products) in bfloat16 with float32 accumulation;
weights, optimizer state and losses stay float32. It pays only where bf16 is native: CUDA, and
CPUs with AVX512-BF16 or AMX (oneDNN). Elsewhere PyTorch emulates it, measured 82x slower than
float32 on an AVX2-only EPYC (README, Results), so "auto" picks fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "auto")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AMX, or AVX512-BF16)."""
    if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_native_bf16(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def resolve(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where bf16 is native on ``device`` (see module doc), else 'fp32'."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """bf16 autocast on ``device`` for precision 'bf16'; nothing for 'fp32'."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
