"""The reflectivity palette: one colour per 5 dBZ class, shared by every radar picture and the viewer.

service/static/scale.js repeats REFLECTIVITY_LEVELS and REFLECTIVITY_COLOURS for the viewer's
legend (tests/viewer checks that they agree): change both together.
"""

from __future__ import annotations

from matplotlib.colors import BoundaryNorm, ListedColormap

# The widely used US NWS reflectivity palette: one colour per 5 dBZ from 5 to 75 dBZ; below 5 dBZ
# is left transparent-white so light noise does not paint the map.
REFLECTIVITY_LEVELS = list(range(5, 80, 5))  # dBZ bin edges
REFLECTIVITY_COLOURS = [
    "#04e9e7", "#019ff4", "#0300f4", "#02fd02", "#01c501", "#008e00", "#fdf802",
    "#e5bc00", "#fd9500", "#fd0000", "#d40000", "#bc0000", "#f800fd", "#9854c6",
]


def reflectivity_colormap() -> tuple[ListedColormap, BoundaryNorm]:
    """The palette as a colour map and the 5 dBZ class boundaries for ``imshow(cmap=..., norm=...)``."""
    # under 5 dBZ: no echo (white); over 75 dBZ: the top colour; no data: light grey.
    cmap = ListedColormap(REFLECTIVITY_COLOURS, name="nws_reflectivity").with_extremes(
        under="white", over=REFLECTIVITY_COLOURS[-1], bad="#d9d9d9")
    return cmap, BoundaryNorm(REFLECTIVITY_LEVELS, cmap.N)
