"""model/verification/report.py on real (tiny) nowcast train runs: curve comparison and the scores table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.report import main
from model import InputError
from model.training.loop import train
from tests.model.training.test_train import tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    paths = {"plain": root / "plain", "nhwc": root / "nhwc", "v1": root / "v1"}
    assert train(tiny_config(run={"test_at_end": True}), paths["plain"], device="cpu") == 0
    assert train(tiny_config(run={"test_at_end": True, "channels_last": True}), paths["nhwc"], device="cpu") == 0
    v1 = tiny_config(model={"version": "v1"}, run={"test_at_end": True})
    v1.name = "tiny_v1"
    assert train(v1, paths["v1"], device="cpu") == 0
    return paths


def test_curves_of_two_runs_row_by_row(runs: dict[str, Path], tmp_path: Path) -> None:
    out, png = tmp_path / "curves.json", tmp_path / "curves.png"
    assert main(["curves", str(runs["plain"]), str(runs["nhwc"]), "--labels", "nchw,nhwc", "--upto", "6",
                 "--window", "2", "--json", str(out), "--png", str(png)]) == 0
    document = json.loads(out.read_text())
    assert document["iterations"] == [2, 4, 6] and document["labels"] == ["nchw", "nhwc"]
    plain, nhwc = document["mse"]
    history = [line.split(",") for line in (runs["plain"] / "history.csv").read_text().splitlines()[1:]]
    assert plain == [float(row[2]) for row in history if row[2]][:3]
    difference = document["relative_difference_smoothed"]
    # Same seed, same data: the memory layout only changes float rounding.
    assert 0 <= difference["mean"] <= difference["max"] < 1e-3
    assert nhwc == pytest.approx(plain, rel=1e-3)
    assert document["valid_mse_per_frame"]["4"][0] == pytest.approx(document["valid_mse_per_frame"]["4"][1], rel=1e-3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_table_lists_each_run_and_persistence_from_test_metrics(runs: dict[str, Path], tmp_path: Path) -> None:
    out, md, png = tmp_path / "scores.json", tmp_path / "scores.md", tmp_path / "scores.png"
    assert main(["scores", str(runs["plain"]), str(runs["v1"]), "--json", str(out), "--md", str(md),
                 "--png", str(png)]) == 0
    scores = json.loads(out.read_text())["scores"]
    assert list(scores) == ["plain", "v1", "persistence"]  # run directories
    assert scores["v1"]["preset"] == "tiny_v1"
    metrics = json.loads((runs["v1"] / "test_metrics.json").read_text())
    assert scores["v1"]["paper"] == metrics["results"]["model"]["paper"]
    assert scores["persistence"]["paper"] == metrics["results"]["persistence"]["paper"]
    rows = md.read_text().splitlines()
    assert len(rows) == 5 and rows[4].startswith("| persistence | - |")
    # V2 logs |cos(dC, dM)| (the last rows of its history, averaged); v1 has no such term.
    history = [line.split(",") for line in (runs["plain"] / "history.csv").read_text().splitlines()[1:]]
    logged = [float(row[3]) for row in history if row[3]]
    assert scores["plain"]["final_decouple"] == pytest.approx(sum(logged) / len(logged))
    assert scores["v1"]["final_decouple"] is None and rows[3].endswith("| - |")
    mse = f"{metrics['results']['model']['paper']['mean']['mse']:.1f}"
    assert f"| v1 | {metrics['iteration']} |" in rows[3] and mse in rows[3]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_runs_with_one_directory_name_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="two runs named 'plain'"):
        main(["scores", str(runs["plain"]), str(runs["plain"]), "--json", str(tmp_path / "x.json")])


def test_a_run_without_results_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"test_metrics.json: not found"):
        main(["scores", str(tmp_path), "--json", str(tmp_path / "x.json")])
    result = subprocess.run([sys.executable, "-m", "cli", "report", "curves", str(tmp_path), str(tmp_path),
                             "--json", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"nowcast report: error: {tmp_path / 'history.csv'}: not found "
                                     f"(is {tmp_path} a nowcast train run directory?)")
