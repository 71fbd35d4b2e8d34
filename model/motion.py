"""pysteps' dense Lucas-Kanade motion, with its outlier test and interpolation done in less time.

dense_lucaskanade(frames (T, H, W), **options) -> velocity (2, H, W), x (column) first

pysteps' ``dense_lucaskanade`` tracks features (OpenCV), removes outliers, declusters the sparse
vectors and interpolates them to every pixel by inverse distance weighting over the 20 nearest
vectors (``idwinterp2d``). Two of those steps are slow for what they compute:

- the outlier test takes each vector's Mahalanobis distance from its 30 nearest neighbours in a
  Python loop, one ``np.cov`` and one 2 x 2 inverse per vector; here it is the same arithmetic
  for all vectors at once (:func:`local_outliers`);
- the interpolation spends most of its time in numpy's general ``power`` and a weighted sum over
  a (pixels, 20, 2) temporary; here it is one k-d tree query, a square root (the weight power is
  1/2) and one contraction (:func:`idw_grid`).

Feature detection, tracking and declustering are pysteps' own functions, called as pysteps'
``dense_lucaskanade`` calls them. The field equals pysteps' to float64 rounding (tested); any
option this module does not reproduce (another interpolation or feature method, other
``interp_kwargs``, ``verbose``) sends the whole call to pysteps unchanged.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

# pysteps' idwinterp2d defaults, which dense_lucaskanade uses when given no interp_kwargs.
IDW_NEIGHBOURS = 20
IDW_OFFSET_PX = 0.5


# The options whose steps this module runs itself; anything else goes to pysteps whole.
_OWN_OPTIONS = {"lk_kwargs", "fd_method", "fd_kwargs", "nr_std_outlier", "k_outlier", "size_opening", "decl_scale",
                "interp_method", "interp_kwargs", "dense"}


def dense_lucaskanade(frames: np.ndarray, **options: Any) -> np.ndarray:
    """(T, H, W) finite frames -> (2, H, W) float64 velocity in pixels per frame interval.

    ``options`` are pysteps' ``dense_lucaskanade`` keywords (``decl_scale``, ``lk_kwargs``, ...).
    """
    from pysteps.motion.lucaskanade import dense_lucaskanade as pysteps_dense
    from pysteps.utils.cleansing import decluster

    settings = {**_pysteps_defaults(pysteps_dense), **options}
    if set(options) - _OWN_OPTIONS or settings["interp_method"] != "idwinterp2d" or settings["interp_kwargs"] \
            or settings["dense"] is False or settings["fd_method"] != "shitomasi" \
            or not isinstance(settings["k_outlier"], int) or settings["k_outlier"] < 3:
        return pysteps_dense(frames, **options)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"dense_lucaskanade needs (T >= 2, H, W) frames, got shape {frames.shape}")
    height, width = frames.shape[1:]
    xy, uv = sparse_vectors(frames, lk_kwargs=settings["lk_kwargs"], fd_kwargs=settings["fd_kwargs"],
                            size_opening=settings["size_opening"])
    if xy.shape[0]:
        outliers = local_outliers(uv, xy, settings["nr_std_outlier"], settings["k_outlier"])
        xy, uv = xy[~outliers], uv[~outliers]
    if xy.shape[0] and settings["decl_scale"] > 1:
        xy, uv = decluster(xy, uv, settings["decl_scale"], 1, False)
    if xy.shape[0] == 0:
        return np.zeros((2, height, width))
    return idw_grid(xy, uv, height, width)


def _pysteps_defaults(function: Any) -> dict[str, Any]:
    """pysteps' own defaults, read from its signature so that they cannot drift from ours."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def sparse_vectors(frames: np.ndarray, *, lk_kwargs: dict | None, fd_kwargs: dict | None, size_opening: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Tracked features of each consecutive pair: positions xy (n, 2) px and motion uv (n, 2) px.

    pysteps' steps before its outlier test: each frame masked where not finite and filled with
    its minimum, small noise removed by a morphological opening, Shi-Tomasi corners tracked by
    pyramidal Lucas-Kanade into the next frame.
    """
    from pysteps.feature import get_method
    from pysteps.tracking.lucaskanade import track_features
    from pysteps.utils.images import morph_opening

    detect = get_method("shitomasi")
    xy, uv = [np.empty((0, 2))], [np.empty((0, 2))]
    for n in range(frames.shape[0] - 1):
        pair = []
        for image in (frames[n], frames[n + 1]):
            image = np.ma.masked_invalid(image.copy())
            np.ma.set_fill_value(image, image.min())
            if size_opening > 0:
                image = morph_opening(image, image.min(), size_opening)
            pair.append(image)
        points = detect(pair[0], **(fd_kwargs or {})).astype(np.float32)
        if points.shape[0] == 0:
            continue
        xy_pair, uv_pair = track_features(pair[0], pair[1], points, **(lk_kwargs or {}))
        xy.append(xy_pair)
        uv.append(uv_pair)
    return np.concatenate(xy).astype(np.float64), np.concatenate(uv).astype(np.float64)


def local_outliers(uv: np.ndarray, xy: np.ndarray, threshold: float, neighbours: int) -> np.ndarray:
    """(n,) True where a vector lies more than ``threshold`` Mahalanobis units from its neighbours.

    pysteps' ``detect_outliers`` with coordinates (its local, multivariate case): the mean and
    covariance of each vector's ``neighbours`` nearest others (the k-d tree query over
    ``neighbours + 1`` points, the first being the vector itself), for all vectors at once. A
    singular covariance, which pysteps meets with a warning and a distance of 0, gets the same.
    """
    n = uv.shape[0]
    if n < 2:
        return np.zeros(n, dtype=bool)
    k = min(n, neighbours + 1)
    if k < 3:  # one neighbour has no covariance: pysteps' own answer, warnings and all
        from pysteps.utils.cleansing import detect_outliers

        return detect_outliers(uv, threshold, xy, neighbours)
    _, index = cKDTree(xy).query(xy, k=k)
    others = uv[index[:, 1:]]  # (n, k - 1, 2)
    centre = others.mean(axis=1)
    spread = others - centre[:, None]
    covariance = np.einsum("nki,nkj->nij", spread, spread) / (k - 2)  # np.cov's n - 1
    offset = uv - centre
    try:
        inverse = np.linalg.inv(covariance)
    except np.linalg.LinAlgError:
        inverse = np.empty_like(covariance)
        singular = np.zeros(n, dtype=bool)
        for i in range(n):
            try:
                inverse[i] = np.linalg.inv(covariance[i])
            except np.linalg.LinAlgError as exc:
                warnings.warn(f"{exc} during outlier detection", stacklevel=2)
                singular[i] = True
        inverse[singular] = 0.0
    distance = np.sqrt(np.einsum("ni,nij,nj->n", offset, inverse, offset))
    return distance > threshold


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
