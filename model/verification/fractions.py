"""Event counts in square windows, exact, for the fractions skill score.

Interface
---------
box_counts(events, scales) -> {scale: counts}   (..., H, W) bool -> float64 events per window (scales > 1)
product_sum(a, b, scale) -> (L,)                 Σ a·b over axes 0, 2, 3 of (B, L, H, W) counts, exact

FSS compares the event fraction P = count / scale² in a ``scale`` x ``scale`` window around every
pixel, zero outside the field (pysteps' ``uniform_filter(..., mode="constant")``). One integral
image (two cumulative sums) serves every scale with four slices each, where a box filter pays
two passes per scale. The counts are integers, so ΣPf², ΣPf·Po and ΣPo² are exact integer sums
divided by scale⁴ once: the correctly rounded value of what pysteps computes with floating-point
filters (the two agree to about 1e-15).
"""

from __future__ import annotations

import numpy as np


def _window(scale: int) -> tuple[int, int]:
    """Pixels before and after the centre, aligned as scipy.ndimage aligns a window of ``scale``."""
    before = scale // 2
    return before, scale - 1 - before


def box_counts(events: np.ndarray, scales: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Events in the ``scale`` x ``scale`` window around each pixel of the last two axes, per scale > 1.

    Pixels outside the field count as no event. Scale 1 is left out: its "counts" are the events,
    whose sums the caller takes with ``np.count_nonzero``. The counts come as float64 holding whole
    numbers (exact), ready for :func:`product_sum`.
    """
    if max(scales) <= 1:
        return {}
    height, width = events.shape[-2:]
    largest = max(scales)
    offset = largest // 2 + 1  # room for the widest window before the field, plus the leading zero row
    integral = np.zeros(events.shape[:-2] + (height + largest, width + largest), dtype=np.int32)
    integral[..., offset:offset + height, offset:offset + width] = events
    # Down the rows one row at a time: each step is a vector add over every frame and column, several
    # times faster than np.cumsum along a non-contiguous axis. Along the columns np.cumsum is fast.
    for row in range(offset + 1, integral.shape[-2]):
        np.add(integral[..., row, :], integral[..., row - 1, :], out=integral[..., row, :])
    np.cumsum(integral, axis=-1, out=integral)
    counts: dict[int, np.ndarray] = {}
    for scale in scales:
        if scale == 1:
            continue
        before, after = _window(scale)
        hi, lo = offset + after, offset - before - 1  # each axis: the window is (lo, hi] around the pixel
        window = integral[..., hi:hi + height, hi:hi + width] - integral[..., lo:lo + height, hi:hi + width]
        window -= integral[..., hi:hi + height, lo:lo + width]
        window += integral[..., lo:lo + height, lo:lo + width]
        counts[scale] = window.astype(np.float64)
    return counts


def product_sum(a: np.ndarray, b: np.ndarray, scale: int) -> np.ndarray:
    """Σ a·b over axes 0, 2 and 3 of two (B, L, H, W) counts of ``scale`` windows, per L, as float64.

    Exact: a count is at most scale², so while B·H·W·scale⁴ < 2**53 every product and partial sum is
    an integer float64 holds exactly in any summation order, and the fast float path loses nothing.
    Larger batches take the (slower) int64 path.
    """
    pixels = a.shape[0] * a.shape[2] * a.shape[3]
    if pixels * float(scale) ** 4 < 2.0**53:
        return np.einsum("blhw,blhw->l", a, b)
    return np.sum(a.astype(np.int64) * b.astype(np.int64), axis=(0, 2, 3)).astype(np.float64)
