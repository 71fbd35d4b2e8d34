"""bf16 against fp32 forecasts of the shipped model: skill parity on held-out synthetic storms."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.parity import CSI_TOLERANCE, MAD_TOLERANCE_DBZ, THRESHOLDS, compare_precisions
from model.checkpoint import load_checkpoint
from model.data.synthetic import SyntheticRadar
from model.network import precision

SHIPPED = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "radar_v2.pt"

torch.set_num_threads(1)


@pytest.mark.skipif(not precision.cpu_has_native_bf16(),
                    reason="hardware: this CPU has neither AVX512-BF16 nor AMX, so bf16 is emulated "
                           "(about 80x slower than fp32) and not what a worker would run")
def test_bf16_forecasts_keep_the_skill_of_fp32_on_held_out_storms():
    model, meta = load_checkpoint(SHIPPED)
    source = SyntheticRadar(seed=0, height=128, width=128, input_length=10, output_length=20,
                            test_sequences=16, scaling=meta["scaling"])
    result = compare_precisions(model, source.scaling, source.eval_batches("test", 8), 10, 20)
    assert result["sequences"] == 16 and result["lead_steps"] == list(range(1, 21))
    for name, _ in THRESHOLDS:
        fp32, bf16 = np.array(result["csi"]["fp32"][name]), np.array(result["csi"]["bf16"][name])
        assert fp32.shape == (20,)
        assert np.nanmax(np.abs(bf16 - fp32)) <= CSI_TOLERANCE, name
        assert np.all(np.array(result["abs_delta_csi"][name]) <= CSI_TOLERANCE), name
    assert np.array(result["csi"]["fp32"]["20dBZ"])[0] > 0.3  # a real skill at the first lead, not 0 = 0
    assert 0.0 < max(result["mad_dbz"]) <= MAD_TOLERANCE_DBZ  # the forecasts do differ, but little
    assert result["passed"]



def test_a_missing_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    from cli.parity import main

    assert main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
    missing = tmp_path / "none.pt"
    assert capsys.readouterr().err == f"python -m benchmarks.parity: error: {missing}: checkpoint file not found\n"
