"""pysteps' dense Lucas-Kanade motion, with its interpolation step done in less time.

dense_lucaskanade(frames (T, H, W), **options) -> velocity (2, H, W), x (column) first

pysteps' ``dense_lucaskanade`` tracks features (OpenCV), removes outliers, declusters the sparse
vectors and interpolates them to every pixel by inverse distance weighting over the 20 nearest
vectors (``idwinterp2d``). On a 256 x 256 grid the interpolation is about half of the whole;
most of that is numpy's general ``power`` and a weighted sum over a (pixels, 20, 2) temporary.
This module runs pysteps for everything up to the sparse vectors and then the same
interpolation as one k-d tree query, a square root (the weight power is 1/2) and one
contraction. The result equals pysteps' to float64 rounding (tested); any option that changes
the interpolation (another method, other ``interp_kwargs``) is passed to pysteps unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

# pysteps' idwinterp2d defaults, which dense_lucaskanade uses when given no interp_kwargs.
IDW_NEIGHBOURS = 20
IDW_OFFSET_PX = 0.5


def dense_lucaskanade(frames: np.ndarray, **options: Any) -> np.ndarray:
    """(T, H, W) finite frames -> (2, H, W) float64 velocity in pixels per frame interval.

    ``options`` are pysteps' ``dense_lucaskanade`` keywords (``decl_scale``, ``lk_kwargs``, ...).
    """
    from pysteps.motion.lucaskanade import dense_lucaskanade as pysteps_dense
    from pysteps.utils.cleansing import decluster

    if options.get("interp_method", "idwinterp2d") != "idwinterp2d" or options.get("interp_kwargs") \
            or options.get("dense") is False:
        return pysteps_dense(frames, **options)
    options = {k: v for k, v in options.items() if k not in ("interp_method", "interp_kwargs", "dense")}
    decl_scale = options.pop("decl_scale", 20)
    height, width = frames.shape[1:]
    xy, uv = pysteps_dense(frames, dense=False, **options)
    if xy.shape[0] and decl_scale > 1:
        xy, uv = decluster(xy, uv, decl_scale, 1, False)
    if xy.shape[0] == 0:
        return np.zeros((2, height, width))
    return idw_grid(xy, uv, height, width)


def idw_grid(xy: np.ndarray, uv: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sparse vectors at xy (n, 2) px (x, y) with values uv (n, 2) -> (2, H, W) on the pixel grid.

    pysteps' ``idwinterp2d`` (power 1/2, 20 neighbours, 0.5 px offset) including its two
    shortcuts: one vector, or all components equal, give a uniform field.
    """
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape[0] == 1:
        return np.repeat(uv[0], height * width).reshape(2, height, width)
    if uv.max() == uv.min():
        return np.full((2, height, width), uv.ravel()[0])
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    targets = np.column_stack((cols.ravel(), rows.ravel())).astype(np.float64)
    k = min(IDW_NEIGHBOURS, uv.shape[0])
    distance, index = cKDTree(xy).query(targets, k=k)
    if distance.ndim == 1:
        distance, index = distance[:, None], index[:, None]
    weights = 1.0 / np.sqrt(distance + IDW_OFFSET_PX)
    weights /= weights.sum(axis=1, keepdims=True)
    field = np.einsum("pk,pkc->cp", weights, uv[index])
    return field.reshape(2, height, width)
