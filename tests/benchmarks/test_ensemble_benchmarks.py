"""benchmarks.ensemble_calibration and benchmarks.ensemble_speed on tiny cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.ensemble_calibration import DECORRELATIONS, DISPLACEMENTS_PX, crps_per_lead
from model.ensemble import EnsembleSettings

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "model" / "checkpoints" / "radar_lagrangian.pt"


def test_crps_of_members_is_the_standard_estimator():
    members = np.array([0.0, 10.0, 20.0], dtype=np.float32).reshape(3, 1, 1, 1)
    truth = np.full((1, 1, 1), 5.0, dtype=np.float32)
    crps, variance, squared = crps_per_lead(members, truth)
    # mean |x - y| = (5 + 5 + 15) / 3; mean |x - x'| / 2 = (2 * (10 + 20 + 10) / 9) / 2
    assert np.isclose(crps[0], 25 / 3 - 40 / 9)
    assert np.isclose(variance[0], 100.0) and np.isclose(squared[0], 25.0)


def test_calibration_scores_every_pair_and_chooses_a_dispersed_one(tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--checkpoint", str(DEFAULT_MODEL),
                           "--sequences", "1", "--members", "4", "--grid", "32x48", "--steps", "3",
                           "--min-spread-skill", "0.5", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    pairs = len(DISPLACEMENTS_PX) * len(DECORRELATIONS)
    assert np.array(report["grid_crps_dbz"]).shape == (pairs, 3)
    assert np.array(report["grid_brier"]).shape == (pairs, 3, 2) and report["centred_offsets"] is True
    assert report["split"] == "valid" and report["sequences"] == 1 and report["winner"] in ("both", "motion", "noise")
    best = report["families"]["both"]
    assert best["crps_dbz"] == [round(min(column), 4) for column in np.array(report["grid_crps_dbz"]).T]
    assert report["deterministic_crps_dbz"] == [round(v, 4) for v in np.array(report["grid_crps_dbz"])[0]]
    bounded = report["families"]["both, spread-skill >= 0.5"]
    grid_ratio = np.array(report["grid_spread_skill"])
    assert all(r >= 0.5 or r == grid_ratio[:, k].max() for k, r in enumerate(bounded["spread_skill"]))
    again = tmp_path / "again.json"
    subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--from-grid", str(out),
                    "--min-spread-skill", "0.5", "--json", str(again)], cwd=REPO, check=True, capture_output=True,
                   timeout=120)
    assert json.loads(again.read_text())["families"] == report["families"]


def test_adaptive_calibration_records_its_reference_and_writes_it_beside_the_checkpoint(tmp_path: Path) -> None:
    """Offsets that follow the case, intensity matching on the grid, and the choice bounded by STEPS' scores."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(DEFAULT_MODEL.read_bytes())
    out = tmp_path / "adaptive.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--checkpoint", str(checkpoint),
                           "--sequences", "2", "--members", "3", "--grid", "32x48", "--steps", "2",
                           "--predictability-exponent", "0.5", "--decorrelations", "0", "--intensity-matching", "0,1",
                           "--intensity-spreads", "0,2", "--flows", "1", "--with-steps", "--steps-margin", "0.01",
                           "--json", str(out), "--write-settings"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["grid_decorrelation"] == [0.0] and report["grid_intensity_matching"] == [0.0, 1.0]
    assert report["predictability_exponent"] == 0.5
    assert (report["sequences"], report["flows"]) == (2, 1)  # 2 storms, then one flow of each kind
    assert report["grid_intensity_spread_db"] == [0.0, 2.0] and report["rearranged_from_dbz"] == 0.0
    assert np.array(report["grid_crps_dbz"]).shape == (len(DISPLACEMENTS_PX) * 2 * 2, 2)
    assert report["reference_acceleration"] > 0 and "--seed 0" in report["command"]
    assert np.array(report["steps_reference"]["brier"]).shape == (2, 2)
    served = report["families"][report["served"]]
    assert report["served"].endswith("within STEPS - 0.01")
    assert set(served["brier_skill_vs_steps"]) == {"20dBZ", "30dBZ"}
    settings = EnsembleSettings.for_checkpoint(checkpoint)
    assert settings.predictability_exponent == 0.5 and settings.centred_offsets
    assert settings.reference_acceleration == report["reference_acceleration"]
    assert list(settings.intensity_matching) == served["intensity_matching"]
    assert list(settings.intensity_spread_db) == served["intensity_spread_db"]
    assert "and 1 of each kind of growing and decaying flow" in settings.extra["calibrated_on"]


def test_flows_as_a_constraint_keep_the_flows_no_worse_than_the_deterministic_forecast(tmp_path: Path) -> None:
    """Chosen on the storms, among the combinations no worse than the network's field on the flows."""
    out = tmp_path / "constrained.json"
    command = [sys.executable, "-m", "benchmarks.ensemble_calibration", "--checkpoint", str(DEFAULT_MODEL),
               "--sequences", "2", "--flows", "1", "--members", "3", "--grid", "32x48", "--steps", "2",
               "--predictability-exponent", "1", "--decorrelations", "0,2", "--intensity-matching", "1",
               "--rearranged-from", "20", "--follows-case", "all", "--flows-as-constraint", "--with-steps",
               "--steps-margin", "0.01"]
    done = subprocess.run([*command, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["follows_case"] == "all" and report["flows_as_constraint"] is True
    kinds = report["grid_by_kind"]
    assert set(kinds) == {"storms", "flows"}
    combos = len(DISPLACEMENTS_PX) * 2 + 1  # and the deterministic forecast
    assert np.array(kinds["flows"]["crps_dbz"]).shape == (combos, 2) == np.array(report["grid_crps_dbz"]).shape
    # The pooled grid is the case-weighted mean of the kinds' (2 storms, 2 flows).
    pooled = (np.array(kinds["storms"]["crps_dbz"]) + np.array(kinds["flows"]["crps_dbz"])) / 2
    assert np.allclose(pooled, report["grid_crps_dbz"], atol=2e-4)
    served = report["families"][report["served"]]
    assert all(c <= d + 1e-4 for c, d in zip(served["flows_crps_dbz"], served["flows_deterministic_crps_dbz"],
                                             strict=True))
    assert served["crps_dbz"] == [round(kinds["storms"]["crps_dbz"][
        report["grid_displacement_px"].index(d) * 2 + report["grid_decorrelation"].index(c) + 1][k], 4)
        if (d, c) != (0.0, 0.0) else round(kinds["storms"]["crps_dbz"][0][k], 4)
        for k, (d, c) in enumerate(zip(served["displacement_px"], served["decorrelation"], strict=True))]
    assert len(report["steps_reference"]["crps_dbz"]) == 2  # STEPS scored on the 2 storms only
    again = tmp_path / "again.json"
    subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--from-grid", str(out), "--steps-margin",
                    "0.01", "--decorrelations", "0,2", "--intensity-matching", "1", "--rearranged-from", "20",
                    "--follows-case", "all", "--flows-as-constraint", "--json", str(again)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    assert json.loads(again.read_text())["families"] == report["families"]
    refused = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--from-grid", str(out),
                              "--decorrelations", "0,2", "--intensity-matching", "1", "--rearranged-from", "20",
                              "--json", str(tmp_path / "no.json")], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "follows_case" in refused.stderr


def test_a_calibration_on_the_hindcast_error_writes_that_measure_and_its_reference(tmp_path: Path) -> None:
    """--case-measure hindcast: the storms' median hindcast error is the reference, the settings
    beside the checkpoint follow it, and a grid measured so is not reselected as another measure."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(DEFAULT_MODEL.read_bytes())
    out = tmp_path / "hindcast.json"
    axes = ["--decorrelations", "0", "--intensity-matching", "1"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--checkpoint", str(checkpoint),
                           "--sequences", "3", "--members", "3", "--grid", "32x48", "--steps", "2",
                           "--predictability-exponent", "1", "--case-measure", "hindcast", *axes,
                           "--min-spread-skill", "0.5", "--json", str(out), "--write-settings"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["case_measure"] == "hindcast" and report["reference_hindcast_dbz"] > 0
    assert "reference_acceleration" not in report and "--case-measure hindcast" in report["command"]
    settings = EnsembleSettings.for_checkpoint(checkpoint)
    assert settings.case_measure == "hindcast" and settings.predictability_exponent == 1.0
    assert settings.reference_hindcast_dbz == report["reference_hindcast_dbz"]
    again = tmp_path / "again.json"
    subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--from-grid", str(out), *axes,
                    "--predictability-exponent", "1", "--case-measure", "hindcast", "--min-spread-skill", "0.5",
                    "--json", str(again)], cwd=REPO, check=True, capture_output=True, timeout=120)
    reselected = json.loads(again.read_text())
    assert reselected["families"] == report["families"]
    assert reselected["reference_hindcast_dbz"] == report["reference_hindcast_dbz"]
    refused = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_calibration", "--from-grid", str(out), *axes,
                              "--predictability-exponent", "1", "--json", str(tmp_path / "no.json")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "case_measure 'hindcast'" in refused.stderr


def test_predictability_ranks_each_measure_against_the_forecast_error(tmp_path: Path) -> None:
    out = tmp_path / "predictability.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.predictability", "--sequences", "4", "--flows", "1",
                           "--grid", "32x48", "--steps", "10", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [case["kind"] for case in report["cases"]] == ["storms"] * 4 + ["flows"] * 2
    measures = {"motion_change", *(f"hindcast_{k}_{h}" for k in ("mae", "miss", "relative") for h in (3, 6))}
    assert set(report["spearman_all"]) == measures == set(report["spearman_storms"])
    for correlations in report["spearman_all"].values():
        assert set(correlations) == {f"{k}_{lead}" for k in ("mae", "miss", "best_offset")
                                     for lead in ("30min", "60min")}
        assert all(-1.0 <= v <= 1.0 for v in correlations.values() if v == v)
    case = report["cases"][0]
    assert case["hindcast_mae_3"] >= 0 and 0 <= case["hindcast_miss_3"] <= 1 and case["mae_30min"] > 0
    assert case["best_offset_30min"] in DISPLACEMENTS_PX
    assert set(report["median_by_kind"]["hindcast_mae_3"]) == {"storms", "flows"}
    too_short = subprocess.run([sys.executable, "-m", "benchmarks.predictability", "--steps", "5",
                                "--sequences", "3", "--flows", "0", "--grid", "32x48"],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert too_short.returncode == 2 and "--steps must be at least 10" in too_short.stderr


def test_speed_times_both_methods_as_whole_processes(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_speed", "--grid", "32x32", "--members", "3",
                           "--steps", "3", "--repeats", "1", "--threads", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"predrnn_ensemble", "steps"}
    for runs in report["runs"].values():
        assert runs[0]["wall_s"] > runs[0]["forecast"] > 0 and runs[0]["peak_rss_mb"] > 50
    assert report["ratio_predrnn_over_steps"] == round(report["median_wall_s"]["predrnn_ensemble"]
                                                       / report["median_wall_s"]["steps"], 3)


def test_shift_scores_the_served_ensemble_on_flows_that_grow_and_decay(tmp_path: Path) -> None:
    out = tmp_path / "shift.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_shift", "--storms", "1", "--members", "3",
                           "--grid", "32", "--shares", "0,1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["kinds"]) == {"evolving", "textured"} and report["calibration"].startswith("radar_lagrangian")
    for scores in report["kinds"].values():
        assert set(scores) == {"deterministic default", "ensemble, intensity matching 0",
                               "ensemble, intensity matching 1"}
        for name, score in scores.items():
            assert len(score["crps_dbz"]) == 20 and score["crps_summed"] > 0
            assert ("spread_skill_30_60min" in score) == name.startswith("ensemble")


def test_ensemble_mean_helpers_average_rain_and_keep_the_members_values():
    from benchmarks.ensemble_mean import probability_matched_mean, rain_rate_mean

    same = np.full((4, 2, 3, 3), 25.0, dtype=np.float32)
    assert np.allclose(rain_rate_mean(same), 25.0, atol=1e-4)
    # Half the members at 30 dBZ, half without rain: the mean rain is half of 30 dBZ's, 30 - 16 log10(2) dBZ.
    half = np.concatenate([np.full((2, 1, 1, 1), 30.0), np.full((2, 1, 1, 1), -30.0)]).astype(np.float32)
    assert np.isclose(rain_rate_mean(half)[0, 0, 0], 30.0 - 16.0 * np.log10(2.0), atol=0.01)
    rng = np.random.default_rng(0)
    members = rng.uniform(-10.0, 50.0, size=(5, 2, 4, 6)).astype(np.float32)
    matched = probability_matched_mean(members)
    mean = members.mean(axis=0)
    for k in range(2):  # the dBZ mean's ranks, with every 5th of the pooled members' values
        assert np.array_equal(np.argsort(matched[k].ravel(), kind="stable"), np.argsort(mean[k].ravel(), kind="stable"))
        assert np.allclose(np.sort(matched[k].ravel()), np.sort(members[:, k].ravel())[2::5])


def test_ensemble_mean_scores_the_means_beside_the_deterministic_default(tmp_path: Path) -> None:
    out = tmp_path / "mean.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_mean", "--members", "3", "--offset-scales",
                           "1,0.1", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cases"] >= 2 and [e["offset_scale"] for e in report["ensembles"]] == [1.0, 0.1]
    for entry in report["ensembles"]:
        for kind in ("dbz_mean", "rain_rate_mean", "probability_matched_mean"):
            for threshold in ("20dBZ", "30dBZ"):
                assert all(0.0 <= v <= 1.0 for v in entry[kind][threshold].values())
    assert 0.5 < report["deterministic"]["20dBZ"]["30 min"] <= 1.0


def test_ensemble_misses_is_the_share_of_brier_from_events_no_member_had(tmp_path: Path) -> None:
    from benchmarks.ensemble_misses import missed_share

    # Two members: levels 0, 0.5, 1. Level 0: 10 pixels, 2 observed (Brier 2); level 0.5: 4 pixels,
    # 2 observed (4 * 0.25 = 1); level 1: 2 pixels, 2 observed (0). Share from level 0: 2 / 3.
    leads = [[10, 4, 2]] * 10
    reliability = {"probability": [0.0, 0.5, 1.0], "forecasts": leads, "observed": [[2, 2, 2]] * 10}
    assert np.isclose(missed_share(reliability, 5), 2 / 3)
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({
        "det": {"probabilistic": {"members": 1, "reliability": {"30dBZ": reliability}}},
        "ens": {"probabilistic": {"members": 2, "reliability": {"30dBZ": reliability}}}}))
    out = tmp_path / "misses.json"
    subprocess.run([sys.executable, "-m", "benchmarks.ensemble_misses", str(evaluation), "--json", str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=60)
    assert json.loads(out.read_text())["methods"] == {"ens": {"30dBZ": {"30 min": 0.667, "60 min": 0.667}}}
    bad = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_misses", str(tmp_path / "nope.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "nope.json: not a readable evaluation JSON" in bad.stderr


def test_drift_fits_one_beta_from_the_shifts_that_fit_the_storms_best(tmp_path: Path) -> None:
    from benchmarks.ensemble_drift import BETAS, drift_shifts, errors_at, fit_drift

    axis = np.arange(-10.0, 10.5, 1.0)
    shifts = np.array([(x, y) for y in axis for x in axis])
    acceleration = np.array([[2.0, 0.0], [0.0, -1.5]])
    # Errors that are least where a persisting change (beta 1) puts the rain at every lead.
    target = drift_shifts(1.0, acceleration, 3)  # (2, 3, 2)
    mae = np.linalg.norm(shifts[None, None] - target[:, :, None], axis=-1)  # (2 cases, 3 leads, S)
    beta, curve = fit_drift(mae, acceleration, axis)
    assert curve.shape == (len(BETAS), 3) and beta[-1] == 1.0 and BETAS[int(np.argmin(curve.sum(axis=1)))] == 1.0
    assert np.allclose(errors_at(mae, target, axis), 0.0, atol=0.51)

    out = tmp_path / "drift.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_drift", "--sequences", "2", "--grid", "32x48",
                           "--steps", "3", "--search", "4", "2", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert len(report["drift"]) == 3 and len(set(report["drift"])) == 1 and report["drift"][0] in BETAS
    assert np.array(report["mae_by_beta_dbz"]).shape == (len(BETAS), 3)
    oracle, none = report["mae_dbz"]["best_shift_oracle"], report["mae_dbz"]["no_shift"]
    assert all(o <= n + 1e-9 for o, n in zip(oracle, none, strict=True))
    bad = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_drift", "--search", "0", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--search" in bad.stderr


def test_ceiling_reads_the_best_any_combination_of_a_grid_reaches(tmp_path: Path) -> None:
    calibration = {
        "timestep_minutes": 6, "sequences": 2, "brier_thresholds_dbz": [20.0, 30.0],
        # rows: the deterministic forecast, then two combinations; two leads
        "grid_crps_dbz": [[1.0, 2.0], [0.8, 1.9], [0.95, 2.5]],
        "grid_spread_skill": [[0.0, 0.0], [0.7, 0.6], [0.9, 0.95]],
        "grid_brier": [[[0.1, 0.02], [0.2, 0.03]], [[0.08, 0.02], [0.15, 0.04]], [[0.09, 0.01], [0.2, 0.02]]],
        "steps_reference": {"crps_dbz": [0.9, 2.0], "spread_skill": [0.8, 0.7], "brier": [[0.1, 0.02], [0.2, 0.03]]},
    }
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration))
    out = tmp_path / "ceiling.json"
    subprocess.run([sys.executable, "-m", "benchmarks.ensemble_ceiling", str(path), "--json", str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=60)
    report = json.loads(out.read_text())
    assert report["max_spread_skill"] == [0.9, 0.95]
    assert report["max_spread_skill_below_steps"] == [0.7, 0.6]  # the dispersed row is above STEPS' CRPS
    assert report["best_bss_below_steps"] == {"20": [0.2, 0.25], "30": [0.0, -0.333]}
    assert report["lead_minutes"] == [6, 12]
    del calibration["steps_reference"]
    path.write_text(json.dumps(calibration))
    bad = subprocess.run([sys.executable, "-m", "benchmarks.ensemble_ceiling", str(path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "STEPS" in bad.stderr
