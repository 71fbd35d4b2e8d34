"""Builders for worker tests: a synthetic radar feed of moving blobs and a tiny random checkpoint."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from model.io import netcdf as radar_io

FEED_START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
GRID = (24, 32)  # (H, W): small, not square, not a multiple of the patch size


def blob_field(count: int, shape: tuple[int, int] = GRID, seed: int = 0) -> np.ndarray:
    """(count, H, W) dBZ: two Gaussian cells moving east and south-east over a -10 dBZ background."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    cells = [(h * 0.3, w * 0.2, 1.0, 0.0, 50.0, 3.0), (h * 0.6, w * 0.3, 0.5, 0.7, 40.0, 4.0)]
    frames = np.full((count, h, w), -10.0)
    for t in range(count):
        for y0, x0, vy, vx, peak, radius in cells:
            cy, cx = y0 + vy * t, x0 + vx * t + t  # both drift east by one pixel per scan
            bump = (peak + 10.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
            frames[t] = np.maximum(frames[t], -10.0 + bump)
    frames += rng.normal(0.0, 0.1, frames.shape)
    return frames.astype(np.float32)


def write_blob_feed(directory: Path, start: dt.datetime, count: int, shape: tuple[int, int] = GRID,
                    seed: int = 0) -> list[Path]:
    h, w = shape
    times = [start + dt.timedelta(minutes=6 * k) for k in range(count)]
    return radar_io.write_scans(directory, blob_field(count, shape, seed), times,
                                x=500_000.0 + 1000.0 * np.arange(w), y=5_000_000.0 + 1000.0 * np.arange(h),
                                grid_mapping={"grid_mapping_name": "transverse_mercator",
                                              "longitude_of_central_meridian": 9.0,
                                              "latitude_of_projection_origin": 0.0,
                                              "scale_factor_at_central_meridian": 0.9996,
                                              "false_easting": 500000.0, "false_northing": 0.0})


def write_tiny_checkpoint(path: Path, *, input_length: int = 4, output_length: int = 3, seed: int = 0) -> Path:
    """A random-weight PredRNN-V2 ([8, 8] hidden, patch 4, 3x3 filters) saved in our format."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(seed)
    config = PredRNNConfig(num_hidden=[8, 8], patch_size=4, filter_size=3, input_length=input_length,
                           output_length=output_length)
    save_checkpoint(path, PredRNN(config))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.pt")
