"""The trainer: presets, exact resume (also after a signal), run-directory safety, validation-only
model selection, progress outputs, the reverse-input update, and DDP on CPU with gloo."""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli import main as nowcast_main
from model import InputError
from model.checkpoint import load_checkpoint, read_checkpoint
from model.network import precision
from model.network.predrnn import PredRNN
from model.network.sampling import sampling_mask
from model.training.config import TrainConfig, TrainConfigError, build_source, check_source, load_config
from model.training.lagrangian import is_lagrangian_preset
from model.training.loop import train
from tests.model.training.test_train_sources import MovingSquares

REPO = Path(__file__).resolve().parents[3]
SOURCE = "tests.model.training.test_train_sources:MovingSquares"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_config(**sections: dict) -> TrainConfig:
    """A 2-layer, 4-channel v2 model on 8 x 8 squares: about 0.05 s per iteration on one core."""
    values: dict = {
        "name": "tiny",
        "seed": 3,
        "model": {"version": "v2", "num_hidden": [4, 4], "filter_size": 3, "patch_size": 2,
                  "height": 8, "width": 8, "input_length": 3, "output_length": 3},
        "data": {"source": SOURCE, "eval_batch_size": 4},
        "optim": {"batch_size": 4, "lr": 1e-3, "max_iterations": 8},
        "sampling": {"kind": "rss", "r_sampling_step_1": 2, "r_sampling_step_2": 6, "r_exp_alpha": 2.0},
        "run": {"display_interval": 2, "checkpoint_interval": 3, "eval_interval": 4, "test_at_end": False},
    }
    for section, overrides in sections.items():
        values[section] = {**values[section], **overrides} if isinstance(values[section], dict) else overrides
    return TrainConfig.from_dict(values, "tiny")


def training_rows(path: Path) -> list[dict[str, str]]:
    """History rows without the timing columns (those differ between runs)."""
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("iterations_per_s", "elapsed_s")}
                for row in csv.DictReader(handle)]


def assert_same_run_state(first: Path, second: Path) -> None:
    """Weights, Adam state, sampler and torch RNG of two last.pt files, bit for bit."""
    a, b = read_checkpoint(first), read_checkpoint(second)
    assert a["meta"]["iteration"] == b["meta"]["iteration"]
    assert a["meta"]["weights_sha256"] == b["meta"]["weights_sha256"]
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    opt_a, opt_b = a["train_state"]["optimizer"], b["train_state"]["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, slot in opt_a["state"].items():
        for name, value in slot.items():
            assert torch.equal(value, opt_b["state"][index][name]), (index, name)
    assert a["train_state"]["sampler_rng"] == b["train_state"]["sampler_rng"]
    assert torch.equal(a["train_state"]["torch_rng"], b["train_state"]["torch_rng"])
    assert a["train_state"]["scheduler"] == b["train_state"]["scheduler"]


# ------------------------------------------------------------------------------------------------
# Presets and config parsing
# ------------------------------------------------------------------------------------------------

CONFIGS = REPO / "model" / "training" / "configs"

# The authors' scripts (docs/model.md, Training recipes): version, lr, batch, schedule and its parameters, beta.
PAPER = [
    ("mnist_v2", "v2", 1e-4, 8, 64, {"kind": "rss", "r_sampling_step_1": 25000, "r_sampling_step_2": 50000,
                                     "r_exp_alpha": 2500.0}, 0.1),
    ("mnist_v1", "v1", 3e-4, 8, 64, {"kind": "ss", "sampling_stop_iter": 50000,
                                     "sampling_changing_rate": 2e-5, "sampling_start_value": 1.0}, None),
    ("kth_v2", "v2", 1e-4, 4, 128, {"kind": "rss", "r_sampling_step_1": 5000, "r_sampling_step_2": 50000,
                                    "r_exp_alpha": 2000.0}, 0.01),
    ("kth_v1", "v1", 3e-4, 4, 128, {"kind": "ss", "sampling_stop_iter": 50000,
                                    "sampling_changing_rate": 2e-5, "sampling_start_value": 1.0}, None),
]


@pytest.mark.parametrize(("name", "version", "lr", "batch", "width", "sampling", "beta"), PAPER)
def test_paper_presets_hold_the_authors_hyperparameters(name, version, lr, batch, width, sampling, beta) -> None:
    config = load_config(CONFIGS / f"{name}.toml")
    m = config.model
    assert (config.name, m.version, m.num_hidden, m.filter_size, m.stride, m.patch_size) == (
        name, version, [128, 128, 128, 128], 5, 1, 4)
    assert (m.layer_norm, m.height, m.width, m.channels, m.input_length, m.output_length) == (
        False, width, width, 1, 10, 10)
    assert (config.optim.lr, config.optim.batch_size, config.optim.max_iterations) == (lr, batch, 80000)
    assert (config.optim.lr_schedule, config.optim.reverse_input) == ("constant", True)
    for key, value in sampling.items():
        assert getattr(config.sampling, key) == value, key
    if beta is not None:
        assert m.decouple_beta == beta
    assert (config.run.display_interval, config.run.eval_interval, config.run.checkpoint_interval) == (
        100, 5000, 5000)


def test_every_preset_loads_and_the_cpu_ablations_differ_in_one_thing_each() -> None:
    # The Lagrangian trainer's presets have their own loader (tests/model/training/test_lagrangian.py).
    names = sorted(p.stem for p in CONFIGS.glob("*.toml") if not is_lagrangian_preset(p))
    assert {"mnist_v2", "mnist_v1", "kth_v2", "kth_v1", "mnist_v2_cpu", "mnist_v1_cpu",
            "mnist_v2_cpu_nodecouple", "mnist_v2_cpu_ss", "radar_v2", "radar_v2_cpu"} <= set(names)
    configs = {name: load_config(CONFIGS / f"{name}.toml") for name in names}
    for name, config in configs.items():
        assert config.name == name
        assert config.model.height % config.model.patch_size == 0
    base = configs["mnist_v2_cpu"].to_dict()
    nodecouple = configs["mnist_v2_cpu_nodecouple"].to_dict()
    ss = configs["mnist_v2_cpu_ss"].to_dict()
    assert nodecouple["model"]["decouple_beta"] == 0.0
    assert {**nodecouple, "name": base["name"], "model": {**nodecouple["model"], "decouple_beta": 0.1}} == base
    assert ss["sampling"]["kind"] == "ss"
    assert {**ss, "name": base["name"], "sampling": base["sampling"]} == base
    # CPU schedules are scaled to the run: RSS s1 / s2 at 30 % / 60 % of the iterations.
    cpu = configs["mnist_v2_cpu"]
    assert cpu.sampling.r_sampling_step_1 == round(0.3 * cpu.optim.max_iterations)
    assert cpu.sampling.r_sampling_step_2 == round(0.6 * cpu.optim.max_iterations)
    assert configs["radar_v2_cpu"].model.input_length == 10
    assert configs["radar_v2_cpu"].model.output_length == 10
    # radar_v2_cpu_3k is the shipped recipe trained longer: only the length and speed settings differ.
    short, long = configs["radar_v2_cpu"].to_dict(), configs["radar_v2_cpu_3k"].to_dict()
    assert long["optim"]["max_iterations"] == 3000
    assert {**long, "name": short["name"], "run": short["run"],
            "optim": {**long["optim"], "max_iterations": 1400}} == short


def test_preset_sources_fit_their_models_or_name_the_missing_data(tmp_path: Path) -> None:
    for name in ("mnist_v2", "mnist_v2_cpu", "mnist_v1_cpu", "radar_v2_cpu"):
        config = load_config(CONFIGS / f"{name}.toml")
        check_source(build_source(config.data), config.model)
    for name, missing in (("kth_v2", "data/kth"), ("radar_v2", "data/radar")):
        config = load_config(CONFIGS / f"{name}.toml")
        config.data.options["root"] = str(tmp_path / missing)
        expected = f"source '{config.data.source}' with options .*{tmp_path / missing}"
        with pytest.raises(TrainConfigError, match=expected):
            build_source(config.data)


@pytest.mark.parametrize("preset", ["mnist_v2_cpu", "radar_v2_cpu"])
def test_cpu_presets_run_end_to_end_on_their_real_sources_at_toy_size(tmp_path: Path, preset: str) -> None:
    """Two iterations of the preset's recipe, shrunk to 4 channels and 2 valid / test sequences."""
    config = load_config(CONFIGS / f"{preset}.toml")
    config.model.num_hidden = [4, 4]
    config.optim.max_iterations = 2
    config.data.eval_batch_size = 2
    config.data.options |= {"valid_sequences": 2, "test_sequences": 2}
    config.optim.batch_size = 2
    assert train(config, tmp_path / "run", device="cpu") == 0
    results = json.loads((tmp_path / "run" / "test_metrics.json").read_text())["results"]
    assert results["model"]["paper"]["sequences"] == 2
    assert len(results["model"]["paper"]["per_frame"]["mse"]) == 10
    assert ("nowcast" in results["model"]) == (preset == "radar_v2_cpu")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optim]\nlearning_rate = 1e-3\n", "[optim]: unknown key(s) ['learning_rate']; valid: "),
        ("[optim]\nbatch_size = 2.5\n", "[optim] batch_size: expected int, got 2.5"),
        ("[optim]\nlr_schedule = 'cosine'\n", "[optim] lr_schedule must be 'constant' or 'onecycle'"),
        ("[sampling]\nkind = 'always'\n", "[sampling]: sampling kind must be 'rss', 'ss' or 'none', not 'always'"),
        ("[model]\nnum_hidden = [8, 16]\n", "[model]: num_hidden must be non-empty with equal widths, got [8, 16]"),
        ("[run]\nprecision = 'fp16'\n", "[run] precision must be 'fp32', 'bf16' or 'auto'"),
        ("[run]\ncompile = 1\n", "[run] compile: expected bool, got 1"),
        ("epochs = 3\n", "unknown top-level key(s) ['epochs']"),
        ("[optim\n", "not valid TOML"),
    ],
)
def test_bad_presets_are_rejected_naming_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TrainConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: {message}")


def test_cli_reports_a_missing_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert nowcast_main(["train", "--config", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"nowcast train: error: {missing}: config file not found\n"
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# The iteration itself
# ------------------------------------------------------------------------------------------------


def test_one_iteration_is_forward_then_time_reversed_update_with_the_same_mask(tmp_path: Path) -> None:
    config = tiny_config(optim={"max_iterations": 1}, run={"eval_interval": 100})
    assert train(config, tmp_path / "run", device="cpu") == 0

    # The same iteration by hand: seed, batch 1, mask of iteration 1 from Generator(seed), two Adam steps.
    torch.manual_seed(config.seed)
    model = PredRNN(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    frames = torch.from_numpy(MovingSquares().train_batch(1, 4))
    mask = torch.from_numpy(sampling_mask(1, 4, 3, 6, config.sampling, np.random.default_rng(config.seed)))
    costs = []
    for sequence in (frames, torch.flip(frames, dims=[1])):
        optimizer.zero_grad()
        _, terms = model(sequence, mask)
        terms.total.backward()
        optimizer.step()
        costs.append(terms.total.item())

    trained, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, trained.state_dict()[key]), key
    row = training_rows(tmp_path / "run" / "history.csv")[0]
    assert float(row["loss"]) == pytest.approx((costs[0] + costs[1]) / 2, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Resume: bit for bit
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # v2, RSS, constant LR, reverse_input
        {"model": {"version": "v1"}, "sampling": {"kind": "ss", "sampling_stop_iter": 6,
                                                   "sampling_changing_rate": 0.15},
         "optim": {"lr_schedule": "onecycle", "reverse_input": False}},
        # bf16 autocast where this CPU has it natively (fp32 elsewhere), NHWC weights and Adam state.
        {"run": {"precision": "auto", "channels_last": True}},
    ],
    ids=["v2-rss-constant", "v1-ss-onecycle", "v2-auto-precision-channels-last"],
)
def test_n_iterations_equal_half_then_resume_then_half(tmp_path: Path, overrides: dict) -> None:
    config = tiny_config(**overrides)
    assert train(config, tmp_path / "straight", device="cpu") == 0
    assert train(config, tmp_path / "split", device="cpu", max_iterations=4) == 0
    assert read_checkpoint(tmp_path / "split" / "last.pt")["meta"]["iteration"] == 4
    assert train(config, tmp_path / "split", device="cpu", resume=True) == 0
    assert_same_run_state(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")
    straight = training_rows(tmp_path / "straight" / "history.csv")
    split = training_rows(tmp_path / "split" / "history.csv")
    assert [r["iteration"] for r in straight] == ["2", "4", "6", "8"]
    # The split run validated once more (at its stop at 4); the training columns agree row for row.
    assert [{**r, "valid_mse_per_frame": ""} for r in split] == [{**r, "valid_mse_per_frame": ""} for r in straight]


class _SignalsItself(MovingSquares):
    """Delivers a real signal to this process while drawing the batch of one iteration."""

    def __init__(self, signum: int, at_iteration: int, **options) -> None:
        super().__init__(**options)
        self.signum, self.at_iteration = signum, at_iteration

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        if iteration == self.at_iteration:
            os.kill(os.getpid(), self.signum)
        return super().train_batch(iteration, batch_size)


def test_sigint_finishes_the_iteration_saves_and_resume_is_exact(tmp_path: Path) -> None:
    config = tiny_config()
    previous = signal.getsignal(signal.SIGINT)
    code = train(config, tmp_path / "interrupted", device="cpu", source=_SignalsItself(signal.SIGINT, 5))
    assert code == 130
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert read_checkpoint(tmp_path / "interrupted" / "last.pt")["meta"]["iteration"] == 5
    assert train(config, tmp_path / "interrupted", device="cpu", resume=True) == 0
    assert train(config, tmp_path / "straight", device="cpu") == 0
    assert_same_run_state(tmp_path / "straight" / "last.pt", tmp_path / "interrupted" / "last.pt")


def _write_toml(path: Path, config: TrainConfig) -> Path:
    """A preset file for the CLI (only the fields tiny_config sets)."""
    values = config.to_dict()
    lines = [f'name = "{values["name"]}"', f"seed = {values['seed']}"]
    for section in ("model", "data", "optim", "sampling", "run"):
        lines.append(f"[{section}]")
        for key, value in values[section].items():
            if isinstance(value, dict):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
        if section == "data":
            lines.append("[data.options]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values["data"]["options"].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_sigterm_to_the_cli_exits_143_and_the_run_resumes_exactly(tmp_path: Path) -> None:
    config = tiny_config(data={"options": {"delay_s": 0.2}}, optim={"max_iterations": 400},
                         run={"display_interval": 1, "checkpoint_interval": 1000, "eval_interval": 1000})
    preset = _write_toml(tmp_path / "slow.toml", config)
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "--config", str(preset), "--out", str(run), "--device", "cpu"],
        cwd=REPO, env=_subprocess_env(), stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    assert process.stderr is not None
    for line in process.stderr:  # wait until it is really training
        if "iter 2/400" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 143, rest
    assert "SIGTERM received" in rest
    stopped_at = read_checkpoint(run / "last.pt")["meta"]["iteration"]
    assert 2 <= stopped_at < 400

    # Resume in-process to two iterations further; compare with one uninterrupted run to that point.
    # (The same preset, with the source passed in directly to skip its deliberate delay.)
    fast = MovingSquares()
    assert train(config, run, device="cpu", resume=True, max_iterations=stopped_at + 2, source=fast) == 0
    assert train(config, tmp_path / "straight", device="cpu", max_iterations=stopped_at + 2, source=fast) == 0
    assert_same_run_state(tmp_path / "straight" / "last.pt", run / "last.pt")


# ------------------------------------------------------------------------------------------------
# Run directory safety
# ------------------------------------------------------------------------------------------------


def test_an_existing_run_directory_is_never_overwritten_or_deleted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists and is not empty; pass --resume"):
        train(tiny_config(), run, device="cpu")
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    with pytest.raises(InputError, match=r"last.pt not found \(nothing to resume\)"):
        train(tiny_config(), run, device="cpu", resume=True)
    assert (run / "notes.txt").read_text() == "keep me"


def test_resume_refuses_settings_that_would_change_the_trajectory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(tiny_config(optim={"max_iterations": 2}), run, device="cpu") == 0
    with pytest.raises(InputError, match=r"trained with other settings: \['optim.lr', 'sampling.r_exp_alpha'\]"):
        train(tiny_config(optim={"lr": 5e-4}, sampling={"r_exp_alpha": 3.0}), run, device="cpu", resume=True)
    # Run length and intervals may change: the trajectory is the same.
    assert train(tiny_config(optim={"max_iterations": 3}, run={"display_interval": 1}), run,
                 device="cpu", resume=True) == 0
    assert read_checkpoint(run / "last.pt")["meta"]["iteration"] == 3


# ------------------------------------------------------------------------------------------------
# Model selection on the validation split; progress outputs
# ------------------------------------------------------------------------------------------------


class _RecordsSplits(MovingSquares):
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.requested: list[str] = []

    def eval_batches(self, split: str, batch_size: int):
        self.requested.append(split)
        return super().eval_batches(split, batch_size)


def test_best_checkpoint_is_chosen_on_valid_and_loads_alone(tmp_path: Path) -> None:
    source = _RecordsSplits()
    run = tmp_path / "run"
    assert train(tiny_config(run={"eval_interval": 2}), run, device="cpu", source=source) == 0
    assert source.requested == ["valid"] * 4  # iterations 2, 4, 6, 8; the test split is never touched
    rows = training_rows(run / "history.csv")
    valid = {int(r["iteration"]): float(r["valid_mse_per_frame"]) for r in rows if r["valid_mse_per_frame"]}
    assert sorted(valid) == [2, 4, 6, 8]
    best_iteration = min(valid, key=lambda k: valid[k])
    model, meta = load_checkpoint(run / "best.pt")
    assert isinstance(model, PredRNN)
    assert (meta["iteration"], meta["selected_on"]) == (best_iteration, "valid")
    assert meta["valid_mse_per_frame"] == valid[best_iteration]
    assert meta["preset"] == "tiny" and meta["scaling"]["kind"] == "identity"


def test_progress_log_history_csv_and_loss_curve(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="model.training.loop"):
        assert train(tiny_config(), run, device="cpu") == 0
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("iter 4/8 ")]
    assert len(progress) == 1
    assert " loss " in progress[0] and " mse " in progress[0] and " decouple " in progress[0]
    assert " it/s | ETA " in progress[0]
    with (run / "history.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header == ["iteration", "loss", "mse", "decouple", "lr", "encoder_p_gt", "decoder_p_gt",
                      "iterations_per_s", "elapsed_s", "valid_mse_per_frame"]
    rows = training_rows(run / "history.csv")
    # RSS of tiny_config: s1 = 2, s2 = 6. At iteration 4 the decoder P(GT) is 0.5 - 0.5 * 2 / 4.
    assert [r["decoder_p_gt"] for r in rows] == ["0.500000", "0.250000", "0.000000", "0.000000"]
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "iter 8/8" in (run / "train.log").read_text()
    assert json.loads((run / "config.json").read_text()) == tiny_config().to_dict()


def test_bf16_without_native_support_and_compile_on_cpu_fall_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # an AVX2-only CPU
    plain = tiny_config(optim={"max_iterations": 2})
    cuda_flags = copy.deepcopy(plain)
    cuda_flags.run.precision, cuda_flags.run.compile = "bf16", True
    with caplog.at_level(logging.WARNING, logger="model.training.loop"):
        assert train(cuda_flags, tmp_path / "flags", device="cpu") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "precision bf16: cpu has no native bf16 (emulated, far slower): training in fp32" in messages
    assert "torch.compile is a CUDA option here: running eagerly on cpu" in messages
    assert train(plain, tmp_path / "plain", device="cpu") == 0
    assert_same_run_state(tmp_path / "plain" / "last.pt", tmp_path / "flags" / "last.pt")


@pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="needs a CPU with AMX or AVX512-BF16")
def test_bf16_autocast_on_a_cpu_with_native_bf16_follows_the_fp32_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fp32 = tiny_config()
    fast = tiny_config(run={"precision": "bf16", "channels_last": True})
    assert train(fp32, tmp_path / "fp32", device="cpu") == 0
    with caplog.at_level(logging.INFO, logger="model.training.loop"):
        assert train(fast, tmp_path / "bf16", device="cpu") == 0
    assert any("cpu (bf16, channels_last, 1 threads)" in r.getMessage() for r in caplog.records)
    reference = [float(r["mse"]) for r in training_rows(tmp_path / "fp32" / "history.csv")]
    reduced = [float(r["mse"]) for r in training_rows(tmp_path / "bf16" / "history.csv")]
    assert reduced != reference  # autocast really ran: bf16 rounding changes the numbers...
    assert reduced == pytest.approx(reference, rel=0.05)  # ...but not the loss curve
    _, meta = load_checkpoint(tmp_path / "bf16" / "best.pt")
    assert meta["train_config"]["run"]["precision"] == "bf16"


def test_test_split_is_scored_once_at_the_end_with_best_pt(tmp_path: Path) -> None:
    source = _RecordsSplits()
    run = tmp_path / "run"
    assert train(tiny_config(run={"test_at_end": True}), run, device="cpu", source=source) == 0
    assert source.requested == ["valid", "valid", "test"]  # iterations 4 and 8, then the report
    document = json.loads((run / "test_metrics.json").read_text())
    best = read_checkpoint(run / "best.pt")["meta"]
    assert (document["split"], document["iteration"], document["selected_on"]) == ("test", best["iteration"], "valid")
    assert document["weights_sha256"] == best["weights_sha256"]
    assert set(document["results"]) == {"model", "persistence"}
    assert "nowcast" not in document["results"]["model"]  # frames without units: paper protocol only

    # The same numbers by hand, without the project's scorer: best.pt's forecasts of all 6 test
    # sequences, and the paper's per-frame MSE (prediction clipped to [0, 1], squared error summed
    # over the frame, averaged over the sequences) in plain numpy.
    def paper_mse(truth: np.ndarray, pred: np.ndarray) -> list[float]:
        clipped = np.clip(pred.astype(np.float64), 0.0, 1.0)
        return ((clipped - truth) ** 2).sum(axis=(2, 3, 4)).mean(axis=0).tolist()

    model, _ = load_checkpoint(run / "best.pt")
    test = np.concatenate(list(MovingSquares().eval_batches("test", 100)))
    forecast = model.forecast(torch.from_numpy(test[:, :3]), 3).numpy()
    paper = document["results"]["model"]["paper"]
    assert paper["per_frame"]["mse"] == pytest.approx(paper_mse(test[:, 3:], forecast), rel=1e-6)
    assert document["results"]["persistence"]["paper"]["per_frame"]["mse"] == pytest.approx(
        paper_mse(test[:, 3:], np.repeat(test[:, 2:3], 3, axis=1)), rel=1e-6)


def test_eval_only_scores_nowcast_skill_for_a_physical_source(tmp_path: Path) -> None:
    config = tiny_config(data={"options": {"radar": True}}, optim={"max_iterations": 2})
    preset = _write_toml(tmp_path / "radar.toml", config)
    run = tmp_path / "run"
    assert nowcast_main(["train", "--config", str(preset), "--out", str(run), "--device", "cpu", "--no-test"]) == 0
    assert not (run / "test_metrics.json").exists()
    # Without --config the run's own config.json is used.
    assert nowcast_main(["train", "--out", str(run), "--device", "cpu", "--eval-only"]) == 0
    results = json.loads((run / "test_metrics.json").read_text())["results"]
    for name in ("model", "persistence"):
        nowcast = results[name]["nowcast"]
        assert nowcast["lead_steps"] == [1, 2, 3]
        assert set(nowcast["csi"]) >= {"20dBZ", "30dBZ", "40dBZ"}
        assert len(nowcast["csi"]["30dBZ"]) == 3
    # Persistence of a 3 x 3 square of 60 dBZ moving one pixel diagonally per scan: at lead 1 it
    # overlaps its last position in 2 x 2 pixels, so 4 of 9 echo pixels are hit.
    assert results["persistence"]["nowcast"]["pod"]["40dBZ"][0] == pytest.approx(4 / 9, rel=1e-12)
    assert results["persistence"]["nowcast"]["far"]["40dBZ"][0] == pytest.approx(5 / 9, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# DistributedDataParallel on CPU (gloo, two processes through torchrun)
# ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_cpu_processes_keep_identical_replicas(tmp_path: Path) -> None:
    config = tiny_config(optim={"max_iterations": 4})
    preset = _write_toml(tmp_path / "tiny.toml", config)
    run = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         "-m", "cli", "train", "--config", str(preset), "--out", str(run), "--device", "cpu"],
        cwd=REPO, env=_subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    replicas = [line for line in result.stderr.splitlines() if "replica weights sha256 by rank" in line]
    assert len(replicas) == 1
    digests = json.loads(replicas[0].split("by rank: ")[1].replace("'", '"'))
    ddp = read_checkpoint(run / "last.pt")
    assert digests == [ddp["meta"]["weights_sha256"]] * 2
    assert ddp["meta"]["world_size"] == 2

    # Two ranks of batch 2 follow one process of batch 4 up to the order of the gradient sums.
    assert train(config, tmp_path / "single", device="cpu") == 0
    single = read_checkpoint(tmp_path / "single" / "last.pt")
    for key, tensor in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], tensor, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_autocast_and_compile_train_and_save_an_uncompiled_model(tmp_path: Path) -> None:
    fp32 = tiny_config(optim={"max_iterations": 4})
    fast = copy.deepcopy(fp32)
    fast.run.precision, fast.run.compile = "bf16", True
    assert train(fp32, tmp_path / "fp32", device="cuda") == 0
    assert train(fast, tmp_path / "bf16", device="cuda") == 0
    model, meta = load_checkpoint(tmp_path / "bf16" / "best.pt")  # plain keys: no "_orig_mod." prefix
    assert meta["train_config"]["run"]["precision"] == "bf16"
    last = {k: float(v) for k, v in training_rows(tmp_path / "bf16" / "history.csv")[-1].items() if k == "mse"}
    reference = {k: float(v) for k, v in training_rows(tmp_path / "fp32" / "history.csv")[-1].items() if k == "mse"}
    assert last["mse"] == pytest.approx(reference["mse"], rel=0.05)


@pytest.mark.parametrize(("flags", "expected"), [([], (True, "auto")), (["--no-channels-last", "--precision", "fp32"],
                                                                         (False, "fp32"))])
def test_cli_flags_override_the_presets_layout_and_precision(flags: list[str], expected: tuple) -> None:
    from cli.train import _resolve_config, build_parser

    args = build_parser().parse_args(["--config", str(CONFIGS / "mnist_v2_cpu.toml"), *flags])
    run = _resolve_config(args).run
    assert (run.channels_last, run.precision) == expected


def test_seed_flag_starts_another_trajectory_and_resume_keeps_to_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_toml(tmp_path / "tiny.toml", tiny_config(optim={"max_iterations": 2}))
    assert nowcast_main(["train", "--config", str(config), "--out", str(tmp_path / "s7"), "--seed", "7"]) == 0
    assert nowcast_main(["train", "--config", str(config), "--out", str(tmp_path / "s3")]) == 0
    assert json.loads((tmp_path / "s7" / "config.json").read_text())["seed"] == 7
    seven, three = read_checkpoint(tmp_path / "s7" / "last.pt"), read_checkpoint(tmp_path / "s3" / "last.pt")
    assert seven["meta"]["weights_sha256"] != three["meta"]["weights_sha256"]
    # Resuming the seed-7 run under the preset's seed 3 would change its trajectory: refused.
    assert nowcast_main(["train", "--config", str(config), "--out", str(tmp_path / "s7"), "--resume",
                         "--max-iterations", "3"]) == 2
    assert "trained with other settings: ['seed']" in capsys.readouterr().err
