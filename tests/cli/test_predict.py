"""`nowcast predict` through the real console command (a subprocess), .npy in and out."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from model.checkpoint import save_checkpoint, to_official
from model.forecast import forecast_frames as run_forecast
from model.network import precision
from model.network.predrnn import PredRNN, PredRNNConfig

torch.set_num_threads(1)


def nowcast(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PredRNN(PredRNNConfig(num_hidden=[8, 8], input_length=3, output_length=2))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model)
    official = path.with_name("model.ckpt-1000")
    torch.save(to_official(model), official)
    return path, official, model.eval()


@pytest.mark.parametrize("shape", [(2, 3, 1, 16, 16), (3, 1, 16, 20), (3, 12, 16)])
def test_predict_writes_the_raw_output_with_the_input_rank(tmp_path, checkpoint, shape):
    path, _, model = checkpoint
    frames = np.random.default_rng(0).random(shape).astype(np.float32)
    np.save(tmp_path / "in.npy", frames)
    result = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "in.npy", "--steps", 4,
                     "--output", tmp_path / "out.npy")
    assert result.returncode == 0, result.stderr
    out = np.load(tmp_path / "out.npy")
    five = frames.reshape((1,) * (5 - len(shape)) + shape) if len(shape) == 4 else frames
    if len(shape) == 3:
        five = frames[None, :, None]
    expected = model.forecast(torch.from_numpy(five), 4).numpy()
    expected = expected.reshape((-1,) + expected.shape[2:]) if len(shape) == 4 else expected
    if len(shape) == 3:
        expected = expected[0, :, 0]
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_predict_with_an_authors_checkpoint(tmp_path, checkpoint):
    path, official, _ = checkpoint
    np.save(tmp_path / "in.npy", np.random.default_rng(1).random((1, 3, 1, 16, 16)).astype(np.float32))
    ours = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "in.npy", "--steps", 2,
                   "--output", tmp_path / "ours.npy")
    theirs = nowcast("predict", "--checkpoint", official, "--official", "--model-name", "predrnn_v2",
                     "--num-hidden", "8,8", "--filter-size", 5, "--patch-size", 4, "--img-channel", 1,
                     "--layer-norm", 0, "--input", tmp_path / "in.npy", "--steps", 2,
                     "--output", tmp_path / "theirs.npy")
    assert ours.returncode == 0 and theirs.returncode == 0, theirs.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "ours.npy"), np.load(tmp_path / "theirs.npy"))


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((2, 2), np.float32), "expected (B, T, C, H, W)"),
        (np.zeros((1, 1, 16, 16), np.float32), "at least 2 frames"),
        (np.full((3, 1, 8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((3, 2, 8, 8), np.float32), "channel"),
    ],
)
def test_bad_inputs_end_with_one_line_and_exit_2(tmp_path, checkpoint, array, message):
    path, _, _ = checkpoint
    np.save(tmp_path / "bad.npy", array)
    result = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "bad.npy", "--steps", 1,
                     "--output", tmp_path / "out.npy")
    assert result.returncode == 2
    assert message in result.stderr and "bad.npy" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.npy").exists()


def test_missing_files_and_mismatched_hyperparameters(tmp_path, checkpoint):
    path, official, _ = checkpoint
    np.save(tmp_path / "in.npy", np.zeros((3, 1, 8, 8), np.float32))
    missing = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "none.npy", "--steps", 1,
                      "--output", tmp_path / "o.npy")
    assert missing.returncode == 2 and "none.npy: input file not found" in missing.stderr
    no_ckpt = nowcast("predict", "--checkpoint", tmp_path / "x.pt", "--input", tmp_path / "in.npy",
                      "--steps", 1, "--output", tmp_path / "o.npy")
    assert no_ckpt.returncode == 2 and "x.pt: checkpoint file not found" in no_ckpt.stderr
    wrong = nowcast("predict", "--checkpoint", official, "--official", "--num-hidden", "16,16",
                    "--input", tmp_path / "in.npy", "--steps", 1, "--output", tmp_path / "o.npy")
    assert wrong.returncode == 2 and "do not fit the hyperparameters" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_grid_the_model_cannot_take_is_reported(tmp_path):
    torch.manual_seed(0)
    fixed_grid = PredRNN(PredRNNConfig(num_hidden=[8], input_length=3, output_length=2, layer_norm=True,
                                       height=16, width=16))
    save_checkpoint(tmp_path / "ln.pt", fixed_grid)
    np.save(tmp_path / "in.npy", np.zeros((3, 1, 24, 24), np.float32))
    result = nowcast("predict", "--checkpoint", tmp_path / "ln.pt", "--input", tmp_path / "in.npy", "--steps", 1,
                     "--output", tmp_path / "out.npy")
    assert result.returncode == 2
    assert "in.npy" in result.stderr and "only takes 16x16 grids" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.npy").exists()


def test_auto_precision_resolves_to_bf16_only_with_native_bf16(tmp_path, checkpoint):
    path, _, _ = checkpoint
    np.save(tmp_path / "in.npy", np.random.default_rng(2).random((3, 1, 16, 16)).astype(np.float32))
    expected = "bf16" if precision.cpu_has_native_bf16() else "fp32"  # README: AVX512-BF16 or AMX
    outputs = {}
    for choice in ("auto", expected):
        result = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "in.npy", "--steps", 2,
                         "--precision", choice, "--output", tmp_path / f"{choice}.npy")
        assert result.returncode == 0, result.stderr
        assert f"({expected}, " in result.stderr  # the log line names the precision that ran
        outputs[choice] = np.load(tmp_path / f"{choice}.npy")
    np.testing.assert_array_equal(outputs["auto"], outputs[expected])


def test_bf16_runs_fused_and_channels_last_unless_told_otherwise(checkpoint):
    _, _, model = checkpoint
    frames = np.random.default_rng(3).random((1, 3, 1, 16, 20)).astype(np.float32)
    context = torch.from_numpy(frames)
    cpu = torch.device("cpu")
    with precision.autocast("bf16", cpu):
        lean = model.forecast(context, 2, fused=True, channels_last=True).float().numpy()
        plain = model.forecast(context, 2).float().numpy()
    np.testing.assert_array_equal(run_forecast(model, frames, 2, "bf16", cpu), lean)
    np.testing.assert_array_equal(run_forecast(model, frames, 2, "bf16", cpu, fused=False, channels_last=False), plain)
    np.testing.assert_array_equal(run_forecast(model, frames, 2, "fp32", cpu), model.forecast(context, 2).numpy())
    assert np.abs(lean - plain).max() < 0.02  # both bf16; only the order of the rounding differs


def test_levers_can_be_switched_on_the_command_line(tmp_path, checkpoint):
    path, _, model = checkpoint
    frames = np.random.default_rng(4).random((3, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "in.npy", frames)
    result = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "in.npy", "--steps", 2,
                     "--precision", "fp32", "--fused", "--channels-last", "--output", tmp_path / "out.npy")
    assert result.returncode == 0, result.stderr
    expected = model.forecast(torch.from_numpy(frames)[None], 2)[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-5)


def test_a_lagrangian_checkpoint_forecasts_cf_scans_on_a_grid_that_is_not_square(tmp_path):
    # The frame travels in the checkpoint: predict aligns, forecasts and advects from the file alone.
    import datetime as dt

    import xarray as xr

    from model.baselines import extrapolation
    from model.data.synthetic import storm_frames
    from model.io.netcdf import write_scans

    torch.manual_seed(0)
    path = tmp_path / "lagrangian.pt"
    save_checkpoint(path, PredRNN(PredRNNConfig(num_hidden=[8, 8], frame="lagrangian", input_length=6)))
    scans = storm_frames([0, 97, 2], 10, 70, 90)
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    write_scans(tmp_path / "feed", scans, [start + dt.timedelta(minutes=6 * k) for k in range(10)],
                x=1000.0 * np.arange(90), y=1000.0 * np.arange(70))
    result = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "feed", "--steps", 20,
                     "--output", tmp_path / "out.nc")
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(tmp_path / "out.nc") as product:
        assert product.attrs["model_frame"] == "lagrangian"
        forecast = product["reflectivity"].values
    assert forecast.shape == (20, 70, 90)
    # Untrained (residual head at zero) it is extrapolation of the same scans, to float rounding.
    np.testing.assert_allclose(forecast, np.clip(extrapolation(scans, 20), -10, 60), atol=0.02)
    # One scan gives no motion: a message naming the input, exit 2, no traceback.
    write_scans(tmp_path / "one", scans[:1], [start], x=1000.0 * np.arange(90), y=1000.0 * np.arange(70))
    result = nowcast("predict", "--checkpoint", path, "--input", tmp_path / "one", "--steps", 3,
                     "--output", tmp_path / "one.nc")
    assert result.returncode == 2, result.stderr
    assert "one" in result.stderr and "at least 2 scans" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def ensemble_feed(tmp_path_factory):
    """A Lagrangian checkpoint (untrained: the extrapolation of its scans) and 10 scans of a moving storm."""
    import datetime as dt

    from model.data.synthetic import storm_frames
    from model.io.netcdf import write_scans

    root = tmp_path_factory.mktemp("ensemble")
    torch.manual_seed(0)
    checkpoint = root / "lagrangian.pt"
    save_checkpoint(checkpoint, PredRNN(PredRNNConfig(num_hidden=[8, 8], frame="lagrangian", input_length=6)))
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    write_scans(root / "feed", storm_frames([0, 97, 2], 10, 48, 56),
                [start + dt.timedelta(minutes=6 * k) for k in range(10)],
                x=1000.0 * np.arange(56), y=1000.0 * np.arange(48))
    return checkpoint, root / "feed"


def predict_nc(checkpoint, feed, out, *extra) -> int:
    from cli import main as cli_main

    return cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(feed), "--steps", "5",
                     "--output", str(out), *map(str, extra)])


def test_members_one_is_todays_forecast_byte_for_byte(tmp_path, ensemble_feed):
    import xarray as xr

    checkpoint, feed = ensemble_feed
    assert predict_nc(checkpoint, feed, tmp_path / "today.nc") == 0
    assert predict_nc(checkpoint, feed, tmp_path / "one.nc", "--members", 1, "--seed", 9) == 0
    with xr.open_dataset(tmp_path / "today.nc") as today, xr.open_dataset(tmp_path / "one.nc") as one:
        assert today["reflectivity"].values.tobytes() == one["reflectivity"].values.tobytes()
        assert set(today.variables) == set(one.variables) and "ensemble_members" not in one.attrs
        assert one["reflectivity"].dims == ("time", "y", "x")


def test_ensemble_members_are_reproducible_and_probabilities_consistent(tmp_path, ensemble_feed):
    import xarray as xr

    from model.checkpoint import load_checkpoint
    from model.ensemble import EnsembleSettings, forecast_ensemble_dbz
    from model.io.netcdf import read_scans

    checkpoint, feed = ensemble_feed
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert predict_nc(checkpoint, feed, tmp_path / f"{name}.nc", "--members", 6, "--seed", seed) == 0
    with xr.open_dataset(tmp_path / "a.nc") as a, xr.open_dataset(tmp_path / "b.nc") as b, \
            xr.open_dataset(tmp_path / "c.nc") as c:
        members = a["reflectivity"].values
        assert members.shape == (6, 5, 48, 56) and a["reflectivity"].dims == ("realization", "time", "y", "x")
        np.testing.assert_array_equal(members, b["reflectivity"].values)  # same seed, same members
        assert not np.array_equal(members, c["reflectivity"].values)  # another seed, other members
        assert not np.array_equal(members[0], members[1])  # and the members differ from each other
        assert (a.attrs["ensemble_members"], a.attrs["ensemble_seed"]) == (6, 3)
        assert a.attrs["ensemble_perturbation"] == "defaults: both, centred offsets"  # no calibration beside it
        probability = a["probability_of_reflectivity_above_threshold"].values
        assert probability.min() >= 0 and probability.max() <= 1
        assert np.all(np.diff(probability, axis=0) <= 0)  # 20 >= 30 >= 40 dBZ at every pixel and lead
        shares = np.stack([(members >= t).mean(axis=0, dtype=np.float32) for t in (20, 30, 40)])
        np.testing.assert_array_equal(probability, shares)
        assert probability[0].max() > 0  # the storm reaches 20 dBZ somewhere
        np.testing.assert_allclose(a["reflectivity_ensemble_mean"].values, members.mean(axis=0), rtol=1e-6)
    # The CLI's members are model.ensemble's for the same input, seed and settings.
    model, meta = load_checkpoint(checkpoint)
    context = read_scans(feed).tail(6).dbz
    expected = forecast_ensemble_dbz(model.eval(), context, 5, members=6, seed=3, settings=EnsembleSettings(),
                                     scaling=meta["scaling"])
    np.testing.assert_array_equal(members, expected)


@pytest.mark.parametrize("members,output,message", [
    (0, "out.nc", "--members: members must be from 1 to 50, got 0"),
    (1000, "out.nc", "--members: members must be from 1 to 50, got 1000"),
    (4, "out.npy", "out.npy: --members 4 writes the ensemble product, which needs .nc output"),
])
def test_bad_members_are_one_line_errors(tmp_path, ensemble_feed, members, output, message):
    checkpoint, feed = ensemble_feed
    result = nowcast("predict", "--checkpoint", checkpoint, "--input", feed, "--steps", 2, "--members", members,
                     "--output", tmp_path / output)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / output).exists()
