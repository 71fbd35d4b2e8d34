"""The quicklook map of a radar field in dBZ: what the workers' PNGs and GIF frames show.

QuicklookFigure(sequence, first).render(field, title) -> (rows, cols, 4) uint8 RGBA
png_bytes(rgba) -> bytes

Rendering uses matplotlib's Agg canvas directly (no pyplot global state), so worker processes can
draw concurrently and leak no figures. Axes are in km (projected grids) or degrees (lat/lon).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from model.io.netcdf import RadarSequence
from model.visualization.palette import REFLECTIVITY_LEVELS, reflectivity_colormap


def map_extent(sequence: RadarSequence) -> tuple[list[float] | None, str]:
    """imshow extent in km (or degrees) from the 1-D axes, and the axis unit; None without axes."""
    x, y = sequence.grid.x, sequence.grid.y
    if x is None or y is None or x.size < 2 or y.size < 2:
        return None, "pixel"
    degrees = sequence.grid.x_name in ("lon", "longitude")
    scale = 1.0 if degrees else 1e-3
    dx, dy = (x[1] - x[0]) * scale / 2, (y[1] - y[0]) * scale / 2
    return [x[0] * scale - dx, x[-1] * scale + dx, y[0] * scale - dy, y[-1] * scale + dy], (
        "degrees" if degrees else "km")


class QuicklookFigure:
    """One Agg figure (map, colour bar, axis labels) reused for every frame of a job.

    Forecast and observed frames go through the same figure, so they share the colour scale,
    the legend and the layout; only the title and the data change from frame to frame.
    """

    def __init__(self, sequence: RadarSequence, first: np.ndarray) -> None:
        cmap, norm = reflectivity_colormap()
        extent, unit = map_extent(sequence)
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


def png_bytes(rgba: np.ndarray) -> bytes:
    """(rows, cols, 4) uint8 RGBA -> the bytes of an RGB PNG."""
    buffer = io.BytesIO()
    Image.fromarray(rgba).convert("RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
