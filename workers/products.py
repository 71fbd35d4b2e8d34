"""Forecast products on disk: the CF netCDF, a PNG quicklook per lead time and an animated GIF.

Interface
---------
write_products(product_dir, forecast, sequence, *, lead_minutes, quicklooks=True, observed_scans=6,
               extra_attrs=None)
    -> {"netcdf": path, "observed": path, "png": {"6": path, ...}, "gif": path,
        "obs_png": {"0": path, "6": path, ...}}                     (paths as strings)

Layout (docs/contracts.md): ``products/<job_id>/forecast.nc``, ``observed.nc`` (the last input
scans as data, for the viewer's map; for an ensemble the ensemble product, whose quicklooks
draw the ensemble mean), ``lead_<MMM>.png``, ``animation.gif``,
and ``obs_<MMM>.png`` for the observed input scans, MMM minutes before the reference time (000 = the
last scan), drawn with the same colour scale so the viewer can run observed into forecast.
Every file is written under a hidden temporary name and renamed, so a reader (the API) sees either
nothing or a whole file. The pictures and their colour scale are model/visualization (quicklook.py,
palette.py).
"""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.io.atomic import atomic_path
from model.io.netcdf import RadarSequence, write_forecast, write_observed
from model.visualization.quicklook import png_bytes, quicklook_layout
from workers.runtime import Forecast

GIF_FRAME_MS = 400
NETCDF_NAME = "forecast.nc"
OBSERVED_NAME = "observed.nc"
GIF_NAME = "animation.gif"
OBSERVED_SCANS = 6  # input scans drawn as "observed" quicklooks (the last half hour at 6 minutes)


def png_name(lead_minutes: float) -> str:
    return f"lead_{int(round(lead_minutes)):03d}.png"


def observed_png_name(minutes_before: int) -> str:
    """``obs_<MMM>.png``: MMM minutes before the reference time (000 = the last observed scan)."""
    return f"obs_{int(minutes_before):03d}.png"


def _atomic_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def render_quicklooks(
    directory: Path, dbz: np.ndarray, *, sequence: RadarSequence, reference_time: dt.datetime,
    lead_minutes: list[float], source: str,
) -> tuple[dict[str, str], str]:
    """One PNG per lead time and the animated GIF; returns ({lead minutes: png path}, gif path)."""
    layout = quicklook_layout(sequence.grid)
    pngs: dict[str, str] = {}
    frames: list[Image.Image] = []
    for index, lead in enumerate(lead_minutes):
        valid = reference_time + dt.timedelta(minutes=float(lead))
        frame = layout.frame(dbz[index], f"{source} nowcast +{int(round(lead)):03d} min\n"
                                         f"valid {valid:%Y-%m-%d %H:%MZ}, from {reference_time:%H:%MZ}")
        path = directory / png_name(lead)
        _atomic_bytes(path, png_bytes(frame))
        pngs[str(int(round(lead)))] = str(path)
        frames.append(frame)
    # The GIF is the PNGs' own indexed frames: one shared palette, nothing to quantize.
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0,
                   optimize=False)
    gif = directory / GIF_NAME
    _atomic_bytes(gif, buffer.getvalue())
    return pngs, str(gif)


def render_observed(directory: Path, sequence: RadarSequence, *, count: int = OBSERVED_SCANS) -> dict[str, str]:
    """PNGs of the last ``count`` input scans, titled "observed", in the forecast quicklooks' style.

    Parameters
    ----------
    directory : Path
        The job's product directory.
    sequence : RadarSequence
        The scans the forecast started from: ``dbz`` (T, H, W) in dBZ, ``times`` (T,) UTC; the last
        one is the reference time.
    count : int
        How many of the newest scans to draw (fewer when the sequence is shorter).

    Returns
    -------
    dict
        {minutes before the reference time: png path}, e.g. ``{"0": ".../obs_000.png", "6": ...}``.
    """
    times = [t.astype(dt.datetime).replace(tzinfo=dt.UTC) for t in sequence.times]
    reference = times[-1]
    first = max(0, len(times) - count)
    layout = quicklook_layout(sequence.grid)
    pngs: dict[str, str] = {}
    for index in range(first, len(times)):
        before = int(round((reference - times[index]).total_seconds() / 60))
        offset = f"-{before:03d} min" if before else "000 min (latest)"
        title = (f"observed scan {offset}\n"
                 f"valid {times[index]:%Y-%m-%d %H:%MZ}, reference {reference:%H:%MZ}")
        path = directory / observed_png_name(before)
        _atomic_bytes(path, png_bytes(layout.frame(sequence.dbz[index], title)))
        pngs[str(before)] = str(path)
    return pngs


def remove_partial_files(directory: Path) -> list[Path]:
    """Delete temporaries a killed attempt left behind (hidden ``.name.*.tmp`` files)."""
    removed = []
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_products(
    product_dir: Path,
    forecast: Forecast,
    sequence: RadarSequence,
    *,
    lead_minutes: list[float],
    quicklooks: bool = True,
    observed_scans: int = OBSERVED_SCANS,
    extra_attrs: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write the netCDF product (always) and the quicklooks (optional) of one forecast.

    The quicklooks are a PNG per lead time, the animated GIF of the forecast, and a PNG of each of
    the last ``observed_scans`` input scans (``obs_<MMM>.png``, MMM minutes before the reference time).
    ``timings``, when given, receives the seconds of ``write_netcdf``, ``write_quicklooks`` (forecast
    PNGs and GIF) and ``write_observed``.
    """
    timings = {} if timings is None else timings
    started = time.perf_counter()
    product_dir = Path(product_dir)
    product_dir.mkdir(parents=True, exist_ok=True)
    reference = sequence.times[-1].astype(dt.datetime).replace(tzinfo=dt.UTC)
    attrs = dict(extra_attrs or {})
    if forecast.fallback_reason:
        attrs["fallback_reason"] = forecast.fallback_reason
    if forecast.frame:
        attrs["model_frame"] = forecast.frame
    # An ensemble writes its members (the product holds their mean and probabilities too); its
    # quicklooks below draw forecast.dbz, the members' mean.
    fields = forecast.dbz if forecast.members is None else forecast.members
    netcdf = write_forecast(
        product_dir / NETCDF_NAME, fields,
        reference_time=reference, lead_minutes=lead_minutes, grid=sequence.grid,
        model=forecast.model_name, model_version=forecast.model_version,
        checkpoint_sha256=forecast.checkpoint_sha256, source=forecast.source,
        input_times=sequence.times, extra_attrs=attrs,
        ensemble_seed=forecast.seed, ensemble_perturbation=forecast.perturbation,
    )
    # The observed scans as data too: the viewer draws every frame from values, not pictures.
    observed = write_observed(product_dir / OBSERVED_NAME, sequence, count=observed_scans)
    timings["write_netcdf"] = time.perf_counter() - started
    products: dict[str, Any] = {"netcdf": str(netcdf), "observed": str(observed), "png": {}, "gif": None,
                                "obs_png": {}}
    if quicklooks:
        started = time.perf_counter()
        label = forecast.source if forecast.members is None else f"{forecast.source} ensemble mean"
        products["png"], products["gif"] = render_quicklooks(
            product_dir, forecast.dbz, sequence=sequence, reference_time=reference,
            lead_minutes=lead_minutes, source=label,
        )
        timings["write_quicklooks"] = time.perf_counter() - started
        started = time.perf_counter()
        products["obs_png"] = render_observed(product_dir, sequence, count=observed_scans)
        timings["write_observed"] = time.perf_counter() - started
    return products
