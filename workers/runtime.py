"""The model inside a worker child: loaded lazily on the first task, cached per process.

Interface
---------
get_model(settings) -> LoadedModel           cached per (pid, checkpoint sha256); loads + warms up once
run_forecast(settings, dbz (T, H, W), steps, *, members=1, seed=0) -> Forecast
    PredRNN (an ensemble of ``members`` drawn from ``seed`` when members > 1), or extrapolation as the fallback
run_extrapolation(settings, dbz (T, H, W), steps) -> Forecast   the extrapolation product of a slot

Never called at import or in ``worker_process_init`` (its 4 s budget kills slow children) and never in
the prefork parent: a CUDA context does not survive ``fork``. torch is imported inside the functions
so that importing ``workers.tasks`` in the parent stays free of it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from model.io.units import DEFAULT_SCALING
from workers import jobs
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    import torch

    from model.network.predrnn import PredRNN

log = logging.getLogger(__name__)

EXTRAPOLATION_MODEL = "pysteps Lucas-Kanade + semi-Lagrangian extrapolation"


class ModelUnavailableError(RuntimeError):
    """No usable checkpoint and the extrapolation fallback is switched off."""


@dataclass
class LoadedModel:
    model: PredRNN
    meta: dict[str, Any]
    device: torch.device
    precision: str  # "fp32" | "bf16"
    checkpoint_sha256: str
    load_seconds: float
    pid: int


@dataclass
class Forecast:
    dbz: np.ndarray  # (L, H, W) float32 dBZ
    source: str  # "predrnn" | "extrapolation"
    model_name: str
    model_version: str
    checkpoint_sha256: str
    fallback_reason: str | None = None  # why the model did not run, when source != "predrnn"
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "model_load", "inference", stages
    frame: str | None = None  # the model's frame, "eulerian" | "lagrangian"; None for extrapolation
    # An ensemble's (M, L, H, W) float32 dBZ members (M > 1), and ``dbz`` is then their mean; None otherwise.
    members: np.ndarray | None = None
    seed: int = 0  # the ensemble's seed
    perturbation: str = ""  # how its members were perturbed: "<settings source>: <perturb kind>"

    @property
    def member_count(self) -> int:
        return 1 if self.members is None else int(self.members.shape[0])


_CACHE: dict[tuple[int, str], LoadedModel] = {}


def resolve_device(setting: str) -> torch.device:
    """``auto`` -> CUDA when this (child) process sees a device, else CPU."""
    import torch

    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def torch_threads(setting: int) -> int:
    """Intra-op threads for the model: ``setting``, or for 0 the usable cores less one.

    The model worker shares its machine with the API, beat and the cpu-queue worker (the local
    and compose stacks). A torch thread per core then waits on a core another process holds at
    every one of its barriers: on 2 cores with the other one busy, 2 threads ran a nowcast about
    9 times slower than 1 (docs: Results). Leaving one core free avoids that.
    """
    if setting > 0:
        return setting
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def get_model(settings: WorkerSettings) -> LoadedModel:
    """The checkpoint's model on the configured device, loaded once per process and checkpoint.

    Raises ``model.checkpoint.CheckpointError`` when the file is missing or unusable.
    """
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.network.precision import resolve as resolve_precision

    sha256 = jobs.model_version(settings.checkpoint)
    if sha256 == jobs.NO_CHECKPOINT:
        raise CheckpointError(f"{settings.checkpoint}: checkpoint file not found")
    key = (os.getpid(), sha256)
    if key in _CACHE:
        return _CACHE[key]
    import torch

    started = time.perf_counter()
    torch.set_num_threads(torch_threads(settings.torch_threads))
    model, meta = load_checkpoint(settings.checkpoint)
    device = resolve_device(settings.device)
    model = model.to(device).eval()
    precision = resolve_precision(settings.precision, device)
    if settings.warmup:
        # A tiny forward pass: allocator, kernels (and compile caches, if ever enabled) are ready
        # before the first real scan arrives.
        p = model.config.patch_size
        dummy = torch.zeros(1, 2, model.config.channels, 2 * p, 2 * p, device=device)
        condition = torch.zeros(1, model.config.condition_channels, 2 * p, 2 * p, device=device)
        model.forecast(dummy, 1, condition=condition if model.config.condition_channels else None)
        if model.config.frame == "lagrangian":  # pysteps' import and the displacement kernels too
            from model.baselines import _import_pysteps
            from model.network.lagrangian import displacements

            _import_pysteps()
            displacements(np.zeros((2, 2 * p, 2 * p)), 1)
    loaded = LoadedModel(model, meta, device, precision, sha256, time.perf_counter() - started, os.getpid())
    _CACHE.clear()  # a new checkpoint replaces the old one; keep one model per process
    _CACHE[key] = loaded
    log.info("loaded %s (%s) on %s, %s, %d thread(s), in %.2f s", settings.checkpoint, sha256[:12], device,
             precision, torch.get_num_threads(), loaded.load_seconds)
    return loaded


def extrapolate(dbz: np.ndarray, steps: int, timestep_minutes: float) -> np.ndarray:
    """Optical-flow extrapolation of (T, H, W) dBZ -> (steps, H, W) dBZ (model.baselines)."""
    from model.baselines import get_method

    forecast = get_method("extrapolation")
    zerovalue = DEFAULT_SCALING["dbz_min"]
    return forecast(dbz, steps, timestep_minutes=timestep_minutes, zerovalue=zerovalue)


def run_forecast(settings: WorkerSettings, dbz: np.ndarray, steps: int, *, members: int = 1,
                 seed: int = 0) -> Forecast:
    """PredRNN on the context (T, H, W) dBZ; extrapolation when the model cannot run.

    The fallback keeps the scheduled product from silently disappearing; the reason is returned so
    the job record and the product's ``source`` attribute can say what happened. ``members`` > 1
    runs :func:`model.ensemble.forecast_ensemble_dbz` with the calibration shipped beside the
    checkpoint: ``Forecast.members`` holds the members, ``dbz`` their mean. ``members == 1`` is the
    deterministic path exactly. The fallback is always the deterministic extrapolation.
    """
    from model.checkpoint import CheckpointError
    from model.forecast import forecast_dbz

    reason: str | None = None
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        loaded = get_model(settings)
        timings["model_load"] = time.perf_counter() - started  # the first task also pays torch's import
        started = time.perf_counter()
        scaling = loaded.meta.get("scaling") or DEFAULT_SCALING
        ensemble: dict[str, Any] = {}
        if members > 1:
            from model.ensemble import EnsembleSettings, ensemble_mean, forecast_ensemble_dbz

            calibration = EnsembleSettings.for_checkpoint(settings.checkpoint)
            drawn = forecast_ensemble_dbz(loaded.model, dbz, steps, members=members, seed=seed,
                                          settings=calibration, scaling=scaling, precision=loaded.precision,
                                          device=loaded.device, timings=timings)
            predicted = ensemble_mean(drawn)
            ensemble = {"members": drawn, "seed": int(seed),
                        "perturbation": calibration.describe()}
        else:
            predicted = forecast_dbz(loaded.model, dbz, steps, scaling=scaling, precision=loaded.precision,
                                     device=loaded.device, timings=timings)
        timings["inference"] = time.perf_counter() - started
        config = loaded.model.config
        # Keywords: frame and timings are both optional, and their order is easy to swap.
        return Forecast(predicted, "predrnn", f"PredRNN-{config.version}", loaded.checkpoint_sha256,
                        loaded.checkpoint_sha256, fallback_reason=None, frame=config.frame, timings=timings,
                        **ensemble)
    except (CheckpointError, RuntimeError, ValueError) as exc:  # missing/corrupt file, OOM, bad weights
        reason = f"model unavailable: {exc}"
        if not settings.fallback_extrapolation:
            raise ModelUnavailableError(reason) from exc
        log.warning("%s; falling back to extrapolation", reason)
    return run_extrapolation(settings, dbz, steps, reason=reason, timings=timings)


def run_extrapolation(settings: WorkerSettings, dbz: np.ndarray, steps: int, *, reason: str | None = None,
                      timings: dict[str, float] | None = None, members: int = 1, seed: int = 0) -> Forecast:
    """The extrapolation nowcast of the context (T, H, W) dBZ: (steps, H, W) dBZ, ``source = "extrapolation"``.

    The scheduled extrapolation product of every slot and the model's fallback are this same call,
    so a fallback product equals the slot's extrapolation product. ``reason`` (set for a fallback)
    says why the model did not run. ``members`` and ``seed`` are accepted and ignored: the
    extrapolation stream stays deterministic.
    """
    del members, seed
    timings = {} if timings is None else timings
    started = time.perf_counter()
    predicted = extrapolate(dbz, steps, settings.timestep_minutes)
    timings["inference"] = time.perf_counter() - started
    return Forecast(predicted, "extrapolation", EXTRAPOLATION_MODEL, _pysteps_version(), "",
                    fallback_reason=reason, timings=timings)


def _pysteps_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pysteps {version('pysteps')}"
    except PackageNotFoundError:
        return "pysteps"
