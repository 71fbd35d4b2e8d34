"""The quicklook map of a radar field in dBZ: what the workers' PNGs and GIF frames show.

quicklook_layout(grid) -> QuicklookLayout          cached per grid (shape, extent, orientation)
QuicklookLayout.frame(field (H, W) dBZ, title) -> PIL "P" image (palette-indexed, 448 x 384 pixels)
png_bytes(image) -> bytes

matplotlib draws the axes, the axis labels and the colour bar once per grid (the layout); every
frame is then painted into a copy of that picture as palette indices: the field is sampled to the
map's pixels (nearest neighbour) and classified by a lookup table into the 5 dBZ classes, and the
title is a Pillow text mask. A frame costs a few milliseconds instead of a whole matplotlib draw,
and the PNGs and the GIF share one 256-colour palette. Axes are in km (projected grids) or degrees
(lat/lon).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from model.io.netcdf import Grid, RadarSequence
from model.visualization.palette import REFLECTIVITY_LEVELS, reflectivity_colormap

FIGSIZE_INCHES = (5.6, 4.8)
DPI = 80  # 448 x 384 pixels
TITLE_POINTS = 10
TITLE_PAD_PIXELS = 7  # matplotlib's default title pad (6 pt) at 80 dpi

# Palette layout of every frame: the reflectivity classes first, then a grey ramp for the title's
# anti-aliased text, then the (at most) remaining colours of the layout picture.
CLASS_COUNT = len(REFLECTIVITY_LEVELS) - 1  # 14 classes of 5 dBZ, indices 0 .. 13
NO_ECHO_INDEX = CLASS_COUNT  # below 5 dBZ: white
NO_DATA_INDEX = CLASS_COUNT + 1  # NaN: light grey
TEXT_RAMP_START = CLASS_COUNT + 2  # 16 greys from white (no ink) to black (full ink)
TEXT_LEVELS = 16
LAYOUT_START = TEXT_RAMP_START + TEXT_LEVELS
LAYOUT_COLOURS = 256 - LAYOUT_START
_SENTINEL = (255, 0, 255)  # marks the map's pixels in the layout; not a palette colour


def map_extent(sequence: RadarSequence | Grid) -> tuple[list[float] | None, str]:
    """Map edges ``[left, right, south, north]`` in km (or degrees) and the axis unit; None without axes.

    ``south < north`` whatever the row order: rows run north to south in a grid with descending y,
    and the picture puts the first row at the top then (``origin="upper"``), so the top of the y axis
    must read the northern edge.
    """
    grid = sequence.grid if isinstance(sequence, RadarSequence) else sequence
    x, y = grid.x, grid.y
    if x is None or y is None or x.size < 2 or y.size < 2:
        return None, "pixel"
    degrees = grid.x_name in ("lon", "longitude")
    scale = 1.0 if degrees else 1e-3
    dx, dy = (x[1] - x[0]) * scale / 2, (y[1] - y[0]) * scale / 2
    first_edge, last_edge = y[0] * scale - dy, y[-1] * scale + dy
    return [x[0] * scale - dx, x[-1] * scale + dx, min(first_edge, last_edge), max(first_edge, last_edge)], (
        "degrees" if degrees else "km")


def north_at_top(grid: Grid) -> bool:
    """True when row 0 is the northern edge (descending y); without axes, row 0 is drawn at the top."""
    y = grid.y
    return y is None or y.size < 2 or bool(y[1] < y[0])


def _palette_rgb() -> np.ndarray:
    """(LAYOUT_START, 3) uint8: the class colours, no echo, no data, then the title's grey ramp."""
    cmap, _ = reflectivity_colormap()
    classes = [to_rgb(cmap(k)) for k in range(CLASS_COUNT)]
    fixed = classes + [to_rgb(cmap.get_under()), to_rgb(cmap.get_bad())]
    ramp = [(1 - k / (TEXT_LEVELS - 1),) * 3 for k in range(TEXT_LEVELS)]
    return np.round(np.asarray(fixed + ramp) * 255).astype(np.uint8)


class QuicklookLayout:
    """The picture around the map (axes, labels, colour bar) as palette indices, and the map's box.

    Parameters
    ----------
    grid : Grid
        The radar grid, (H, W) cells; its 1-D axes give the tick labels.
    """

    def __init__(self, grid: Grid) -> None:
        self.shape = grid.shape
        self.north_at_top = north_at_top(grid)
        rgb, self.box = _draw_layout(grid)
        self.indices, self.palette = _index_layout(rgb)
        top, bottom, left, right = self.box
        # Nearest-neighbour sampling of the grid onto the map's pixels; the rows flip when row 0 is
        # the southern edge, because the picture's row 0 is its top.
        height, width = self.shape
        self.rows = ((np.arange(bottom - top) + 0.5) * height / (bottom - top)).astype(np.intp)
        self.cols = ((np.arange(right - left) + 0.5) * width / (right - left)).astype(np.intp)
        if not self.north_at_top:
            self.rows = self.rows[::-1].copy()
        self.title_rows = max(top - 2, 1)  # the band above the map, where the title goes
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
        self.font = ImageFont.truetype(path, round(TITLE_POINTS * DPI / 72))

    def classify(self, field: np.ndarray) -> np.ndarray:
        """(H, W) dBZ -> (map rows, map cols) uint8 palette indices of the map's pixels."""
        sampled = field[np.ix_(self.rows, self.cols)]
        with np.errstate(invalid="ignore"):
            # BoundaryNorm's classes: [5, 10) -> 0, ..., [70, 75) -> 13, >= 75 -> 13 (extend "max").
            classes = np.floor((sampled - REFLECTIVITY_LEVELS[0]) / 5.0)
            indices = np.clip(classes, -1, CLASS_COUNT - 1)
        indices = np.where(indices < 0, NO_ECHO_INDEX, indices)
        return np.where(np.isnan(sampled), NO_DATA_INDEX, indices).astype(np.uint8)

    def frame(self, field: np.ndarray, title: str) -> Image.Image:
        """(H, W) dBZ and a (multi-line) title -> the quicklook as a palette-indexed ("P") image."""
        if field.shape != self.shape:
            raise ValueError(f"field must be {self.shape}, got {field.shape}")
        indices = self.indices.copy()
        top, bottom, left, right = self.box
        indices[top:bottom, left:right] = self.classify(field)
        band = indices[: self.title_rows]
        mask = self._title_mask(title)
        ink = mask > 0
        band[ink] = TEXT_RAMP_START + (mask[ink].astype(np.uint16) * (TEXT_LEVELS - 1) + 127) // 255
        image = Image.fromarray(indices, mode="P")
        image.putpalette(self.palette)
        return image

    def _title_mask(self, title: str) -> np.ndarray:
        """(title rows, picture cols) uint8 ink coverage of the title, centred over the map."""
        height, width = self.title_rows, self.indices.shape[1]
        mask = Image.new("L", (width, height), 0)
        left, right = self.box[2:]
        ImageDraw.Draw(mask).multiline_text(((left + right) / 2, height + 2 - TITLE_PAD_PIXELS), title, fill=255,
                                            font=self.font, anchor="md", align="center", spacing=2)
        return np.asarray(mask)


def _draw_layout(grid: Grid) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """matplotlib's picture with the map filled by the sentinel colour, and the map's pixel box.

    Returns (rows, cols, 3) uint8 RGB and (top, bottom, left, right), half-open, in pixels.
    """
    cmap, norm = reflectivity_colormap()
    extent, unit = map_extent(grid)
    figure = Figure(figsize=FIGSIZE_INCHES, dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(np.zeros(grid.shape), cmap=ListedColormap([np.asarray(_SENTINEL) / 255]), extent=extent,
                        origin="upper" if north_at_top(grid) else "lower", interpolation="nearest")
    colour_scale = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, extend="max",
                                   ticks=REFLECTIVITY_LEVELS[::2])
    colour_scale.set_label("reflectivity (dBZ)")
    axes.set_xlabel(f"x ({unit})")
    axes.set_ylabel(f"y ({unit})")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    is_map = np.all(rgb == np.asarray(_SENTINEL, dtype=np.uint8), axis=-1)
    rows, cols = np.flatnonzero(is_map.any(axis=1)), np.flatnonzero(is_map.any(axis=0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    rgb[is_map] = 255  # painted over by every frame; keeps the sentinel out of the palette
    return rgb, box


def _index_layout(rgb: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(rows, cols, 3) RGB -> (rows, cols) uint8 indices from LAYOUT_START on, and the 768-entry palette.

    The layout's anti-aliased text and lines hold a few hundred colours at most; beyond the free
    palette entries they are reduced once with Pillow's quantizer (the layout is drawn once per grid).
    """
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    if colours.size > LAYOUT_COLOURS:
        reduced = Image.fromarray(rgb).quantize(colors=LAYOUT_COLOURS, method=Image.Quantize.MEDIANCUT)
        layout_palette = np.asarray(reduced.getpalette()[: 3 * LAYOUT_COLOURS], dtype=np.uint8).reshape(-1, 3)
        indices = np.asarray(reduced, dtype=np.uint8) + LAYOUT_START
    else:
        layout_palette = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1)
        indices = (inverse.reshape(rgb.shape[:2]) + LAYOUT_START).astype(np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:LAYOUT_START] = _palette_rgb()
    palette[LAYOUT_START:LAYOUT_START + len(layout_palette)] = layout_palette
    return indices, palette.reshape(-1).tolist()


_LAYOUTS: dict[tuple, QuicklookLayout] = {}
LAYOUT_CACHE_SIZE = 8  # grids a worker keeps layouts for (one feed normally has one grid)


def quicklook_layout(grid: Grid | RadarSequence) -> QuicklookLayout:
    """The layout for ``grid``, drawn on first use and reused by every later job on the same grid."""
    grid = grid.grid if isinstance(grid, RadarSequence) else grid
    extent, unit = map_extent(grid)
    key = (grid.shape, None if extent is None else tuple(round(float(v), 6) for v in extent), unit,
           north_at_top(grid))
    if key not in _LAYOUTS:
        if len(_LAYOUTS) >= LAYOUT_CACHE_SIZE:
            _LAYOUTS.clear()
        _LAYOUTS[key] = QuicklookLayout(grid)
    return _LAYOUTS[key]


def png_bytes(image: Image.Image) -> bytes:
    """A palette-indexed quicklook -> the bytes of an indexed PNG.

    zlib level 1: about 1 ms and 16 kB a 448 x 384 frame, against 3 ms and 12 kB at Pillow's default
    level 6 and 21 ms and 11 kB at 9 (measured on the 2-core EPYC of docs/results.md).
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
