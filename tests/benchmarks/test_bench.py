import json
import subprocess
import sys


def test_bench_writes_a_reproducible_json_report(tmp_path):
    out = tmp_path / "bench.json"
    for mode in ("inference", "train"):
        result = subprocess.run(
            [sys.executable, "-m", "cli", "bench", "--mode", mode, "--num-hidden", "8,8", "--grid", "16x24",
             "--input-length", "3", "--output-length", "2", "--batch", "2", "--repeats", "2", "--threads", "1",
             "--json", str(out)],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(out.read_text())
        assert report["mode"] == mode and report["grid"] == [16, 24] and report["batch"] == 2
        assert report["config"]["num_hidden"] == [8, 8] and report["machine"]["threads"] == 1
        assert len(report["result"]["seconds"]) == 2 and report["result"]["median_s"] > 0
        assert report["command"].startswith("nowcast bench --mode " + mode)
    assert report["result"]["sequences_per_s"] > 0


def test_baseline_is_timed_in_the_same_run_and_the_speedup_reported(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--mode", "train", "--num-hidden", "8,8", "--grid", "16x16",
         "--input-length", "3", "--output-length", "2", "--batch", "2", "--repeats", "2", "--threads", "1",
         "--channels-last", "--precision", "auto", "--baseline", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    baseline = report["baseline"]
    assert baseline["precision"] == "fp32" and not baseline["channels_last"] and not baseline["fused"]
    assert report["channels_last"] and report["precision"] in ("fp32", "bf16")
    assert len(baseline["result"]["seconds"]) == 2
    speedup = report["result"]["speedup_over_baseline"]
    assert speedup == baseline["result"]["median_s"] / report["result"]["median_s"]
    assert "x the baseline" in result.stderr


def test_inference_levers_are_timed_against_the_baseline(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--mode", "inference", "--num-hidden", "8,8", "--grid", "20x28",
         "--input-length", "3", "--output-length", "2", "--repeats", "2", "--threads", "1",
         "--fused", "--channels-last", "--baseline", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["fused"] and report["channels_last"] and report["precision"] == "fp32"
    assert report["result"]["speedup_over_baseline"] > 0 and report["result"]["gflop"] > 0


def test_bench_predict_times_whole_processes_of_each_precision(tmp_path):
    out = tmp_path / "predict.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_predict", "--num-hidden", "8,8", "--grid", "16x16",
         "--input-length", "3", "--steps", "2", "--repeats", "1", "--variants", "fp32,bf16", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["predict_command"].startswith("nowcast predict --checkpoint $TMP/model.ckpt-0 --official")
    assert set(report["results"]) == {"fp32", "bf16"} and report["machine"]["cpu_count"] >= 1
    fp32, bf16 = report["results"]["fp32"], report["results"]["bf16"]
    assert len(fp32["wall_s"]) == 1 and fp32["median_forecast_s"] > 0 and fp32["speedup_whole_process"] == 1.0
    assert bf16["speedup_whole_process"] == fp32["median_wall_s"] / bf16["median_wall_s"]
    assert fp32["max_abs_diff_vs_fp32"] == 0.0 and 0.0 < bf16["max_abs_diff_vs_fp32"] < 0.05
