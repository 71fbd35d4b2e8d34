"""The sequence-source registry: every name resolves (any case) to a factory; bad names raise."""

from __future__ import annotations

import pytest

from model.data import _SOURCES, get_method
from model.data.composite import RealRainCases
from model.data.kth import KTH
from model.data.moving_mnist import MovingMNIST, MovingMNISTFiles
from model.data.radar import RadarScans
from model.data.synthetic import SyntheticRadar

EXPECTED = {
    "moving_mnist": MovingMNIST,
    "moving_mnist_files": MovingMNISTFiles,
    "kth": KTH,
    "synthetic_radar": SyntheticRadar,
    "radar": RadarScans,
    "real_rain": RealRainCases,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_names_resolve_in_any_case(name: str) -> None:
    assert get_method(name) is EXPECTED[name]
    assert get_method(name.upper()) is EXPECTED[name]


def test_registry_lists_exactly_the_sources() -> None:
    assert set(_SOURCES) == set(EXPECTED)


def test_bad_names_raise() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        get_method(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown sequence source 'sevir'; valid names: \\['kth', "):
        get_method("sevir")


def test_generated_sources_follow_the_protocol() -> None:
    source = get_method("synthetic_radar")(height=16, width=24, input_length=2, output_length=3,
                                           valid_sequences=1, test_sequences=1)
    for attribute in ("input_length", "total_length", "channels", "height", "width", "scaling"):
        assert hasattr(source, attribute)
    assert source.train_batch(0, 1).shape == (1, 5, 1, 16, 24)
    assert next(source.eval_batches("test", 4)).shape == (1, 5, 1, 16, 24)
