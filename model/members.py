"""Ensemble members as products: the member-count bound, exceedance probabilities and the mean.

check_members(value) -> int in 1..MAX_MEMBERS, or ValueError with the reason
exceedance_probability(members (M, ..., H, W) dBZ, thresholds) -> (N, ..., H, W) in [0, 1]
ensemble_mean(members) -> (..., H, W) dBZ

Apart from model/ensemble.py (which makes members and needs torch) so that the HTTP API and the
product writer, which never import torch, share these definitions with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_MEMBERS = 50  # the service's and the CLI's bound: memory grows with members x leads x grid
PROBABILITY_THRESHOLDS_DBZ: tuple[float, ...] = (20.0, 30.0, 40.0)  # the service's skill thresholds


def check_members(members: Any) -> int:
    """``members`` as an int in 1..MAX_MEMBERS, or ValueError saying what is wrong."""
    if isinstance(members, bool) or not isinstance(members, int | np.integer):
        raise ValueError(f"members must be a whole number from 1 to {MAX_MEMBERS}, got {members!r}")
    if not 1 <= int(members) <= MAX_MEMBERS:
        raise ValueError(f"members must be from 1 to {MAX_MEMBERS}, got {members}")
    return int(members)


def exceedance_probability(members_dbz: np.ndarray,
                           thresholds: Sequence[float] = PROBABILITY_THRESHOLDS_DBZ) -> np.ndarray:
    """(M, ...) dBZ -> (len(thresholds), ...) float32: the share of members at or above each threshold.

    NaN (no data) in any member makes the pixel NaN. Monotone: a higher threshold never has a
    higher probability.
    """
    members_dbz = np.asarray(members_dbz, dtype=np.float32)
    missing = np.isnan(members_dbz).any(axis=0)
    out = np.stack([(members_dbz >= t).mean(axis=0, dtype=np.float32) for t in thresholds])
    out[:, missing] = np.nan
    return out


def ensemble_mean(members_dbz: np.ndarray) -> np.ndarray:
    """(M, ...) dBZ -> (...) float32: the members' mean reflectivity (dBZ averaged, as stored)."""
    return np.asarray(members_dbz, dtype=np.float32).mean(axis=0)
