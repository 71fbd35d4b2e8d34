"""Forecast products on disk: the CF netCDF, a PNG quicklook per lead time and an animated GIF.

Interface
---------
write_products(product_dir, forecast, sequence, *, lead_minutes, quicklooks=True, observed_scans=6,
               extra_attrs=None)
    -> {"netcdf": path, "png": {"6": path, ...}, "gif": path,
        "obs_png": {"0": path, "6": path, ...}}                     (paths as strings)
reflectivity_colormap() -> (ListedColormap, BoundaryNorm)          the scale used for every image

Layout (docs/contracts.md): ``products/<job_id>/forecast.nc``, ``lead_<MMM>.png``, ``animation.gif``,
and ``obs_<MMM>.png`` for the observed input scans, MMM minutes before the reference time (000 = the
last scan), drawn with the same colour scale so the viewer can run observed into forecast.
Every file is written under a hidden temporary name and renamed, so a reader (the API) sees either
nothing or a whole file. Rendering uses matplotlib's Agg canvas directly (no pyplot global state).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from PIL import Image

from model.io.netcdf import RadarSequence, write_forecast
from workers.runtime import Forecast

# The widely used US NWS reflectivity palette: one colour per 5 dBZ from 5 to 75 dBZ; below 5 dBZ
# is left transparent-white so light noise does not paint the map.
REFLECTIVITY_LEVELS = list(range(5, 80, 5))  # dBZ bin edges
REFLECTIVITY_COLOURS = [
    "#04e9e7", "#019ff4", "#0300f4", "#02fd02", "#01c501", "#008e00", "#fdf802",
    "#e5bc00", "#fd9500", "#fd0000", "#d40000", "#bc0000", "#f800fd", "#9854c6",
]
GIF_FRAME_MS = 400
NETCDF_NAME = "forecast.nc"
GIF_NAME = "animation.gif"
OBSERVED_SCANS = 6  # input scans drawn as "observed" quicklooks (the last half hour at 6 minutes)


def png_name(lead_minutes: float) -> str:
    return f"lead_{int(round(lead_minutes)):03d}.png"


def observed_png_name(minutes_before: int) -> str:
    """``obs_<MMM>.png``: MMM minutes before the reference time (000 = the last observed scan)."""
    return f"obs_{int(minutes_before):03d}.png"


def reflectivity_colormap() -> tuple[ListedColormap, BoundaryNorm]:
    # under 5 dBZ: no echo (white); over 75 dBZ: the top colour; no data: light grey.
    cmap = ListedColormap(REFLECTIVITY_COLOURS, name="nws_reflectivity").with_extremes(
        under="white", over=REFLECTIVITY_COLOURS[-1], bad="#d9d9d9")
    return cmap, BoundaryNorm(REFLECTIVITY_LEVELS, cmap.N)


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _extent(sequence: RadarSequence) -> tuple[list[float] | None, str]:
    """imshow extent in km (or degrees) from the 1-D axes, and the axis unit; None without axes."""
    x, y = sequence.grid.x, sequence.grid.y
    if x is None or y is None or x.size < 2 or y.size < 2:
        return None, "pixel"
    degrees = sequence.grid.x_name in ("lon", "longitude")
    scale = 1.0 if degrees else 1e-3
    dx, dy = (x[1] - x[0]) * scale / 2, (y[1] - y[0]) * scale / 2
    return [x[0] * scale - dx, x[-1] * scale + dx, y[0] * scale - dy, y[-1] * scale + dy], (
        "degrees" if degrees else "km")


class _QuicklookFigure:
    """One Agg figure (map, colour bar, axis labels) reused for every frame of a job.

    Forecast and observed frames go through the same figure, so they share the colour scale,
    the legend and the layout; only the title and the data change from frame to frame.
    """

    def __init__(self, sequence: RadarSequence, first: np.ndarray) -> None:
        cmap, norm = reflectivity_colormap()
        extent, unit = _extent(sequence)
        self.figure = Figure(figsize=(5.6, 4.8), dpi=80)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_subplot()
        # Row 0 is the first y value; with ascending y (north up in projected grids) that is the bottom.
        y = sequence.grid.y
        ascending = y is None or y.size < 2 or y[1] > y[0]
        self.image = self.axes.imshow(np.ma.masked_invalid(first), cmap=cmap, norm=norm, extent=extent,
                                      origin="lower" if ascending else "upper", interpolation="nearest")
        colorbar = self.figure.colorbar(self.image, ax=self.axes, extend="max", ticks=REFLECTIVITY_LEVELS[::2])
        colorbar.set_label("reflectivity (dBZ)")
        self.axes.set_xlabel(f"x ({unit})")
        self.axes.set_ylabel(f"y ({unit})")

    def render(self, field: np.ndarray, title: str) -> np.ndarray:
        """(H, W) dBZ -> (rows, cols, 4) uint8 RGBA of the whole figure."""
        self.image.set_data(np.ma.masked_invalid(field))
        self.axes.set_title(title, fontsize=10)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba()).copy()


def _png_bytes(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba).convert("RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def render_quicklooks(
    directory: Path, dbz: np.ndarray, *, sequence: RadarSequence, reference_time: dt.datetime,
    lead_minutes: list[float], source: str,
) -> tuple[dict[str, str], str]:
    """One PNG per lead time and the animated GIF; returns ({lead minutes: png path}, gif path)."""
    figure = _QuicklookFigure(sequence, dbz[0])
    pngs: dict[str, str] = {}
    frames: list[Image.Image] = []
    for index, lead in enumerate(lead_minutes):
        valid = reference_time + dt.timedelta(minutes=float(lead))
        rgba = figure.render(dbz[index], f"{source} nowcast +{int(round(lead)):03d} min\n"
                                         f"valid {valid:%Y-%m-%d %H:%MZ}, from {reference_time:%H:%MZ}")
        path = directory / png_name(lead)
        _atomic_bytes(path, _png_bytes(rgba))
        pngs[str(int(round(lead)))] = str(path)
        frames.append(Image.fromarray(rgba).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0)
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
    figure = _QuicklookFigure(sequence, sequence.dbz[first])
    pngs: dict[str, str] = {}
    for index in range(first, len(times)):
        before = int(round((reference - times[index]).total_seconds() / 60))
        offset = f"-{before:03d} min" if before else "000 min (latest)"
        title = (f"observed scan {offset}\n"
                 f"valid {times[index]:%Y-%m-%d %H:%MZ}, reference {reference:%H:%MZ}")
        path = directory / observed_png_name(before)
        _atomic_bytes(path, _png_bytes(figure.render(sequence.dbz[index], title)))
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
) -> dict[str, Any]:
    """Write the netCDF product (always) and the quicklooks (optional) of one forecast.

    The quicklooks are a PNG per lead time, the animated GIF of the forecast, and a PNG of each of
    the last ``observed_scans`` input scans (``obs_<MMM>.png``, MMM minutes before the reference time).
    """
    product_dir = Path(product_dir)
    product_dir.mkdir(parents=True, exist_ok=True)
    reference = sequence.times[-1].astype(dt.datetime).replace(tzinfo=dt.UTC)
    attrs = dict(extra_attrs or {})
    if forecast.fallback_reason:
        attrs["fallback_reason"] = forecast.fallback_reason
    if forecast.frame:
        attrs["model_frame"] = forecast.frame
    netcdf = write_forecast(
        product_dir / NETCDF_NAME, forecast.dbz,
        reference_time=reference, lead_minutes=lead_minutes, grid=sequence.grid,
        model=forecast.model_name, model_version=forecast.model_version,
        checkpoint_sha256=forecast.checkpoint_sha256, source=forecast.source,
        input_times=sequence.times, extra_attrs=attrs,
    )
    products: dict[str, Any] = {"netcdf": str(netcdf), "png": {}, "gif": None, "obs_png": {}}
    if quicklooks:
        products["png"], products["gif"] = render_quicklooks(
            product_dir, forecast.dbz, sequence=sequence, reference_time=reference,
            lead_minutes=lead_minutes, source=forecast.source,
        )
        products["obs_png"] = render_observed(product_dir, sequence, count=observed_scans)
    return products
