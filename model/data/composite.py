"""The real-rain cases as a sequence source: an observed composite set in motion by known flows.

source = get_method("real_rain")(path=ODIM file, growths="given" | "all")
source.eval_batches("test", batch_size) -> (1, context + 20, 1, size, size) in [0, 1], one case each

Each case is one flow of :data:`model.data.evolving.REAL_RAIN_FLOWS` applied to the composite
(by default the MeteoSwiss ODIM file in tests/data/, about 1 km pixels): 6 scans of context and
20 to forecast. ``growths="given"`` is the flows with their own growth (2 cases, the ones the
default model is tested on); ``"all"`` adds each flow with no growth and with the growth reversed
(6 cases). There is no training split: these cases judge a model, never teach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from model.data.evolving import REAL_RAIN_FLOWS, real_rain_case
from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model

DEFAULT_COMPOSITE = Path(__file__).resolve().parents[2] / "tests" / "data" / "RFO_example_h5_grid.h5"
GROWTHS = ("given", "all")


class RealRainCases:
    """The composite cases, in a fixed order: flows as listed, then (for "all") no growth, reversed."""

    channels = 1
    timestep_minutes = 6

    def __init__(self, *, path: str | Path = DEFAULT_COMPOSITE, growths: str = "given", input_length: int = 6,
                 output_length: int = 20, scaling: Scaling = DEFAULT_SCALING) -> None:
        from model.io.odim import read_odim

        if growths not in GROWTHS:
            raise ValueError(f"growths must be one of {GROWTHS}, got {growths!r}")
        field = read_odim(Path(path)).dbz[0]
        self.input_length, self.total_length = int(input_length), int(input_length + output_length)
        self.scaling: Scaling = dict(scaling)  # type: ignore[assignment]
        self.cases: list[tuple[str, float]] = []
        for factor in (1.0,) if growths == "given" else (1.0, 0.0, -1.0):
            self.cases += [(flow, factor * spec[3]) for flow, spec in REAL_RAIN_FLOWS.items()]
        self._dbz = [np.concatenate(real_rain_case(field, flow, self.input_length, int(output_length),
                                                   growth_db_per_scan=growth))
                     for flow, growth in self.cases]
        self.height, self.width = self._dbz[0].shape[1:]  # of the first case; the others may differ
        self.split_sizes = {"test": len(self._dbz)}

    def train_batch(self, iteration: int, batch_size: int) -> np.ndarray:
        raise ValueError("the real-rain cases are for evaluation only; they have no training split")

    def eval_batches(self, split: str, batch_size: int) -> Iterator[np.ndarray]:
        if split != "test":
            raise ValueError(f"the real-rain cases have only a 'test' split, not {split!r}")
        # One case a batch: the flows' windows differ in size (128 and 160 pixels).
        for dbz in self._dbz:
            yield dbz_to_model(dbz, self.scaling)[None, :, None]
