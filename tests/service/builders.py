"""Builders of real CF netCDF inputs (good and broken) and of finished jobs, for the API tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import xarray as xr

from model.io import netcdf as radar_io
from workers import jobs

START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def scan_times(count: int, *, step_minutes: int = 6, start: dt.datetime = START) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=step_minutes * i) for i in range(count)]


def echo_field(count: int, height: int = 16, width: int = 20, *, seed: int = 0) -> np.ndarray:
    """(T, H, W) dBZ: a blob drifting east over a 5 dBZ background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        blob = 45.0 * np.exp(-(((yy - height / 2) ** 2) + (xx - 3 - t) ** 2) / 8.0)
        frames.append(5.0 + blob + rng.normal(0, 0.5, size=(height, width)))
    return np.asarray(frames, dtype=np.float32)


TRANSVERSE_MERCATOR = {"grid_mapping_name": "transverse_mercator", "scale_factor_at_central_meridian": 0.9996}


def write_sequence(directory: Path, count: int = 10, height: int = 16, width: int = 20, *, seed: int = 0,
                   times: list[dt.datetime] | None = None,
                   grid_mapping: dict | None = TRANSVERSE_MERCATOR) -> list[Path]:
    """One CF scan file per time (``scan_YYYYmmddTHHMMZ.nc``), written by the project's writer."""
    dbz = echo_field(count, height, width, seed=seed)
    return radar_io.write_scans(
        directory, dbz, times or scan_times(count),
        x=np.arange(width) * 1000.0, y=np.arange(height) * 1000.0, grid_mapping=grid_mapping,
    )


def write_single_file(path: Path, count: int = 10, height: int = 16, width: int = 20, *, seed: int = 0,
                      variable: str = "reflectivity", units: str = "dBZ",
                      values: np.ndarray | None = None, times: list[dt.datetime] | None = None) -> Path:
    """One file with a time dimension (and optionally another variable name, units or values)."""
    data = echo_field(count, height, width, seed=seed) if values is None else values.astype(np.float32)
    stamps = np.array([np.datetime64(t.replace(tzinfo=None), "s") for t in (times or scan_times(count))])
    ds = xr.Dataset(
        {variable: (("time", "y", "x"), data, {"units": units})},
        coords={"time": stamps, "y": np.arange(height) * 1000.0, "x": np.arange(width) * 1000.0},
    )
    ds.to_netcdf(path, engine="netcdf4")
    return path


OBSERVED_TAG = 100  # observed PNGs encode 100 + minutes before the reference time


def finish_job(store, *, job_id: str, product_dir: Path, lead_steps: int = 3, step_minutes: int = 6,
               height: int = 16, width: int = 20, source: str = "predrnn", observed_scans: int = 3) -> np.ndarray:
    """Write a real product (netCDF, PNG per lead, PNG per observed scan) and mark the job successful,
    as a worker would. Reference time 12:54Z; observed PNGs ``obs_000``, ``obs_006``, ... encode
    ``OBSERVED_TAG`` + minutes before it."""
    forecast = echo_field(lead_steps, height, width, seed=7)
    forecast[0, 0, 0] = np.nan  # a no-data cell must come back as null in JSON
    leads = [step_minutes * (k + 1) for k in range(lead_steps)]
    grid = radar_io.grid_from_xy(np.arange(width) * 1000.0, np.arange(height) * 1000.0)
    netcdf = radar_io.write_forecast(
        product_dir / "forecast.nc", forecast, reference_time=np.datetime64("2026-01-01T12:54:00"),
        lead_minutes=leads, grid=grid, model="PredRNN-v2", model_version="test", checkpoint_sha256="test",
        source=source, input_times=np.array(["2026-01-01T12:54:00"], dtype="datetime64[s]"),
    )
    png = {}
    for lead in leads:
        path = product_dir / f"lead_{lead:03d}.png"
        path.write_bytes(png_bytes(lead))
        png[str(lead)] = str(path)
    observed = {}
    for k in range(observed_scans):
        path = product_dir / f"obs_{k * step_minutes:03d}.png"
        path.write_bytes(png_bytes(OBSERVED_TAG + k * step_minutes))
        observed[str(k * step_minutes)] = str(path)
    jobs.update_job(store, job_id=job_id, status="successful", progress=100, message="done", source=source,
                    finished=jobs.utc_now_iso(), products={"netcdf": str(netcdf), "png": png, "obs_png": observed},
                    reference_time="2026-01-01T12:54:00Z", model="PredRNN-v2", timestep_minutes=step_minutes)
    return forecast


def png_bytes(tag: int) -> bytes:
    """A real, tiny PNG whose single pixel encodes ``tag`` (so tests can tell lead times apart)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (1, 1), color=tag % 256).save(buffer, format="PNG")
    return buffer.getvalue()
