"""The colour-blind-safe palette keeps neighbouring classes apart under deuteranopia.

Colours are simulated for a deuteranope with the matrix of Machado, Oliveira and Fernandes (2009,
severity 1.0) on linear sRGB, and compared with CIEDE2000 (scikit-image). The NWS palette, the
quicklooks' and the page's default, is checked too, to keep on record why the option exists: its
40/45 and 55/60 dBZ classes, where warnings start, are nearly the same colour to a deuteranope.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from service.routes.viewer import STATIC_DIR

MACHADO_DEUTERANOPIA = np.array([
    [0.367322, 0.860646, -0.227968],
    [0.280085, 0.672501, 0.047413],
    [-0.011820, 0.042940, 0.968881],
])
MINIMUM_DIFFERENCE = 10.0


def scale_colours(name: str) -> list[tuple[int, int, int]]:
    """The colours of one scale in scale.js, in class order."""
    text = (STATIC_DIR / "scale.js").read_text()
    body = re.search(rf"export const {name} = Object\.freeze\(\[(.*?)\]\);", text, re.DOTALL)
    assert body is not None, name
    hexes = re.findall(r'color: "#([0-9a-f]{6})"', body.group(1))
    return [tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)) for h in hexes]  # type: ignore[misc]


def deuteranope_lab(colours: list[tuple[int, int, int]]) -> np.ndarray:
    srgb = np.asarray(colours, dtype=np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(linear @ MACHADO_DEUTERANOPIA.T, 0.0, 1.0)
    back = np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)
    return rgb2lab(back[None, :, :])[0]


def neighbour_differences(name: str) -> list[float]:
    lab = deuteranope_lab(scale_colours(name))
    return [float(deltaE_ciede2000(lab[i], lab[i + 1])) for i in range(len(lab) - 1)]


def test_colour_blind_palette_separates_every_neighbouring_class() -> None:
    differences = neighbour_differences("COLOUR_BLIND_SCALE")
    assert len(differences) == 13  # 14 classes, 5 to 70 dBZ
    assert min(differences) > MINIMUM_DIFFERENCE, [round(d, 1) for d in differences]


@pytest.mark.parametrize(("lower_dbz", "upper_dbz"), [(40, 45), (55, 60)])
def test_nws_palette_merges_warning_classes_for_a_deuteranope(lower_dbz: int, upper_dbz: int) -> None:
    differences = neighbour_differences("REFLECTIVITY_SCALE")
    index = (lower_dbz - 5) // 5
    assert (upper_dbz - lower_dbz) == 5 and differences[index] < 7.0


def test_probability_scale_darkens_monotonically_for_everyone() -> None:
    """The 10 % classes of the probability layer: lightness falls class by class, also for a deuteranope,
    and neighbours stay apart (nine classes of one ramp: 7 CIEDE2000 at least, not the reflectivity
    palette's 10), so the order of the probabilities never depends on hue."""
    colours = scale_colours("PROBABILITY_SCALE")
    assert len(colours) == 9  # 10 % .. 90 %
    for lab in (rgb2lab((np.asarray(colours, dtype=np.float64) / 255.0)[None, :, :])[0], deuteranope_lab(colours)):
        assert np.all(np.diff(lab[:, 0]) < 0), np.round(lab[:, 0], 1)
    differences = neighbour_differences("PROBABILITY_SCALE")
    assert min(differences) > 7.0, [round(d, 1) for d in differences]
