"""A real rain field set in motion: rotation, translation, shear, growth and decay.

evolving_sequence(field_dbz (H, W), scans, window=(row, col, size), ...) -> (scans, size, size) dBZ

Synthetic storms are what the models were trained on; a forecaster judges them on real rain. This
takes one observed composite (for example the MeteoSwiss ODIM file in tests/data/) and makes a
sequence of scans from it under a known flow, so that skill can be measured against a truth that
extrapolation does not get for free:

- the flow rotates the field about the window's centre, translates it and shears it, so that the
  motion is not uniform (a single vector would not describe it);
- one Gaussian region grows by ``growth_db_per_scan`` per scan and another decays as fast,
  moving with the rain (defined in the field's own coordinates), which optical flow cannot know;
  by default the north-west quarter's centre grows and the south-east's decays;
- rain outside the window is carried in by the flow, as on a real radar's edge.

Scan t is the composite sampled at the position each pixel came from t scans earlier (bilinear,
"no echo" outside the composite), then the growth applied where there is echo.

:func:`textured_rain` makes a field to set in motion the same way when no composite may be used
(training): rain with the texture of a radar composite rather than of the synthetic storms.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

NO_ECHO_DBZ = -10.0
ECHO_DBZ = 5.0  # growth and decay act on echo only: they do not create rain from clear air

# The real-rain cases the default model is judged on (tests/model/test_default_model.py,
# benchmarks/real_rain.py): (window row, col, size), velocity (rows, cols) px/scan,
# rotation rad/scan, growth dB/scan, applied to the MeteoSwiss composite in tests/data/.
REAL_RAIN_FLOWS = {
    "rotating, growing in the north-west": ((352, 384, 128), (1.5, 2.5), 0.004, 0.5),
    "faster, turning the other way": ((300, 300, 160), (-1.0, 3.0), -0.006, 0.8),
}


def real_rain_case(field_dbz: np.ndarray, flow: str, context: int = 6, steps: int = 20,
                   growth_db_per_scan: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(context scans (context, n, n), truth (steps, n, n)) dBZ of one of :data:`REAL_RAIN_FLOWS`.

    ``growth_db_per_scan`` replaces the flow's own growth (0: no trend; negative: the north-west
    decays and the south-east grows).
    """
    window, velocity, rotation, growth = REAL_RAIN_FLOWS[flow]
    growth = growth if growth_db_per_scan is None else growth_db_per_scan
    scans = evolving_sequence(field_dbz, context + steps, window=window, velocity=velocity, rotation=rotation,
                              growth_db_per_scan=growth)
    return scans[:context], scans[context:]


def evolving_sequence(
    field_dbz: np.ndarray,
    scans: int,
    *,
    window: tuple[int, int, int] = (352, 384, 128),
    velocity: tuple[float, float] = (1.5, 2.5),
    rotation: float = 0.004,
    shear: float = 0.002,
    growth_db_per_scan: float = 0.5,
    growth_radius: float = 0.25,
    grow_at: tuple[float, float] = (0.25, 0.25),
    decay_at: tuple[float, float] = (0.75, 0.75),
) -> np.ndarray:
    """``scans`` scans (scans, size, size) float32 dBZ of the window (row, col, size) of ``field_dbz``.

    velocity: (rows, cols) pixels per scan; rotation: radians per scan about the window centre;
    shear: column displacement per scan per pixel of row offset; growth_radius: the Gaussian's
    width as a fraction of the window size; grow_at and decay_at: (row, col) centres of the growing
    and the decaying region as fractions of the window at the first scan. NaN in the field counts
    as no echo.
    """
    field = np.nan_to_num(np.asarray(field_dbz, dtype=np.float64), nan=NO_ECHO_DBZ)
    row0, col0, size = window
    if field.ndim != 2 or row0 < 0 or col0 < 0 or row0 + size > field.shape[0] or col0 + size > field.shape[1]:
        raise ValueError(f"window {window} does not fit a field of shape {field.shape}")
    centre_row, centre_col = row0 + size / 2.0, col0 + size / 2.0
    rows, cols = np.mgrid[row0:row0 + size, col0:col0 + size].astype(np.float64)
    sigma = growth_radius * size
    grow_centre = (row0 + grow_at[0] * size, col0 + grow_at[1] * size)
    decay_centre = (row0 + decay_at[0] * size, col0 + decay_at[1] * size)
    out = np.empty((scans, size, size), dtype=np.float32)
    for t in range(scans):
        # Undo the motion of t scans: translation, then rotation and shear about the centre.
        d_row = rows - centre_row - velocity[0] * t
        d_col = cols - centre_col - velocity[1] * t
        angle = -rotation * t
        src_row = centre_row + np.cos(angle) * d_row - np.sin(angle) * d_col
        src_col = centre_col + np.sin(angle) * d_row + np.cos(angle) * d_col - shear * t * d_row
        scan = map_coordinates(field, [src_row, src_col], order=1, mode="constant", cval=NO_ECHO_DBZ)

        change = growth_db_per_scan * t * (
            _bump(src_row, src_col, grow_centre, sigma) - _bump(src_row, src_col, decay_centre, sigma))
        scan = np.where(scan > ECHO_DBZ, scan + change, scan)
        out[t] = np.clip(scan, NO_ECHO_DBZ, 70.0)
    return out


def textured_rain(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size) float32 dBZ field with a radar composite's texture: multi-scale, graded, filamentary.

    The synthetic storms (model/data/synthetic.py) are smooth stratiform areas cut off at a
    12-17 dBZ detection level with round convective cores; a composite's rain is textured at every
    scale, grades from 5 dBZ at its edges and holds its 30 dBZ echo in filaments and bands. This
    is one periodic Gaussian field with a power-law amplitude spectrum (slope 1.1-1.6, all scales
    in one band), stretched along a drawn direction, and mapped to dBZ through drawn shares of
    the field: echo (25-75 %, 5 dBZ at its edge), 20 dBZ and above, 30 dBZ and above, and a peak.
    Pixels outside the echo are "no echo".
    """
    from model.data.synthetic import power_law_noise

    large, small = power_law_noise(rng, (2 * size, 2 * size), rng.uniform(1.1, 1.6), 2 * size)
    noise = large + small
    stretch, theta = rng.uniform(1.0, 2.0), rng.uniform(0.0, np.pi)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    along = np.cos(theta) * rows + np.sin(theta) * cols
    across = -np.sin(theta) * rows + np.cos(theta) * cols
    field = map_coordinates(noise, [(along / stretch) % (2 * size), across % (2 * size)], order=1, mode="grid-wrap")
    # Piecewise linear through drawn quantiles: the echo's share, then 20 and 30 dBZ as shares of it
    # (a composite's 30 dBZ area is a tenth to a third of its 20 dBZ area), and a peak of 45-55 dBZ.
    echo = rng.uniform(0.25, 0.75)
    at_20 = echo * rng.uniform(0.3, 0.7)
    at_30 = at_20 * rng.uniform(0.1, 0.4)
    anchors = np.quantile(field, [1.0 - echo, 1.0 - at_20, 1.0 - at_30, 0.999])
    dbz = np.interp(field, anchors, [ECHO_DBZ, 20.0, 30.0, rng.uniform(45.0, 55.0)])
    return np.where(field > anchors[0], dbz, NO_ECHO_DBZ).astype(np.float32)


def _bump(rows: np.ndarray, cols: np.ndarray, at: tuple[float, float], sigma: float) -> np.ndarray:
    """A unit Gaussian centred ``at`` (row, col), read at the given field coordinates."""
    return np.exp(-((rows - at[0]) ** 2 + (cols - at[1]) ** 2) / (2.0 * sigma**2))
