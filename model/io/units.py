"""Physical units of radar fields and the one scaling between dBZ and model space.

Interface
---------
dbz_to_model(dbz, scaling)        dBZ (any shape, NaN = no data) -> [0, 1] float32
model_to_dbz(x, scaling)          [0, 1] -> dBZ float32 (values outside [0, 1] are clipped first)
rainrate_to_dbz(rate), dbz_to_rainrate(dbz)   mm/h <-> dBZ via Marshall-Palmer Z = a R^b

The scaling is a small dict stored in every checkpoint (``meta["scaling"]``) so that a model
trained with another scaling still decodes correctly: ``x = (clip(dBZ, lo, hi) - lo) / (hi - lo)``.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

MARSHALL_PALMER_A = 200.0
MARSHALL_PALMER_B = 1.6


class Scaling(TypedDict):
    kind: str  # "linear-dbz"
    dbz_min: float  # dBZ mapped to 0; also "no echo" (NaN and no-data become this)
    dbz_max: float  # dBZ mapped to 1


class FieldMetadata(TypedDict, total=False):
    """Metadata that travels with a (T, H, W) field (the pysteps convention, typed)."""

    unit: str  # "dBZ" | "mm/h"
    timestep_minutes: float  # cadence of the scans
    threshold: float  # lowest meaningful value, in `unit`
    zerovalue: float  # value used for "no echo", in `unit`
    projection: str  # PROJ string or CF grid-mapping name
    yorigin: str  # "upper" | "lower": where row 0 lies


DEFAULT_SCALING: Scaling = {"kind": "linear-dbz", "dbz_min": -10.0, "dbz_max": 60.0}
# Frames without a physical unit (Moving MNIST, KTH) are already in [0, 1].
IDENTITY_SCALING: Scaling = {"kind": "identity", "dbz_min": 0.0, "dbz_max": 1.0}


def dbz_to_model(dbz: np.ndarray, scaling: Scaling = DEFAULT_SCALING) -> np.ndarray:
    """Reflectivity in dBZ -> model space [0, 1]; NaN (no data) becomes 0 (no echo)."""
    lo, hi = float(scaling["dbz_min"]), float(scaling["dbz_max"])
    x = (np.clip(np.asarray(dbz, dtype=np.float32), lo, hi) - lo) / (hi - lo)
    return np.nan_to_num(x, nan=0.0).astype(np.float32)


def model_to_dbz(x: np.ndarray, scaling: Scaling = DEFAULT_SCALING) -> np.ndarray:
    """Model space -> dBZ; the network output is unbounded, so it is clipped to [0, 1] first."""
    lo, hi = float(scaling["dbz_min"]), float(scaling["dbz_max"])
    return (np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * (hi - lo) + lo).astype(np.float32)


def rainrate_to_dbz(rate: np.ndarray, a: float = MARSHALL_PALMER_A, b: float = MARSHALL_PALMER_B) -> np.ndarray:
    """Rain rate (mm/h) -> dBZ. Zero rain has no finite dBZ and maps to -inf; callers clip."""
    rate = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return (10.0 * np.log10(a * np.power(rate, b))).astype(np.float32)


def dbz_to_rainrate(dbz: np.ndarray, a: float = MARSHALL_PALMER_A, b: float = MARSHALL_PALMER_B) -> np.ndarray:
    """dBZ -> rain rate (mm/h) with Z = a R^b."""
    z = np.power(10.0, np.asarray(dbz, dtype=np.float64) / 10.0)
    return np.power(z / a, 1.0 / b).astype(np.float32)
