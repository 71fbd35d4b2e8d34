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
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
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


def _atomic_png(path: Path, image: Image.Image) -> None:
    _atomic_bytes(path, png_bytes(image))


class _FileWriter:
    """Writes quicklook files on a few threads while the caller draws the next frame.

    Each file still appears whole (written, fsynced, renamed: model/io/atomic.py); the threads only
    let the fsyncs, which wait on the disk, and Pillow's zlib, which releases the GIL, overlap the
    drawing and each other. :meth:`wait` re-raises the first error of any write.
    """

    def __init__(self, pool: ThreadPoolExecutor | None) -> None:
        self.pool = pool
        self.pending: list[Future[None]] = []

    def png(self, path: Path, image: Image.Image) -> None:
        if self.pool is None:
            _atomic_png(path, image)
        else:
            self.pending.append(self.pool.submit(_atomic_png, path, image))

    def data(self, path: Path, data: bytes) -> None:
        if self.pool is None:
            _atomic_bytes(path, data)
        else:
            self.pending.append(self.pool.submit(_atomic_bytes, path, data))

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()


def render_quicklooks(
    directory: Path, dbz: np.ndarray, *, sequence: RadarSequence, reference_time: dt.datetime,
    lead_minutes: list[float], source: str, timings: dict[str, float] | None = None,
    writer: _FileWriter | None = None,
) -> tuple[dict[str, str], str]:
    """One PNG per lead time and the animated GIF; returns ({lead minutes: png path}, gif path).

    ``timings``, when given, receives the seconds of ``write_pngs`` and ``write_gif``. ``writer``
    (default: write each file here) may write the files on threads; they are all written when
    this returns.
    """
    timings = {} if timings is None else timings
    writer = writer or _FileWriter(None)
    started = time.perf_counter()
    layout = quicklook_layout(sequence.grid)
    pngs: dict[str, str] = {}
    frames: list[Image.Image] = []
    for index, lead in enumerate(lead_minutes):
        valid = reference_time + dt.timedelta(minutes=float(lead))
        frame = layout.frame(dbz[index], f"{source} nowcast +{int(round(lead)):03d} min\n"
                                         f"valid {valid:%Y-%m-%d %H:%MZ}, from {reference_time:%H:%MZ}")
        path = directory / png_name(lead)
        writer.png(path, frame)
        pngs[str(int(round(lead)))] = str(path)
        frames.append(frame)
    timings["write_pngs"] = time.perf_counter() - started
    started = time.perf_counter()
    # The GIF is the PNGs' own indexed frames: one shared palette, nothing to quantize.
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0,
                   optimize=False)
    gif = directory / GIF_NAME
    writer.data(gif, buffer.getvalue())
    timings["write_gif"] = time.perf_counter() - started
    started = time.perf_counter()
    writer.wait()
    timings["write_pngs_wait"] = time.perf_counter() - started  # the files' last writes and fsyncs
    return pngs, str(gif)


def render_observed(directory: Path, sequence: RadarSequence, *, count: int = OBSERVED_SCANS,
                    writer: _FileWriter | None = None) -> dict[str, str]:
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
    writer : _FileWriter, optional
        Writes the files (default: here, one after the other); all are written when this returns.

    Returns
    -------
    dict
        {minutes before the reference time: png path}, e.g. ``{"0": ".../obs_000.png", "6": ...}``.
    """
    writer = writer or _FileWriter(None)
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
        writer.png(path, layout.frame(sequence.dbz[index], title))
        pngs[str(before)] = str(path)
    writer.wait()
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


# HDF5 (under netCDF4) is not built thread-safe: every netCDF write of this module holds this lock,
# so that the observed product written during the forecast and forecast.nc never meet inside it.
_HDF5 = threading.Lock()


class ObservedProducts:
    """observed.nc and the observed PNGs of a job, written on a thread while the forecast runs.

    They depend on the input scans only, so they need not wait for the forecast::

        with ObservedProducts(product_dir, sequence) as observed:
            forecast = ...
            write_products(..., observed=observed)

    Leaving the block waits for the thread (also on an error, so that nothing writes into a
    product directory that a failed job removes); :meth:`result` re-raises the thread's error.
    """

    def __init__(self, product_dir: Path, sequence: RadarSequence, *, count: int = OBSERVED_SCANS,
                 quicklooks: bool = True) -> None:
        self.product_dir = Path(product_dir)
        self.sequence, self.count, self.quicklooks = sequence, count, quicklooks
        self.timings: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="observed")
        self._future: Future[tuple[Path, dict[str, str]]] | None = None

    def __enter__(self) -> ObservedProducts:
        self.product_dir.mkdir(parents=True, exist_ok=True)
        self._future = self._pool.submit(self._write)
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def _write(self) -> tuple[Path, dict[str, str]]:
        started = time.perf_counter()
        with _HDF5:
            path = write_observed(self.product_dir / OBSERVED_NAME, self.sequence, count=self.count)
        self.timings["write_observed_nc"] = time.perf_counter() - started
        pngs: dict[str, str] = {}
        if self.quicklooks:
            started = time.perf_counter()
            pngs = render_observed(self.product_dir, self.sequence, count=self.count)
            self.timings["write_observed"] = time.perf_counter() - started
        return path, pngs

    def result(self) -> tuple[Path, dict[str, str]]:
        """(observed.nc path, {minutes before the reference time: png path}), once written."""
        if self._future is None:
            raise RuntimeError("ObservedProducts used outside its with block")
        return self._future.result()


def _write_netcdf(product_dir: Path, forecast: Forecast, sequence: RadarSequence, *, lead_minutes: list[float],
                  observed_scans: int, attrs: dict[str, Any], timings: dict[str, float]) -> tuple[Path, Path | None]:
    """forecast.nc then (``observed_scans`` >= 0) observed.nc; their seconds into ``timings``
    (``write_forecast_nc``, ``write_observed_nc``)."""
    with _HDF5:
        return _write_netcdf_locked(product_dir, forecast, sequence, lead_minutes=lead_minutes,
                                    observed_scans=observed_scans, attrs=attrs, timings=timings)


def _write_netcdf_locked(product_dir: Path, forecast: Forecast, sequence: RadarSequence, *,
                         lead_minutes: list[float], observed_scans: int, attrs: dict[str, Any],
                         timings: dict[str, float]) -> tuple[Path, Path | None]:
    started = time.perf_counter()
    reference = sequence.times[-1].astype(dt.datetime).replace(tzinfo=dt.UTC)
    # An ensemble writes its members (the product holds their mean and probabilities too); its
    # quicklooks draw forecast.dbz, the members' mean.
    fields = forecast.dbz if forecast.members is None else forecast.members
    netcdf = write_forecast(
        product_dir / NETCDF_NAME, fields,
        reference_time=reference, lead_minutes=lead_minutes, grid=sequence.grid,
        model=forecast.model_name, model_version=forecast.model_version,
        checkpoint_sha256=forecast.checkpoint_sha256, source=forecast.source,
        input_times=sequence.times, extra_attrs=attrs,
        ensemble_seed=forecast.seed, ensemble_perturbation=forecast.perturbation,
    )
    timings["write_forecast_nc"] = time.perf_counter() - started
    if observed_scans < 0:  # written already, by ObservedProducts
        return netcdf, None
    started = time.perf_counter()
    # The observed scans as data too: the viewer draws every frame from values, not pictures.
    observed = write_observed(product_dir / OBSERVED_NAME, sequence, count=observed_scans)
    timings["write_observed_nc"] = time.perf_counter() - started
    return netcdf, observed


QUICKLOOK_WRITERS = 4  # quicklook files written at once (their fsyncs wait on the disk, not a core)


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
    observed: ObservedProducts | None = None,
) -> dict[str, Any]:
    """Write the netCDF product (always) and the quicklooks (optional) of one forecast.

    The quicklooks are a PNG per lead time, the animated GIF of the forecast, and a PNG of each of
    the last ``observed_scans`` input scans (``obs_<MMM>.png``, MMM minutes before the reference time).
    The netCDF files are written on one thread of their own (HDF5 is never entered from two
    threads) while this one draws the quicklooks, whose files a few more threads write; every
    file is complete when this returns, and an error in any of them is raised here.
    ``timings``, when given, receives the seconds of ``write_forecast_nc``, ``write_observed_nc``,
    ``write_netcdf`` (the two), ``write_pngs``, ``write_gif``, ``write_pngs_wait`` (the last
    quicklook files), ``write_quicklooks`` (forecast PNGs and GIF), ``write_observed`` (the
    observed PNGs) and ``write_netcdf_wait`` (how long the quicklooks then waited for the netCDF).
    The netCDF stages overlap the quicklook stages, so their sum exceeds the elapsed time.
    ``observed``: the job's :class:`ObservedProducts`, started before the forecast; its files
    then are not written again here, and ``write_observed_wait`` says how long they were waited for.
    """
    timings = {} if timings is None else timings
    product_dir = Path(product_dir)
    product_dir.mkdir(parents=True, exist_ok=True)
    reference = sequence.times[-1].astype(dt.datetime).replace(tzinfo=dt.UTC)
    attrs = dict(extra_attrs or {})
    if forecast.fallback_reason:
        attrs["fallback_reason"] = forecast.fallback_reason
    if forecast.frame:
        attrs["model_frame"] = forecast.frame
    products: dict[str, Any] = {"png": {}, "gif": None, "obs_png": {}}
    netcdf_timings: dict[str, float] = {}
    # Leaving the with block waits for every thread, also on an error: no write outlives this call
    # (a failed job's product directory is removed right after it).
    with ThreadPoolExecutor(1, thread_name_prefix="netcdf") as netcdf_pool, \
            ThreadPoolExecutor(QUICKLOOK_WRITERS, thread_name_prefix="quicklook") as file_pool:
        netcdf_files = netcdf_pool.submit(_write_netcdf, product_dir, forecast, sequence, lead_minutes=lead_minutes,
                                          observed_scans=-1 if observed else observed_scans, attrs=attrs,
                                          timings=netcdf_timings)
        if quicklooks:
            writer = _FileWriter(file_pool)
            started = time.perf_counter()
            label = forecast.source if forecast.members is None else f"{forecast.source} ensemble mean"
            products["png"], products["gif"] = render_quicklooks(
                product_dir, forecast.dbz, sequence=sequence, reference_time=reference,
                lead_minutes=lead_minutes, source=label, timings=timings, writer=writer,
            )
            timings["write_quicklooks"] = time.perf_counter() - started
            if observed is None:
                started = time.perf_counter()
                products["obs_png"] = render_observed(product_dir, sequence, count=observed_scans, writer=writer)
                timings["write_observed"] = time.perf_counter() - started
        started = time.perf_counter()
        netcdf, observed_nc = netcdf_files.result()
        timings["write_netcdf_wait"] = time.perf_counter() - started
    if observed is not None:
        started = time.perf_counter()
        observed_nc, products["obs_png"] = observed.result()
        timings["write_observed_wait"] = time.perf_counter() - started
        netcdf_timings.update(observed.timings)
    timings.update(netcdf_timings)
    timings["write_netcdf"] = netcdf_timings["write_forecast_nc"] + netcdf_timings["write_observed_nc"]
    return {"netcdf": str(netcdf), "observed": str(observed_nc), **products}
