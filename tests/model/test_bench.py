import json
import subprocess
import sys


def test_bench_writes_a_reproducible_json_report(tmp_path):
    out = tmp_path / "bench.json"
    for mode in ("inference", "train"):
        result = subprocess.run(
            [sys.executable, "-m", "model.cli", "bench", "--mode", mode, "--num-hidden", "8,8", "--grid", "16x24",
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
        [sys.executable, "-m", "model.cli", "bench", "--mode", "train", "--num-hidden", "8,8", "--grid", "16x16",
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
