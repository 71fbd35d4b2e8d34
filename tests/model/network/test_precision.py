"""model/network/precision.py: what 'auto' resolves to, and that bf16 autocast really changes the dtype."""

from __future__ import annotations

import pytest
import torch

from model.network import precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_only_where_the_cpu_has_it_natively(monkeypatch: pytest.MonkeyPatch, native: bool,
                                                          expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.resolve("auto", CPU) == expected
    assert precision.resolve("fp32", CPU) == "fp32"
    assert precision.resolve("bf16", CPU) == "bf16"  # an explicit request is kept (bench measures it)
    assert precision.resolve("auto", torch.device("cuda")) == "bf16"


def test_an_unknown_precision_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        precision.resolve("fp16", CPU)


def test_autocast_runs_convolutions_in_bf16_and_fp32_leaves_them_alone() -> None:
    conv = torch.nn.Conv2d(2, 3, 3)
    x = torch.rand(1, 2, 5, 5)
    with precision.autocast("bf16", CPU):
        assert conv(x).dtype == torch.bfloat16
    with precision.autocast("fp32", CPU):
        assert conv(x).dtype == torch.float32
