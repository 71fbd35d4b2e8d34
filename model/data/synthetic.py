"""Synthetic radar echoes: seedable storms in dBZ, a training source and ``nowcast synth``.

Interface
---------
storm = StormGenerator(np.random.default_rng(seed), height, width)
frame = storm.next_frame()             # (H, W) float32 dBZ, one 6-minute scan; call again for the next
frames = storm.frames(n)               # (n, H, W)
SyntheticRadar(seed=0, height=128, width=128, ...)   # sequence source (model/data/__init__.py)
nowcast synth --out DIR --scans N --grid 256x256 [--seed S] [--start ISO-TIME]

What a storm is made of (all lengths in pixels, all times in scan intervals):
- Stratiform rain: a multi-scale Gaussian field with a power-law spectrum, split into a large-
  scale band that evolves slowly and a small-scale band that evolves fast (each band rotates
  between two independent fields, so its variance is constant while its pattern changes).
  Stretched along a random direction for banded systems. Mapped to dBZ so that a drawn fraction
  (5-14 %) of each scan exceeds 20 dBZ before growth, decay and cells; echo under a drawn detection level is "no echo".
- Convective cells: elliptical Gaussian cores in Z (peaks 40-57 dBZ, radii 1-3 px) that are born
  (mostly inside rain areas), grow, and decay over 5-15 scans, moving with the flow.
- Motion: a smoothly varying flow of translation (1-6 px per scan), rotation and shear about the
  domain centre, with slow oscillations of speed and direction. Fields are advected without
  numerical diffusion: the generator tracks where each pixel's air was at the first scan and
  samples the (periodic, never interpolated twice) noise there.
- Growth and decay: a domain-wide intensity oscillation plus a fixed, very large-scale pattern
  (like orography) that strengthens echoes moving into it and weakens those leaving it.

No-echo pixels hold ``NO_ECHO_DBZ`` (-10 dBZ, the default scaling's floor); there is no NaN.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model

log = logging.getLogger(__name__)

NO_ECHO_DBZ = -10.0
MAX_DBZ = 60.0
TIMESTEP_MINUTES = 6
_SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


def power_law_noise(
    rng: np.random.Generator, shape: tuple[int, int], exponent: float, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two bands of one periodic Gaussian field with amplitude spectrum ``|k|^-exponent``.

    Parameters
    ----------
    shape : (rows, cols) of the periodic domain.
    exponent : amplitude slope (1.3-1.8 gives radar-like fields).
    cutoff : wavelength (pixels) separating the large-scale band from the small-scale band.

    Returns
    -------
    (large, small) : two (rows, cols) float32 fields on the same torus, independent because their
    frequency supports are disjoint; their variances add to 1.
    """
    ky = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    k = np.hypot(ky, kx)
    amplitude = np.zeros_like(k)
    amplitude[k > 0] = k[k > 0] ** -exponent
    # scipy.fft keeps float32 (numpy.fft would promote to float64 and take twice as long).
    spectrum = scipy.fft.rfft2(rng.standard_normal(shape, dtype=np.float32)) * amplitude
    low = k < 1.0 / cutoff
    large = scipy.fft.irfft2(np.where(low, spectrum, 0), s=shape)
    small = scipy.fft.irfft2(np.where(low, 0, spectrum), s=shape)
    scale = np.sqrt(large.var() + small.var())
    return (large / scale).astype(np.float32), (small / scale).astype(np.float32)


def bilinear(fields: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, wrap: bool) -> np.ndarray:
    """Sample (K, h, w) fields at fractional (rows, cols) of any shape S -> (K, *S).

    ``wrap``: the fields are periodic (a torus); otherwise coordinates are clamped to the edge.
    Faster than ``scipy.ndimage.map_coordinates`` here because the K fields share the weights.
    """
    k, h, w = fields.shape
    if not wrap:
        rows = np.clip(rows, 0, h - 1)
        cols = np.clip(cols, 0, w - 1)
    r0f, c0f = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0f).astype(np.float32), (cols - c0f).astype(np.float32)
    r0, c0 = r0f.astype(np.int64), c0f.astype(np.int64)
    if wrap:
        r0, c0 = r0 % h, c0 % w
        r1, c1 = (r0 + 1) % h, (c0 + 1) % w
    else:
        r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    flat = fields.reshape(k, h * w)
    out = (np.take(flat, r0 * w + c0, axis=1) * ((1 - fr) * (1 - fc))
           + np.take(flat, r0 * w + c1, axis=1) * ((1 - fr) * fc)
           + np.take(flat, r1 * w + c0, axis=1) * (fr * (1 - fc))
           + np.take(flat, r1 * w + c1, axis=1) * (fr * fc))
    return out.astype(np.float32)


@dataclass
class _Cell:
    row: float
    col: float
    born: int
    lifetime: int
    peak_dbz: float
    radius: float
    aspect: float
    angle: float


class StormGenerator:
    """One evolving storm on an (H, W) grid; each :meth:`next_frame` is the next scan in dBZ.

    Everything random is drawn from ``rng`` at construction and while stepping, so a generator
    built from the same seed yields the same scans.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        if height < 8 or width < 8:
            raise ValueError(f"grid must be at least 8 x 8, got {height} x {width}")
        self.rng = rng
        self.height, self.width = int(height), int(width)
        self.step = 0
        size = max(height, width)
        torus = (int(2 ** np.ceil(np.log2(2 * height))), int(2 ** np.ceil(np.log2(2 * width))))
        exponent = rng.uniform(1.3, 1.8)
        cutoff = size / rng.uniform(3.0, 6.0)
        self._bands = [power_law_noise(rng, torus, exponent, cutoff) for _ in range(2)]
        self._phase_rate = (rng.uniform(0.01, 0.03), rng.uniform(0.08, 0.2))  # rad per scan
        self._phase = rng.uniform(0, 2 * np.pi, 2)
        # Banded systems: stretch the noise along a random direction.
        stretch, theta = rng.uniform(1.0, 2.5), rng.uniform(0, np.pi)
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        self._anisotropy = rotation @ np.diag([1.0 / stretch, 1.0]) @ rotation.T
        self._origin = rng.uniform(0, 1, 2) * np.array(torus)

        # Flow (pixels per scan): translation with slow oscillation, rotation and shear.
        speed, heading = rng.uniform(1.0, 6.0), rng.uniform(0, 2 * np.pi)
        self._translation = speed * np.array([np.sin(heading), np.cos(heading)])  # (row, col)
        self._wobble = (rng.uniform(0.1, 0.3), rng.uniform(40, 160), rng.uniform(0, 2 * np.pi))
        self._rotation = rng.uniform(-0.006, 0.006)  # rad per scan
        self._shear = rng.uniform(-0.008, 0.008)  # d(col velocity)/d(row)

        # Intensity: stratiform mapping, detection level, growth/decay.
        self._slope = rng.uniform(7.0, 11.0)  # dB per standard deviation
        self._detection = rng.uniform(12.0, 17.0)  # dBZ: weaker echo is "no echo"
        self._envelope = [(rng.uniform(0.5, 2.0), rng.uniform(30, 200), rng.uniform(0, 2 * np.pi))
                          for _ in range(2)]
        forcing, _ = power_law_noise(rng, (height, width), 2.0, size)
        self._forcing = rng.uniform(2.0, 5.0) * forcing / max(float(forcing.std()), 1e-6)
        self._cell_rate = rng.uniform(0.05, 0.5) * (height * width) / 128**2  # new cells per scan
        self._embedded = rng.uniform(0.6, 0.95)  # share of cells born inside rain

        self._rows, self._cols = np.mgrid[0:height, 0:width].astype(np.float32)
        self._displacement = np.zeros((2, height, width), dtype=np.float32)  # back to scan 0
        # The stratiform field is recalibrated every scan so that, before growth, decay and cells,
        # this fraction of the domain exceeds 20 dBZ: scales near the domain size would otherwise
        # drift the whole domain into or out of rain over a long feed.
        self._rain_fraction = rng.uniform(0.05, 0.14)
        first = self._stratiform_index()
        self._offset = self._calibrate(first)
        self._cells: list[_Cell] = []
        for _ in range(rng.poisson(self._cell_rate * 8)):  # a population already under way
            self._spawn(first, age=int(rng.integers(0, 12)))

    # --------------------------------------------------------------------------- flow and fields

    def _velocity(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow at (rows, cols) at the current step: (row velocity, col velocity) in px per scan."""
        amplitude, period, phase = self._wobble
        wobble = 1.0 + amplitude * np.sin(2 * np.pi * self.step / period + phase)
        turn = 0.3 * amplitude * np.cos(2 * np.pi * self.step / period + phase)
        base_r = wobble * (self._translation[0] * np.cos(turn) - self._translation[1] * np.sin(turn))
        base_c = wobble * (self._translation[0] * np.sin(turn) + self._translation[1] * np.cos(turn))
        dr, dc = rows - self.height / 2.0, cols - self.width / 2.0
        v_row = base_r + self._rotation * dc
        v_col = base_c - self._rotation * dr + self._shear * dr
        return v_row, v_col

    def _stratiform_index(self) -> np.ndarray:
        """The multi-scale field (about unit variance) now, sampled in Lagrangian coordinates."""
        rows = self._rows + self._displacement[0]
        cols = self._cols + self._displacement[1]
        a = self._anisotropy
        (large_a, small_a), (large_b, small_b) = self._bands
        # The phases are scalars, so mix on the torus first and interpolate once.
        mixed = (np.cos(self._phase[0]) * large_a + np.sin(self._phase[0]) * large_b
                 + np.cos(self._phase[1]) * small_a + np.sin(self._phase[1]) * small_b)
        torus_rows = a[0, 0] * rows + a[0, 1] * cols + self._origin[0]
        torus_cols = a[1, 0] * rows + a[1, 1] * cols + self._origin[1]
        return bilinear(mixed[None], torus_rows, torus_cols, wrap=True)[0]

    def _calibrate(self, index: np.ndarray) -> float:
        """The index value exceeded by the target rain fraction (every 3rd pixel is plenty)."""
        shifted = index + self._forcing / self._slope
        return float(np.quantile(shifted[::3, ::3], 1.0 - self._rain_fraction))

    def _envelope_db(self) -> float:
        """Domain-wide growth (> 0) or decay (< 0) of intensity now, dB."""
        return float(sum(a * np.sin(2 * np.pi * self.step / p + f) for a, p, f in self._envelope))

    def _advance(self) -> None:
        """Move the Lagrangian map, the phases and the cells forward by one scan."""
        v_row, v_col = self._velocity(self._rows, self._cols)
        # Displacement is smooth: extending it at the inflow edge (clamping) is harmless.
        moved = bilinear(self._displacement, self._rows - v_row, self._cols - v_col, wrap=False)
        self._displacement = np.stack([moved[0] - v_row, moved[1] - v_col]).astype(np.float32)
        self._phase = self._phase + np.array(self._phase_rate)
        for cell in self._cells:
            dr, dc = self._velocity(np.array(cell.row), np.array(cell.col))
            cell.row, cell.col = cell.row + float(dr), cell.col + float(dc)
        self.step += 1

    def _spawn(self, index: np.ndarray, age: int = 0) -> None:
        rng = self.rng
        rain = np.flatnonzero(index.ravel() > self._offset - 0.5)
        if rain.size and rng.random() < self._embedded:
            row, col = divmod(int(rain[rng.integers(rain.size)]), self.width)
        else:
            row, col = rng.integers(0, self.height), rng.integers(0, self.width)
        self._cells.append(_Cell(
            row=float(row), col=float(col), born=self.step - age, lifetime=int(rng.integers(5, 16)),
            peak_dbz=rng.uniform(40.0, 57.0), radius=rng.uniform(1.0, 3.0), aspect=rng.uniform(1.0, 2.0),
            angle=rng.uniform(0, np.pi),
        ))

    def _draw_cells(self, dbz: np.ndarray, index: np.ndarray) -> None:
        for cell in self._cells:
            age = self.step - cell.born
            strength = np.sin(np.pi * (age + 0.5) / cell.lifetime)  # grows, then decays
            peak = 15.0 + (cell.peak_dbz - 15.0) * strength
            # Out to where the core falls under the detection level, so no square edges show.
            fall = np.sqrt(2.0 * max(peak - self._detection, 0.0) / (10.0 * np.log10(np.e)))
            reach = int(np.ceil(cell.radius * cell.aspect * fall)) + 1
            r0, r1 = max(int(cell.row) - reach, 0), min(int(cell.row) + reach + 1, self.height)
            c0, c1 = max(int(cell.col) - reach, 0), min(int(cell.col) + reach + 1, self.width)
            if r0 >= r1 or c0 >= c1:
                continue
            dr = self._rows[r0:r1, c0:c1] - cell.row
            dc = self._cols[r0:r1, c0:c1] - cell.col
            along = dr * np.cos(cell.angle) + dc * np.sin(cell.angle)
            across = -dr * np.sin(cell.angle) + dc * np.cos(cell.angle)
            distance2 = (along / cell.aspect) ** 2 + across**2
            # A Gaussian in Z is a parabola in dBZ: 10 log10(exp(-d^2 / 2 r^2)).
            core = peak - 10.0 * np.log10(np.e) * distance2 / (2 * cell.radius**2)
            # Texture that moves with the air: the stratiform index, a few dB.
            core += 2.5 * (index[r0:r1, c0:c1] - self._offset)
            np.maximum(dbz[r0:r1, c0:c1], core, out=dbz[r0:r1, c0:c1])

    # --------------------------------------------------------------------------------- frames

    def next_frame(self) -> np.ndarray:
        """The next scan: (H, W) float32 dBZ in [NO_ECHO_DBZ, MAX_DBZ]."""
        index = self._stratiform_index()
        self._offset = self._calibrate(index)
        dbz = 20.0 + self._slope * (index - self._offset) + self._envelope_db() + self._forcing
        self._cells = [c for c in self._cells if self.step - c.born < c.lifetime
                       and -20 < c.row < self.height + 20 and -20 < c.col < self.width + 20]
        self._draw_cells(dbz, index)
        dbz = np.where(dbz < self._detection, NO_ECHO_DBZ, np.minimum(dbz, MAX_DBZ)).astype(np.float32)
        for _ in range(self.rng.poisson(self._cell_rate)):
            self._spawn(index)
        self._advance()
        return dbz

    def frames(self, count: int) -> np.ndarray:
        """The next ``count`` scans, (count, H, W) float32 dBZ."""
        return np.stack([self.next_frame() for _ in range(count)])


def storm_frames(entropy: list[int], count: int, height: int, width: int) -> np.ndarray:
    """``count`` scans of the storm seeded by ``entropy`` (a list of ints), (count, H, W) dBZ."""
    return StormGenerator(np.random.default_rng(entropy), height, width).frames(count)


class SyntheticRadar:
    """Synthetic storms as a sequence source: (B, T, 1, H, W) float32 in [0, 1] (model scaling).

    Every sequence is a new storm: training storm (iteration, j) and evaluation storm (split, i)
    come from distinct seeds, so no storm is shared between train, valid and test.
    """

    channels = 1
    timestep_minutes = TIMESTEP_MINUTES

    def __init__(
        self,
        *,
        seed: int = 0,
        height: int = 128,
        width: int = 128,
        input_length: int = 10,
        output_length: int = 10,
        valid_sequences: int = 100,
        test_sequences: int = 300,
        scaling: Scaling = DEFAULT_SCALING,
    ) -> None:
        if input_length < 1 or output_length < 1:
            raise ValueError("input_length and output_length must be at least 1")
        self.seed = int(seed)
        self.height, self.width = int(height), int(width)
        self.input_length = int(input_length)
        self.total_length = int(input_length + output_length)
        self.split_sizes = {"valid": int(valid_sequences), "test": int(test_sequences)}
        self.scaling: Scaling = dict(scaling)  # type: ignore[assignment]

    def sequence_dbz(self, split: str, *key: int) -> np.ndarray:
        """One storm's scans in dBZ, (T, H, W)."""
        return storm_frames([self.seed, _SPLIT_CODES[split], *key], self.total_length, self.height, self.width)

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        """(B, T, 1, H, W): storms (seed, iteration, 0..B-1), generated on the fly."""
        dbz = np.stack([self.sequence_dbz("train", int(iteration), j) for j in range(batch_size)])
        return dbz_to_model(dbz, self.scaling)[:, :, None]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        """Every storm of ``split`` ("valid" | "test"), in order; no batch dropped."""
        if split not in self.split_sizes:
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        total = self.split_sizes[split]
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            dbz = np.stack([self.sequence_dbz(split, i) for i in range(start, stop)])
            yield dbz_to_model(dbz, self.scaling)[:, :, None]


# ----------------------------------------------------------------------------------- the CLI

# A fictional radar site: azimuthal equidistant projection around it, metres.
SITE_GRID_MAPPING = {
    "grid_mapping_name": "azimuthal_equidistant",
    "latitude_of_projection_origin": 47.0,
    "longitude_of_projection_origin": 8.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
}


def parse_grid(text: str) -> tuple[int, int]:
    """``"256x256"`` -> (256, 256) as (H, W)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"grid must look like 256x256 (H x W), got {text!r}")
    height, width = int(match.group(1)), int(match.group(2))
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise ValueError(f"grid sides must be within 8..4096 pixels, got {height}x{width}")
    return height, width


def parse_start(text: str | None, scans: int, now: dt.datetime | None = None) -> dt.datetime:
    """The first scan time (UTC). Default: the feed ends at the latest 6-minute slot before now."""
    if text is None:
        now = now or dt.datetime.now(dt.UTC)
        slot = now.replace(second=0, microsecond=0, minute=now.minute - now.minute % TIMESTEP_MINUTES)
        return slot - dt.timedelta(minutes=TIMESTEP_MINUTES * (scans - 1))
    try:
        start = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--start must be an ISO-8601 time such as 2024-06-01T12:00Z, got {text!r}") from exc
    return start.replace(tzinfo=dt.UTC) if start.tzinfo is None else start.astimezone(dt.UTC)


def write_feed(
    out: Path, scans: int, height: int, width: int, *, seed: int, start: dt.datetime,
    pixel_metres: float = 1000.0, chunk: int = 50,
) -> list[Path]:
    """Write ``scans`` consecutive scans of one storm as CF files (``model.io.netcdf.write_scans``)."""
    from model.io.netcdf import write_scans

    storm = StormGenerator(np.random.default_rng(seed), height, width)
    x = (np.arange(width) - (width - 1) / 2.0) * pixel_metres
    y = ((height - 1) / 2.0 - np.arange(height)) * pixel_metres  # row 0 is the north edge
    written: list[Path] = []
    for first in range(0, scans, chunk):
        count = min(chunk, scans - first)
        times = [start + dt.timedelta(minutes=TIMESTEP_MINUTES * (first + k)) for k in range(count)]
        written += write_scans(out, storm.frames(count), times, x=x, y=y, grid_mapping=SITE_GRID_MAPPING)
    return written
