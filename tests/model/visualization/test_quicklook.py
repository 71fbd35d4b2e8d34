"""The quicklook layout: axis orientation, the class lookup table against matplotlib, the map's pixels."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb

from model.io.netcdf import Grid
from model.visualization.palette import reflectivity_colormap
from model.visualization.quicklook import QuicklookLayout, map_extent

SIDE = 40  # cells; 1 km apart


def grid(north_first: bool) -> Grid:
    """A 40 x 40 km projected grid centred on 0, rows ordered north to south or south to north."""
    y = 1000.0 * (np.arange(SIDE) - SIDE / 2 + 0.5)
    return Grid("y", "x", (SIDE, SIDE), y=y[::-1].copy() if north_first else y, x=1000.0 * np.arange(SIDE))


def test_the_y_axis_reads_north_at_the_top_whatever_the_row_order() -> None:
    for north_first in (True, False):
        extent, unit = map_extent(grid(north_first))
        assert unit == "km" and extent[:2] == [-0.5, SIDE - 0.5]
        # [left, right, bottom, top]: the top of the picture is the northern edge, +20 km.
        assert extent[2:] == [-SIDE / 2, SIDE / 2], north_first


def test_the_northern_row_is_drawn_at_the_top() -> None:
    for north_first in (True, False):
        layout = QuicklookLayout(grid(north_first))
        field = np.zeros((SIDE, SIDE), dtype=np.float32)
        field[0 if north_first else -1] = 50.0  # the northernmost row echoes
        picture = np.asarray(layout.frame(field, "t").convert("RGB"))
        top, bottom, left, right = layout.box
        echo_rows = np.flatnonzero(np.all(picture[top:bottom, left:right] == (253, 0, 0), axis=-1).any(axis=1))
        assert echo_rows.size > 0 and echo_rows.max() < (bottom - top) / SIDE + 1, north_first


def test_the_lookup_table_gives_matplotlibs_colours() -> None:
    """Every class edge, below 5 dBZ, above 75 dBZ and NaN, as the BoundaryNorm colour map draws them."""
    layout = QuicklookLayout(grid(False))
    values = np.array([-40.0, 0.0, 4.99, 5.0, 7.5, 9.99, 10.0, 34.9, 35.0, 70.0, 74.99, 75.0, 90.0, np.nan])
    field = np.repeat(values, SIDE * SIDE // values.size + 1)[: SIDE * SIDE].reshape(SIDE, SIDE)
    palette = np.asarray(layout.palette, dtype=np.uint8).reshape(-1, 3)
    sampled = field[np.ix_(layout.rows, layout.cols)]
    drawn = palette[layout.classify(field)]
    cmap, norm = reflectivity_colormap()
    expected = np.round(np.asarray([to_rgb(c) for c in cmap(norm(np.ma.masked_invalid(sampled.ravel())))])
                        * 255).astype(np.uint8).reshape(drawn.shape)
    assert np.array_equal(drawn, expected)


def test_a_frame_changes_the_map_and_the_title_only() -> None:
    layout = QuicklookLayout(grid(False))
    calm = np.asarray(layout.frame(np.zeros((SIDE, SIDE), np.float32), "first"))
    stormy = np.asarray(layout.frame(np.full((SIDE, SIDE), 32.0, np.float32), "second"))
    top, bottom, left, right = layout.box
    changed = calm != stormy
    changed[top:bottom, left:right] = False
    changed[: layout.title_rows] = False
    assert not changed.any()  # axes, labels and the colour bar are the same pixels
    palette = np.asarray(layout.palette, dtype=np.uint8).reshape(-1, 3)
    assert np.all(palette[stormy[top:bottom, left:right]] == (0, 142, 0))  # 30-35 dBZ everywhere on the map
    assert (calm[: layout.title_rows] != stormy[: layout.title_rows]).any()
