"""The real-rain cases as a sequence source for ``nowcast evaluate``."""

from __future__ import annotations

import numpy as np
import pytest

from model.data import get_method
from model.data.evolving import REAL_RAIN_FLOWS, real_rain_case
from model.io.odim import read_odim
from model.io.units import dbz_to_model


def test_the_cases_are_the_flows_of_the_tests_one_per_batch():
    source = get_method("real_rain")()
    batches = list(source.eval_batches("test", 8))
    assert [flow for flow, _ in source.cases] == list(REAL_RAIN_FLOWS)
    assert [b.shape for b in batches] == [(1, 26, 1, 128, 128), (1, 26, 1, 160, 160)]
    context, truth = real_rain_case(read_odim(source_path()).dbz[0], next(iter(REAL_RAIN_FLOWS)), 6, 20)
    assert np.array_equal(batches[0][0, :, 0], dbz_to_model(np.concatenate([context, truth]), source.scaling))


def test_all_growths_add_no_growth_and_reversed():
    source = get_method("real_rain")(growths="all")
    growths = [g for _, g in source.cases]
    assert source.split_sizes == {"test": 6}
    assert growths[2:4] == [0.0, 0.0] and growths[4] == -growths[0]


def test_it_has_no_training_or_validation_split():
    source = get_method("real_rain")()
    with pytest.raises(ValueError, match="evaluation only"):
        source.train_batch(0, 1)
    with pytest.raises(ValueError, match="only a 'test' split"):
        next(source.eval_batches("valid", 1))
    with pytest.raises(ValueError, match="growths"):
        get_method("real_rain")(growths="some")


def source_path():
    from model.data.composite import DEFAULT_COMPOSITE

    return DEFAULT_COMPOSITE
