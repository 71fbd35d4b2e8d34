"""Baseline forecasters: persistence and optical-flow extrapolation (the operational standard).

Interface (after ``pysteps.nowcasts.interface``)
-----------------------------------------------
forecast = get_method("extrapolation")            # or "persistence"
field = forecast(frames, 3)                       # frames (T, H, W) dBZ -> (3, H, W) dBZ, steps 1..3
field = forecast(frames, lead_times=[6, 12, 18])  # minutes after the last frame (timestep_minutes=6)

Frames are reflectivity in dBZ (NaN = no data), oldest first; the result holds the field at each
lead time. Extrapolation estimates a motion field with pysteps' Lucas-Kanade method over the last
few frames and advects the last frame along it with pysteps' semi-Lagrangian scheme; echo that
enters from outside the domain is "no echo" (``zerovalue``). pysteps is the optional ``baselines``
extra.

For model-space batches (Moving MNIST, radar scaled to [0, 1]) use :func:`forecast_model_space`,
which converts with a :class:`model.io.units.Scaling` (the identity for frames without units), runs a
forecaster per sample and channel and converts back.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model, model_to_dbz

log = logging.getLogger(__name__)

Forecaster = Callable[..., np.ndarray]


def _lead_steps(
    steps: int | None, lead_times: Sequence[float] | None, timestep_minutes: float
) -> list[float]:
    """Lead times in units of the frame interval, validated: positive and strictly increasing."""
    if (steps is None) == (lead_times is None):
        raise ValueError("give exactly one of steps (a count) or lead_times (minutes)")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        return [float(k) for k in range(1, int(steps) + 1)]
    if timestep_minutes <= 0:
        raise ValueError(f"timestep_minutes must be positive, got {timestep_minutes}")
    leads = [float(minutes) / timestep_minutes for minutes in lead_times or []]
    if not leads or leads[0] <= 0 or any(b <= a for a, b in zip(leads, leads[1:], strict=False)):
        raise ValueError(f"lead_times must be positive and strictly increasing minutes, got {lead_times}")
    return leads


def _check_frames(frames: np.ndarray, min_frames: int) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames.shape}")
    if frames.shape[0] < min_frames:
        raise ValueError(f"need at least {min_frames} frame(s), got {frames.shape[0]}")
    if np.all(np.isnan(frames[-1])):
        raise ValueError("the last frame holds no data (all NaN)")
    return frames


def persistence(
    frames: np.ndarray,
    steps: int | None = None,
    *,
    lead_times: Sequence[float] | None = None,
    timestep_minutes: float = 6.0,
) -> np.ndarray:
    """The last frame, unchanged, at every lead time.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W), any unit; T >= 1.
    steps : int, optional
        Number of frames ahead (1..steps). Give this or ``lead_times``.
    lead_times : sequence of float, optional
        Minutes after the last frame.
    timestep_minutes : float
        Interval between frames, minutes.

    Returns
    -------
    np.ndarray
        (L, H, W) float32, same unit as ``frames`` (NaN stays NaN).
    """
    frames = _check_frames(frames, 1)
    leads = _lead_steps(steps, lead_times, timestep_minutes)
    return np.repeat(frames[-1:], len(leads), axis=0)


def _import_pysteps() -> Any:
    """Import pysteps quietly: its ``__init__`` prints the config file it found to stdout."""
    with contextlib.redirect_stdout(io.StringIO()) as banner:
        try:
            import pysteps.extrapolation.semilagrangian
            import pysteps.motion.lucaskanade  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "the extrapolation baseline needs pysteps: pip install -e '.[baselines]'"
            ) from exc
    log.debug("pysteps: %s", banner.getvalue().strip())
    import pysteps

    return pysteps


def declustering_scale(grid: tuple[int, ...]) -> int:
    """Lucas-Kanade's declustering scale for an (H, W) grid: min(H, W) / 16 pixels, clipped to 2..20."""
    return int(np.clip(min(grid) // 16, 2, 20))


# (frames, options, compute) -> (2, H, W) field: a store that shares motion fields between the callers
# that set it (workers/motion_store.py: a slot's model and extrapolation jobs); None computes every time.
MotionStore = Callable[[np.ndarray, dict[str, Any], Callable[[], np.ndarray]], np.ndarray]
_MOTION_STORE: contextvars.ContextVar[MotionStore | None] = contextvars.ContextVar("motion_store", default=None)


@contextlib.contextmanager
def sharing_motion(store: MotionStore | None):  # type: ignore[no-untyped-def]
    """Within the block, :func:`estimate_motion` asks ``store`` for the field of its frames and options first."""
    token = _MOTION_STORE.set(store)
    try:
        yield
    finally:
        _MOTION_STORE.reset(token)


def motion_key(frames: np.ndarray, options: dict[str, Any], *, content: bool = True) -> str:
    """sha256 (32 hex) of the frames' shape, the Lucas-Kanade options and (``content``) the frames' bytes."""
    digest = hashlib.sha256(repr((frames.shape, sorted(options.items()))).encode())
    if content:
        digest.update(str(frames.dtype).encode())
        digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()[:32]


def estimate_motion(frames: np.ndarray, *, zerovalue: float, **lk_options: Any) -> np.ndarray:
    """Lucas-Kanade motion field (pysteps ``dense_lucaskanade``) of (T, H, W) frames, T >= 2.

    Computed by :func:`model.motion.dense_lucaskanade`: pysteps' result, interpolated faster.

    NaN becomes ``zerovalue``. The declustering scale defaults to min(H, W) / 16 pixels (2..20)
    so that small grids (64 x 64 Moving MNIST) keep enough vectors; other options pass through.

    Returns
    -------
    np.ndarray
        (2, H, W) float: x (column) and y (row) displacement in pixels per frame interval.
    """
    _import_pysteps()
    frames = np.nan_to_num(np.asarray(frames, dtype=np.float64), nan=zerovalue)
    frames = np.maximum(frames, zerovalue)
    options = dict(lk_options)  # copy: the caller's dict is not ours to change
    options.setdefault("decl_scale", declustering_scale(frames.shape[1:]))
    store = _MOTION_STORE.get()
    if store is not None:
        return store(frames, options, lambda: _lucas_kanade(frames, options))
    return _lucas_kanade(frames, options)


def _lucas_kanade(frames: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    from model.motion import dense_lucaskanade

    with warnings.catch_warnings():
        # Few tracked features (small, sparse digits) make pysteps' outlier test warn about a
        # singular covariance; it then keeps the vectors, which is the right outcome.
        warnings.filterwarnings("ignore", message="Singular matrix", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
        return dense_lucaskanade(frames, **options)


def extrapolation(
    frames: np.ndarray,
    steps: int | None = None,
    *,
    lead_times: Sequence[float] | None = None,
    timestep_minutes: float = 6.0,
    zerovalue: float = DEFAULT_SCALING["dbz_min"],
    motion_frames: int = 3,
    motion_options: dict[str, Any] | None = None,
) -> np.ndarray:
    """Lucas-Kanade motion + semi-Lagrangian advection of the last frame (pysteps).

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W) in dBZ (or any unit whose "no echo" value is ``zerovalue``), T >= 2; NaN = no data.
    steps, lead_times, timestep_minutes
        As in :func:`persistence`; fractional steps are advected exactly (not rounded).
    zerovalue : float
        The "no echo" value: fills NaN and the area advected in from outside the domain.
    motion_frames : int
        How many of the last frames the motion is estimated from (at least 2).
    motion_options : dict, optional
        Passed to :func:`estimate_motion` (pysteps ``dense_lucaskanade`` keywords).

    Returns
    -------
    np.ndarray
        (L, H, W) float32 in the unit of ``frames``, no NaN.
    """
    frames = _check_frames(frames, 2)
    leads = _lead_steps(steps, lead_times, timestep_minutes)
    if motion_frames < 2:
        raise ValueError(f"motion_frames must be at least 2, got {motion_frames}")
    pysteps = _import_pysteps()
    velocity = estimate_motion(frames[-motion_frames:], zerovalue=zerovalue, **(motion_options or {}))
    last = np.maximum(np.nan_to_num(frames[-1].astype(np.float64), nan=zerovalue), zerovalue)
    advected = pysteps.extrapolation.semilagrangian.extrapolate(last, velocity, leads, outval=zerovalue)
    return advected.astype(np.float32)


def sprog(
    frames: np.ndarray,
    steps: int | None = None,
    *,
    lead_times: Sequence[float] | None = None,
    timestep_minutes: float = 6.0,
    zerovalue: float = DEFAULT_SCALING["dbz_min"],
    rain_threshold: float = 0.0,
    motion_frames: int = 3,
) -> np.ndarray:
    """pysteps S-PROG (Seed 2003): extrapolation whose cascade levels decay by their own AR(2) rates.

    The field is split into spatial scales, each advected along the same Lucas-Kanade motion as
    :func:`extrapolation` and damped as fast as its scale loses predictability, then the forecast's
    distribution is matched to the last scan's (``cdf``). It is the smooth "mean" forecast that
    pysteps sets against MSE-trained networks.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W) dBZ, T >= 3 (the AR(2) needs three scans); NaN = no data.
    steps, lead_times, timestep_minutes
        As in :func:`extrapolation`; lead times must be whole scan intervals here.
    zerovalue : float
        "No echo" in dBZ; fills NaN.
    rain_threshold : float
        dBZ below which a pixel counts as no rain for pysteps' masks and probability matching.
    motion_frames : int
        How many of the last frames the motion is estimated from.

    Returns
    -------
    np.ndarray
        (L, H, W) float32 dBZ, no NaN.
    """
    frames = _check_frames(frames, 3)
    leads = _lead_steps(steps, lead_times, timestep_minutes)
    if any(abs(k - round(k)) > 1e-9 for k in leads):
        raise ValueError(f"S-PROG forecasts whole scan intervals; lead times {leads} are not")
    pysteps = _import_pysteps()
    import pysteps.nowcasts.sprog as pysteps_sprog

    field = np.maximum(np.nan_to_num(frames.astype(np.float64), nan=zerovalue), zerovalue)
    velocity = estimate_motion(field[-motion_frames:], zerovalue=zerovalue)
    # A cascade level has to hold at least a few wavelengths: fewer levels on small grids.
    levels = int(np.clip(np.log2(min(field.shape[1:])) - 1, 2, 6))
    timesteps = [int(round(k)) for k in leads]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        forecast = pysteps_sprog.forecast(
            field[-3:], velocity, timesteps, precip_thr=rain_threshold, n_cascade_levels=levels,
            probmatching_method="cdf",
        )
    del pysteps
    forecast = np.nan_to_num(np.asarray(forecast, dtype=np.float64), nan=zerovalue)
    return np.maximum(forecast, zerovalue).astype(np.float32)


# pysteps' recommended STEPS settings (its STEPS example and the ``steps.forecast`` documentation): rain
# rate in dB with 0.1 mm/h as the rain threshold, six cascade levels, the non-parametric noise, bps
# velocity perturbations and the incremental precipitation mask.
STEPS_RAIN_THRESHOLD_MM_H = 0.1
STEPS_ZEROVALUE_DBR = -15.0
STEPS_OPTIONS: dict[str, Any] = {"n_cascade_levels": 6, "noise_method": "nonparametric", "vel_pert_method": "bps",
                                 "mask_method": "incremental", "probmatching_method": "cdf"}


def steps_ensemble(
    frames: np.ndarray,
    steps: int,
    *,
    members: int,
    seed: int = 0,
    timestep_minutes: float = 6.0,
    km_per_pixel: float = 1.0,
    zerovalue: float = DEFAULT_SCALING["dbz_min"],
    motion_frames: int = 3,
    num_workers: int = 1,
) -> np.ndarray:
    """pysteps STEPS (Bowler et al. 2006, Seed et al. 2013): the reference ensemble nowcast.

    The scans are turned into rain rate (Marshall-Palmer) and then into dB of rain rate with
    0.1 mm/h as "no rain", as pysteps' STEPS example does; STEPS runs on the last three with
    :data:`STEPS_OPTIONS`, and the members are turned back into dBZ. The motion is the one the
    extrapolation baseline and the Lagrangian model use (Lucas-Kanade on the dBZ scans), so that a
    comparison with them compares the ensembles, not the motion fields.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W) dBZ, T >= 3; NaN = no data.
    steps : int
        Scan intervals ahead (1..steps).
    members : int
        Ensemble size.
    seed : int
        pysteps' seed: the same seed gives the same members.
    timestep_minutes, km_per_pixel : float
        Scan interval and grid spacing; STEPS' velocity perturbations are in km/h.
    zerovalue : float
        "No echo" in dBZ, for the motion and for rain below 0.1 mm/h in the result.
    num_workers : int
        pysteps' threads over members (1: the members one after another).

    Returns
    -------
    np.ndarray
        (members, steps, H, W) float32 dBZ, no NaN.
    """
    frames = _check_frames(frames, 3)
    leads = _lead_steps(steps, None, timestep_minutes)
    if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 1:
        raise ValueError(f"members must be a positive integer, got {members!r}")
    _import_pysteps()
    import pysteps.nowcasts.steps as pysteps_steps
    from pysteps.utils.transformation import dB_transform

    from model.io.units import dbz_to_rainrate, rainrate_to_dbz

    field = np.maximum(np.nan_to_num(frames.astype(np.float64), nan=zerovalue), zerovalue)
    velocity = estimate_motion(field[-motion_frames:], zerovalue=zerovalue)
    rate = dbz_to_rainrate(field[-3:]).astype(np.float64)
    metadata = {"unit": "mm/h", "transform": None, "threshold": STEPS_RAIN_THRESHOLD_MM_H, "zerovalue": 0.0}
    decibels, _ = dB_transform(rate, metadata, threshold=STEPS_RAIN_THRESHOLD_MM_H, zerovalue=STEPS_ZEROVALUE_DBR)
    threshold_dbr = 10.0 * np.log10(STEPS_RAIN_THRESHOLD_MM_H)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        forecast = pysteps_steps.forecast(
            decibels, velocity, len(leads), int(members), precip_thr=threshold_dbr, kmperpixel=km_per_pixel,
            timestep=timestep_minutes, seed=int(seed), num_workers=num_workers, **STEPS_OPTIONS,
        )
    forecast = np.asarray(forecast, dtype=np.float64)  # (members, steps, H, W) dB of rain rate
    rain = np.where(np.isfinite(forecast) & (forecast >= threshold_dbr), np.power(10.0, forecast / 10.0), 0.0)
    with np.errstate(divide="ignore"):
        dbz = rainrate_to_dbz(rain)
    return np.maximum(np.nan_to_num(dbz, nan=zerovalue, neginf=zerovalue), zerovalue).astype(np.float32)


_METHODS: dict[str, Forecaster] = {
    "persistence": persistence,
    "extrapolation": extrapolation,
    "sprog": sprog,
}


def get_method(name: str) -> Forecaster:
    """A baseline forecaster by name (case-insensitive): ``persistence`` | ``extrapolation`` | ``sprog``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, not {type(name).__name__}")
    key = name.lower()
    if key not in _METHODS:
        raise ValueError(f"unknown baseline {name!r}; valid names: {sorted(_METHODS)}")
    return _METHODS[key]


def forecast_model_space(
    name: str, context: np.ndarray, steps: int, scaling: Scaling = DEFAULT_SCALING, **options: Any
) -> np.ndarray:
    """Run a baseline on a model-space batch.

    Parameters
    ----------
    name : str
        ``persistence`` | ``extrapolation`` | ``sprog``.
    context : np.ndarray
        (B, T, C, H, W) in [0, 1].
    steps : int
        Frames to predict.
    scaling : Scaling
        How [0, 1] maps to physical values; ``IDENTITY_SCALING`` for Moving MNIST / KTH, whose
        "no echo" value is then 0.

    Returns
    -------
    np.ndarray
        (B, steps, C, H, W) float32 in [0, 1].
    """
    forecaster = get_method(name)
    context = np.asarray(context, dtype=np.float32)
    if context.ndim != 5:
        raise ValueError(f"context must be (B, T, C, H, W), got shape {context.shape}")
    b, _, c, h, w = context.shape
    out = np.empty((b, steps, c, h, w), dtype=np.float32)
    extra = dict(options)
    if forecaster in (extrapolation, sprog):
        extra.setdefault("zerovalue", float(scaling["dbz_min"]))
    for i in range(b):
        for ch in range(c):
            physical = model_to_dbz(context[i, :, ch], scaling)
            out[i, :, ch] = dbz_to_model(forecaster(physical, steps, **extra), scaling)
    return out
