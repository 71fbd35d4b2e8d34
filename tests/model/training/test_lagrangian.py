"""The Lagrangian trainer: presets, the skill loss, a short run that resumes bit for bit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.train import main as train_main
from model import InputError
from model.checkpoint import load_checkpoint
from model.data.synthetic import storm_frames
from model.forecast import forecast_dbz
from model.network.predrnn import PredRNN
from model.training.lagrangian import LagrangianConfig, LossOptions, load_config, skill_loss

REPO = Path(__file__).resolve().parents[3]
PRESET = REPO / "model" / "training" / "configs" / "radar_lagrangian_cpu.toml"


def tiny_preset(tmp_path: Path, iterations: int) -> Path:
    cache = tmp_path / "cache"
    text = f"""
trainer = "lagrangian"
name = "tiny"
seed = 3
[model]
version = "v2"
frame = "lagrangian"
num_hidden = [4, 4]
filter_size = 3
patch_size = 4
height = 32
width = 32
input_length = 3
output_length = 4
[data]
height = 32
width = 32
input_length = 3
output_length = 4
train_storms = 6
valid_storms = 3
cache_dir = "{cache}"
[optim]
batch_size = 2
max_iterations = {iterations}
[run]
display_interval = 1
eval_interval = 2
checkpoint_interval = 2
precision = "fp32"
selection_leads = [2, 4]
"""
    path = tmp_path / f"tiny_{iterations}.toml"
    path.write_text(text)
    return path


def test_the_shipped_preset_loads_and_is_lagrangian() -> None:
    config = load_config(PRESET)
    assert config.model.frame == "lagrangian" and config.trainer == "lagrangian"
    assert config.data.height >= 96 and config.model.output_length == 20
    assert LagrangianConfig.from_dict(config.to_dict()) == config


def test_every_lagrangian_preset_loads_and_starts_from_a_file_in_the_repository() -> None:
    from model.training.lagrangian import is_lagrangian_preset

    presets = [p for p in PRESET.parent.glob("*.toml") if is_lagrangian_preset(p)]
    assert len(presets) >= 3
    for preset in presets:
        config = load_config(preset)
        if config.run.init_from:  # fine-tuning must be reproducible from a clean checkout
            assert (REPO / config.run.init_from).is_file(), f"{preset.name}: {config.run.init_from} is missing"


def test_bad_presets_are_refused_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(PRESET.read_text().replace('frame = "lagrangian"', 'frame = "eulerian"'))
    with pytest.raises(InputError, match="bad.toml: .*frame must be 'lagrangian'"):
        load_config(path)
    path.write_text(PRESET.read_text() + "\n[optim2]\nx = 1\n")
    with pytest.raises(InputError, match="unknown keys"):
        load_config(path)
    path.write_text(PRESET.read_text().replace("[data]\n", "[data]\ntextured_fraction = 1.5\n"))
    with pytest.raises(InputError, match="bad.toml: .*textured_fraction must lie in"):
        load_config(path)


def test_textured_rain_replaces_the_storm_field_of_evolving_sequences_only(tmp_path: Path) -> None:
    import dataclasses

    from model.training.lagrangian import _shard_path, _storm

    base = load_config(tiny_preset(tmp_path, 1)).data
    evolving = dataclasses.replace(base, evolving_fraction=1.0)
    textured = dataclasses.replace(evolving, textured_fraction=1.0)
    plain, _ = _storm(evolving, "train", 0)
    rough, displacements = _storm(textured, "train", 0)
    assert rough.shape == plain.shape == (7, 32, 32) and displacements.shape == (4, 2, 32, 32)
    assert not np.array_equal(rough, plain)
    # Without evolving sequences the option changes nothing, the cache included.
    storms_only = dataclasses.replace(base, textured_fraction=1.0)
    np.testing.assert_array_equal(_storm(storms_only, "train", 0)[0], _storm(base, "train", 0)[0])
    assert _shard_path(storms_only, "train", 0) == _shard_path(base, "train", 0)
    assert len({_shard_path(d, "train", 0) for d in (base, evolving, textured)}) == 3


def test_skill_loss_rewards_the_echo_a_blur_loses() -> None:
    # Truth: a 50 dBZ block. A forecast keeping it beats one smeared to 15 dBZ on the CSI term,
    # and errors inside the intense echo weigh more than errors outside it.
    truth = torch.full((1, 1, 16, 16), -10.0)
    truth[..., 4:12, 4:12] = 50.0
    inside = torch.ones_like(truth, dtype=torch.bool)
    to_model = lambda dbz: (dbz + 10.0) / 70.0  # noqa: E731
    sharp = skill_loss(to_model(truth), inside, truth, LossOptions())
    blurred = skill_loss(to_model(torch.full_like(truth, 15.0)), inside, truth, LossOptions())
    assert sharp["csi"] < 0.05 < 0.9 < blurred["csi"]
    assert sharp["total"] < blurred["total"]
    miss_in_core = to_model(truth.clone())
    miss_in_core[..., 6, 6] = to_model(torch.tensor(40.0))
    miss_outside = to_model(truth.clone())
    miss_outside[..., 0, 0] = to_model(torch.tensor(0.0))
    assert skill_loss(miss_in_core, inside, truth, LossOptions(csi=0))["mae"] > \
        skill_loss(miss_outside, inside, truth, LossOptions(csi=0))["mae"]


def test_a_short_run_writes_its_files_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert train_main(["--config", str(tiny_preset(tmp_path, 4)), "--out", str(straight)]) == 0
    assert train_main(["--config", str(tiny_preset(tmp_path, 4)), "--out", str(halves), "--max-iterations", "2"]) == 0
    with pytest.raises(InputError, match="--resume"):
        train_main(["--config", str(tiny_preset(tmp_path, 4)), "--out", str(halves)])
    assert train_main(["--out", str(halves), "--resume"]) == 0  # the run's own config.json

    model_a, meta_a = load_checkpoint(straight / "last.pt")
    model_b, meta_b = load_checkpoint(halves / "last.pt")
    assert meta_a["iteration"] == meta_b["iteration"] == 4
    assert meta_a["weights_sha256"] == meta_b["weights_sha256"]
    assert model_a.config.frame == "lagrangian" and meta_a["frame"] == "lagrangian"

    with (halves / "validation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [0, 2, 4]  # iteration 0 is extrapolation
    best, best_meta = load_checkpoint(halves / "best.pt")
    assert best_meta["selection"]["extrapolation_score"] == pytest.approx(float(rows[0]["selection_score"]), abs=1e-4)
    assert best_meta["selection"]["score"] == pytest.approx(max(float(r["selection_score"]) for r in rows), abs=1e-4)
    with (halves / "history.csv").open() as handle:
        assert [int(r["iteration"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]


def test_fine_tuning_starts_from_a_checkpoint_and_mixes_in_evolving_rain(tmp_path: Path) -> None:
    from model.training.lagrangian import StormCache, _storm, validate

    first = tmp_path / "first"
    assert train_main(["--config", str(tiny_preset(tmp_path, 2)), "--out", str(first)]) == 0
    text = tiny_preset(tmp_path, 2).read_text()
    text = text.replace("valid_storms = 3\n", "valid_storms = 3\nevolving_fraction = 0.5\n")
    text = text.replace("[run]\n", f'[run]\ninit_from = "{first / "last.pt"}"\n')
    preset = tmp_path / "fine.toml"
    preset.write_text(text)
    config = load_config(preset)
    assert train_main(["--config", str(preset), "--out", str(tmp_path / "fine"), "--max-iterations", "1"]) == 0

    kinds = [np.random.default_rng([0, code, i, 1]).random() < 0.5 for code, count in ((11, 6), (12, 3))
             for i in range(count)]
    assert any(kinds) and not all(kinds), "the tiny cache must hold both kinds of storm"
    scans, displacements = _storm(config.data, "train", kinds.index(True))
    assert scans.shape == (7, 32, 32) and displacements.shape == (4, 2, 32, 32)

    # Iteration 0 scores the starting weights; the reference is still extrapolation (an untrained net).
    valid = StormCache(config.data, "valid")
    start, _ = load_checkpoint(first / "last.pt")
    with (tmp_path / "fine" / "validation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[0]["selection_score"]) == pytest.approx(
        validate(start, valid, config, "fp32")["selection_score"], abs=1e-4)
    _, meta = load_checkpoint(tmp_path / "fine" / "last.pt")
    assert meta["selection"]["extrapolation_score"] == pytest.approx(
        validate(PredRNN(config.model), valid, config, "fp32")["selection_score"], abs=1e-6)

    other = tmp_path / "other.toml"
    other.write_text(text.replace("num_hidden = [4, 4]", "num_hidden = [8, 8]"))
    with pytest.raises(InputError, match="last.pt: its model differs"):
        train_main(["--config", str(other), "--out", str(tmp_path / "other")])


def test_sigterm_finishes_the_iteration_and_saves_last_pt(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "cli", "train", "--config", str(tiny_preset(tmp_path, 10_000)),
                                "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "last.pt").exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert (out / "last.pt").exists(), "the run never saved a checkpoint"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "stopped by signal 15" in output
    _, meta = load_checkpoint(out / "last.pt")
    with (out / "history.csv").open() as handle:
        assert int(list(csv.DictReader(handle))[-1]["iteration"]) == meta["iteration"] >= 2


def test_weighting_by_both_classes_makes_a_false_alarm_cost_what_a_miss_costs() -> None:
    to_model = lambda dbz: (dbz + 10.0) / 70.0  # noqa: E731
    truth = torch.full((1, 1, 8, 8), 0.0)
    truth[..., 2, 2] = 45.0
    inside = torch.ones_like(truth, dtype=torch.bool)
    miss = to_model(truth.clone())
    miss[..., 2, 2] = to_model(torch.tensor(0.0))  # the 45 dBZ cell forecast as 0
    false_alarm = to_model(truth.clone())
    false_alarm[..., 5, 5] = to_model(torch.tensor(45.0))  # a 45 dBZ cell where 0 was observed
    for weight_by, ratio in (("truth", 10.0), ("both", 1.0)):
        options = LossOptions(csi=0, mse=0, weight_by=weight_by)
        assert (skill_loss(miss, inside, truth, options)["mae"] /
                skill_loss(false_alarm, inside, truth, options)["mae"]).item() == pytest.approx(ratio)


def test_a_trend_preset_starts_from_the_same_network_without_it_and_forecasts_as_it_did(tmp_path: Path) -> None:
    from model.training.lagrangian import _initialise

    first = tmp_path / "first"
    assert train_main(["--config", str(tiny_preset(tmp_path, 2)), "--out", str(first)]) == 0
    text = tiny_preset(tmp_path, 2).read_text()
    text = text.replace("[model]\n", "[model]\ntrend_input = true\ntrend_sigma_px = 6.0\n")
    preset = tmp_path / "trend.toml"
    preset.write_text(text.replace("[run]\n", f'[run]\ninit_from = "{first / "last.pt"}"\n'))
    config = load_config(preset)
    model = PredRNN(config.model)
    _initialise(model, first / "last.pt", config)
    start, _ = load_checkpoint(first / "last.pt")
    context = storm_frames([5, 5, 5], 6, 32, 32)[:3]
    np.testing.assert_array_equal(forecast_dbz(model.eval(), context, 4), forecast_dbz(start.eval(), context, 4))

    assert train_main(["--config", str(preset), "--out", str(tmp_path / "trend")]) == 0
    trained, meta = load_checkpoint(tmp_path / "trend" / "last.pt")
    assert trained.config.trend_input and trained.config.trend_sigma_px == 6.0 and meta["frame"] == "lagrangian"
    assert torch.count_nonzero(trained.cell_list[0].conv_x[0].weight[:, 16:]) > 0, "training reads the trend"


def test_per_sequence_csi_lets_a_storms_few_cores_count_beside_a_field_of_intense_rain() -> None:
    # Sequence 0: a field of 45 dBZ rain, forecast right. Sequence 1: one small 45 dBZ core,
    # forecast at 36 dBZ (the core fading). Pooled over the batch, the field's union drowns the
    # core out; per sequence, the core's miss weighs as much as a whole sequence.
    to_model = lambda dbz: (dbz + 10.0) / 70.0  # noqa: E731
    truth = torch.full((2, 1, 32, 32), 0.0)
    truth[0, :, 4:28, 4:28] = 45.0
    truth[1, :, 15:17, 15:17] = 45.0
    forecast = to_model(truth.clone())
    forecast[1, :, 15:17, 15:17] = to_model(torch.tensor(36.0))
    inside = torch.ones_like(truth, dtype=torch.bool)
    pulls = {}
    for pooling in ("batch", "sequence"):
        fc = forecast.clone().requires_grad_(True)
        options = LossOptions(mae=0, mse=0, csi=1.0, thresholds=[40.0], weights=[1.0], csi_pooling=pooling)
        skill_loss(fc, inside, truth, options)["total"].backward()
        pulls[pooling] = -fc.grad[1, 0, 15, 15].item()  # how hard the loss pushes the core back up
    assert pulls["batch"] > 0 and pulls["sequence"] > 50 * pulls["batch"]
    with pytest.raises(ValueError, match="csi_pooling"):
        LagrangianConfig.from_dict({**load_config(PRESET).to_dict(), "loss": {"csi_pooling": "pixel"}})


def test_sequence_kinds_are_the_kinds_the_cache_was_built_from(tmp_path: Path) -> None:
    import dataclasses

    from model.data.synthetic import storm_frames as storm
    from model.training.lagrangian import _storm, sequence_kind

    base = load_config(tiny_preset(tmp_path, 1)).data
    assert {sequence_kind(base, "train", i) for i in range(20)} == {"storm"}
    mixed = dataclasses.replace(base, evolving_fraction=0.5, textured_fraction=0.5)
    kinds = [sequence_kind(mixed, "valid", i) for i in range(40)]
    assert set(kinds) == {"storm", "evolving", "textured"}
    # A "storm" is the plain synthetic storm, the others are not.
    for i, kind in enumerate(kinds[:8]):
        scans, _ = _storm(mixed, "valid", i)
        plain = storm([mixed.seed, 12, i], 7, 32, 32)
        assert np.array_equal(scans, plain) == (kind == "storm")


def test_the_selection_guard_keeps_best_pt_from_a_validation_that_loses_to_extrapolation(tmp_path: Path) -> None:
    from model.training.lagrangian import selection_rank, worst_gap

    reference = {"storm": {"40dBZ": [0.5, 0.02]}, "evolving": {"40dBZ": [0.6, 0.3]}}
    better_on_evolving = {"storm": {"40dBZ": [0.5, 0.0]}, "evolving": {"40dBZ": [0.7, 0.4]}}
    assert worst_gap(better_on_evolving, reference) == pytest.approx(-0.02)
    assert worst_gap(reference, reference) == 0.0
    # A higher score that fails the guard ranks below a lower one that passes it; among failures
    # the smaller shortfall wins; without a guard the score alone decides.
    assert selection_rank(0.6, -0.02, 0.01) < selection_rank(0.5, -0.005, 0.01)
    assert selection_rank(0.9, -0.05, 0.01) < selection_rank(0.1, -0.02, 0.01)
    assert selection_rank(0.6, -0.02, None) > selection_rank(0.5, -0.005, None)

    # A run with the guard records the gap of every validation and whether best.pt passed it.
    text = tiny_preset(tmp_path, 2).read_text()
    text = text.replace("valid_storms = 3\n", "valid_storms = 3\nevolving_fraction = 0.5\n")
    preset = tmp_path / "guarded.toml"
    preset.write_text(text.replace("[run]\n", "[run]\nselection_guard = 0.01\n"))
    assert train_main(["--config", str(preset), "--out", str(tmp_path / "guarded")]) == 0
    with (tmp_path / "guarded" / "validation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[0]["worst_gap_to_extrapolation"]) == 0.0  # iteration 0 is extrapolation
    _, meta = load_checkpoint(tmp_path / "guarded" / "best.pt")
    best = next(r for r in rows if int(r["iteration"]) == meta["selection"]["iteration"])
    assert meta["selection"]["guard"] == 0.01
    assert meta["selection"]["worst_gap_to_extrapolation"] == pytest.approx(
        float(best["worst_gap_to_extrapolation"]), abs=1e-5)
    assert meta["selection"]["passed_guard"] == (float(best["worst_gap_to_extrapolation"]) >= -0.01)
