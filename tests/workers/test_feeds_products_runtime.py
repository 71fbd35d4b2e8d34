"""Feed discovery, product writing and the model runtime, in process (no Celery involved)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from model.forecast import forecast_dbz
from model.io import netcdf as radar_io
from model.visualization.palette import reflectivity_colormap
from tests.workers.conftest import FEED_START, GRID, blob_field, write_blob_feed, write_tiny_checkpoint
from workers import runtime
from workers.feeds import FeedNotReady, FeedSkip, list_scans, select_sequence
from workers.products import remove_partial_files, write_products
from workers.settings import WorkerSettings

UTC = dt.UTC


def at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2026, 3, 1, hour, minute, tzinfo=UTC)


def select(feed: Path, slot: dt.datetime, scans: int = 4):
    return select_sequence(feed, slot=slot, input_scans=scans, timestep_minutes=6, stale_after_minutes=30)


def test_newest_complete_sequence_ending_at_the_slot(tmp_path: Path) -> None:
    paths = write_blob_feed(tmp_path, FEED_START, 6)  # 12:00 .. 12:30
    (tmp_path / ".scan_20260301T1236Z.nc.abc.tmp").write_bytes(b"being copied in")
    (tmp_path / "notes.txt").write_text("ignored")
    assert sorted(list_scans(tmp_path)) == [at(12, 6 * k) for k in range(6)]
    selection = select(tmp_path, at(12, 30))
    assert selection.paths == paths[2:] and selection.times == [at(12, 12), at(12, 18), at(12, 24), at(12, 30)]
    assert select(tmp_path, at(12, 24)).paths == paths[1:5]  # an earlier slot: its own scans, not newer ones


def test_stale_late_incomplete_and_missing_feeds(tmp_path: Path) -> None:
    paths = write_blob_feed(tmp_path, FEED_START, 6)
    with pytest.raises(FeedNotReady, match="scan for 2026-03-01T12:36Z not in"):
        select(tmp_path, at(12, 36))  # 6 min late: probably on its way
    with pytest.raises(FeedSkip, match="feed stale: newest scan 2026-03-01T12:30Z is 36 min older"):
        select(tmp_path, at(13, 6))
    with pytest.raises(FeedSkip, match="no scans at or before 2026-03-01T11:54Z"):
        select(tmp_path, at(11, 54))
    with pytest.raises(FeedSkip, match=r"incomplete feed: 2 of the 4 scans ending 2026-03-01T12:06Z missing "
                                       r"\(2026-03-01T11:48Z, 2026-03-01T11:54Z\)"):
        select(tmp_path, at(12, 6), scans=4)
    paths[3].unlink()
    with pytest.raises(FeedSkip, match=r"missing \(2026-03-01T12:18Z\)"):
        select(tmp_path, at(12, 30))
    with pytest.raises(FeedSkip, match="does not exist"):
        select(tmp_path / "absent", at(12, 30))


def test_products_netcdf_pngs_gif_and_colour_scale(tmp_path: Path) -> None:
    sequence = radar_io.read_scans(write_blob_feed(tmp_path / "feed", FEED_START, 4))
    forecast = runtime.Forecast(blob_field(6)[4:], "predrnn", "PredRNN-v2", "abc", "abc", None, {})
    product_dir = tmp_path / "products" / "job"
    product_dir.mkdir(parents=True)
    (product_dir / ".forecast.nc.x1.tmp").write_bytes(b"partial")  # left by a killed attempt
    assert [p.name for p in remove_partial_files(product_dir)] == [".forecast.nc.x1.tmp"]
    products = write_products(product_dir, forecast, sequence, lead_minutes=[6.0, 12.0], observed_scans=3,
                              extra_attrs={"job_id": "job"})
    assert products == {"netcdf": str(product_dir / "forecast.nc"), "observed": str(product_dir / "observed.nc"),
                        "png": {"6": str(product_dir / "lead_006.png"), "12": str(product_dir / "lead_012.png")},
                        "gif": str(product_dir / "animation.gif"),
                        "obs_png": {str(m): str(product_dir / f"obs_{m:03d}.png") for m in (0, 6, 12)}}
    assert sorted(p.name for p in product_dir.iterdir()) == ["animation.gif", "forecast.nc", "lead_006.png",
                                                             "lead_012.png", "obs_000.png", "obs_006.png",
                                                             "obs_012.png", "observed.nc"]
    # The observed scans as data: the last three, on their own times, lead 0 the newest.
    with xr.open_dataset(products["observed"], engine="netcdf4") as ds:
        assert ds["lead_time"].values.tolist() == [-12, -6, 0] and ds["crs"].attrs == sequence.grid.grid_mapping
        np.testing.assert_array_equal(ds["reflectivity"].values, sequence.dbz[-3:])
    with xr.open_dataset(products["netcdf"], engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds["reflectivity"].values, forecast.dbz)
        assert ds.attrs["job_id"] == "job" and "fallback_reason" not in ds.attrs
    with Image.open(products["png"]["12"]) as indexed:
        assert indexed.size == (448, 384) and indexed.mode == "P"  # palette-indexed, one palette for all
        png = indexed.convert("RGB")
        # The strongest cell (about 50 dBZ) is drawn in the 45-50 or 50-55 dBZ colour.
        colours = {tuple(c[1]) for c in png.getcolors(maxcolors=100000)}
        assert (253, 149, 0) in colours or (253, 0, 0) in colours
    # Loops forever: the NETSCAPE2.0 application block with a loop count of 0, read from the file
    # itself rather than from Pillow's per-frame info, which seeking through the frames may reset.
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in Path(products["gif"]).read_bytes()
    with Image.open(products["gif"]) as gif, Image.open(products["png"]["6"]) as first_png:
        assert gif.n_frames == 2
        # The GIF's frames are the PNGs' pictures, colour for colour.
        assert np.array_equal(np.asarray(gif.convert("RGB")), np.asarray(first_png.convert("RGB")))
    # Observed scans: the same figure and colour scale as the forecast frames, one per input scan.
    # The 50 dBZ cell of the last scan (12:18) falls in the 45-50 or 50-55 dBZ colour too.
    with Image.open(products["obs_png"]["0"]) as latest_png, Image.open(products["png"]["6"]) as forecast_indexed:
        latest, forecast_png = latest_png.convert("RGB"), forecast_indexed.convert("RGB")
        assert latest.size == forecast_png.size and latest_png.mode == "P"
        colours = {tuple(c[1]) for c in latest.getcolors(maxcolors=100000)}
        assert (253, 149, 0) in colours or (253, 0, 0) in colours
        # The colour bar (the right 108 columns) and the axes are pixel for pixel the forecast's; the
        # title (rows 55-88) says "observed scan".
        colour_bar, title = (340, 0, 448, 384), (0, 55, 448, 88)
        assert latest.crop(colour_bar).tobytes() == forecast_png.crop(colour_bar).tobytes()
        assert latest.crop(title).tobytes() != forecast_png.crop(title).tobytes()
        below_map = (0, 300, 340, 384)  # the x axis labels
        assert latest.crop(below_map).tobytes() == forecast_png.crop(below_map).tobytes()
    assert [Image.open(products["obs_png"][m]).tobytes() != Image.open(products["obs_png"]["0"]).tobytes()
            for m in ("6", "12")] == [True, True]  # the cells moved between scans
    assert list(write_products(tmp_path / "p3", forecast, sequence, lead_minutes=[6.0, 12.0])["obs_png"]) == [
        "18", "12", "6", "0"]  # 4 scans, fewer than the default of 6: all of them
    cmap, norm = reflectivity_colormap()
    assert cmap.N == 14 and list(norm.boundaries) == list(range(5, 80, 5))
    without = write_products(tmp_path / "p2", forecast, sequence, lead_minutes=[6.0, 12.0], quicklooks=False)
    assert without["png"] == {} and without["gif"] is None and without["obs_png"] == {}
    assert sorted(p.name for p in (tmp_path / "p2").iterdir()) == ["forecast.nc", "observed.nc"]


def test_runtime_caches_the_model_per_process_and_matches_a_direct_forecast(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt")
    settings = WorkerSettings(data_dir=tmp_path, checkpoint=checkpoint, device="cpu", precision="fp32")
    loaded = runtime.get_model(settings)
    assert runtime.get_model(settings) is loaded  # cached
    assert loaded.device.type == "cpu" and loaded.precision == "fp32"
    assert loaded.checkpoint_sha256 == radar_io.file_sha256(checkpoint)
    context = blob_field(4)
    result = runtime.run_forecast(settings, context, 3)
    assert result.source == "predrnn" and result.fallback_reason is None and result.dbz.shape == (3, *GRID)
    expected = forecast_dbz(loaded.model, context, 3, scaling=loaded.meta["scaling"])
    np.testing.assert_array_equal(result.dbz, expected)
    # A new checkpoint file at the same path is picked up (its sha256 changed).
    write_tiny_checkpoint(checkpoint, seed=1)
    assert runtime.get_model(settings) is not loaded


def test_the_shipped_model_runs_in_the_worker_as_the_model_not_the_fallback(tmp_path: Path) -> None:
    # The default checkpoint takes a trend channel beside the scans: the worker's warm-up and its
    # forecasts must give it, or every job would quietly become extrapolation.
    from workers.settings import SHIPPED_CHECKPOINT

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    settings = WorkerSettings(data_dir=tmp_path, checkpoint=SHIPPED_CHECKPOINT, device="cpu", precision="fp32",
                              warmup=True)
    loaded = runtime.get_model(settings)
    assert loaded.model.config.trend_input
    context = blob_field(6)
    result = runtime.run_forecast(settings, context, 3)
    assert result.source == "predrnn" and result.fallback_reason is None
    np.testing.assert_array_equal(result.dbz, forecast_dbz(loaded.model, context, 3, scaling=loaded.meta["scaling"]))


def test_runtime_falls_back_to_extrapolation_or_refuses(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    context = blob_field(4)
    for checkpoint, reason in ((tmp_path / "absent.pt", "checkpoint file not found"),
                               (corrupt, "not a readable torch checkpoint")):
        settings = WorkerSettings(data_dir=tmp_path, checkpoint=checkpoint, device="cpu")
        result = runtime.run_forecast(settings, context, 2)
        assert result.source == "extrapolation" and reason in result.fallback_reason
        assert result.checkpoint_sha256 == "" and result.dbz.shape == (2, *GRID)
        assert np.isfinite(result.dbz).all()
        # The blobs move east by about a pixel per scan: the forecast peak keeps moving east.
        assert np.argmax(result.dbz[1].max(axis=0)) > np.argmax(context[-1].max(axis=0))
    strict = WorkerSettings(data_dir=tmp_path, checkpoint=tmp_path / "absent.pt", fallback_extrapolation=False)
    with pytest.raises(runtime.ModelUnavailableError, match="checkpoint file not found"):
        runtime.run_forecast(strict, context, 2)


def test_the_model_runs_on_the_configured_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    import os

    cores = len(os.sched_getaffinity(0))
    assert runtime.torch_threads(0) == max(1, cores - 1)  # one core left to the API, beat, cpu worker
    assert runtime.torch_threads(3) == 3
    monkeypatch.setenv("NOWCAST_TORCH_THREADS", "1")
    settings = WorkerSettings(data_dir=tmp_path, checkpoint=write_tiny_checkpoint(tmp_path / "t.pt"), device="cpu")
    assert settings.torch_threads == 1
    torch.set_num_threads(cores)
    runtime.get_model(settings)
    assert torch.get_num_threads() == 1
