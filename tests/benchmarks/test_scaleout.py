"""benchmarks.scaleout on a toy load: two separate workers, a pool child SIGKILLed mid-run, and the
report's counts: every domain-slot done, none lost, none done twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import scaleout

pytestmark = pytest.mark.integration


def test_two_workers_and_a_sigkill_lose_nothing(tmp_path: Path) -> None:
    out = tmp_path / "scaleout.json"
    scaleout.main(["--domains", "2", "--grid", "32x48", "--workers", "2", "--slots", "3", "--period", "2",
                   "--kill-run", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert report["grid"] == [32, 48] and report["speed"] == 180.0
    assert run["workers"] == 2 and run["domain_slots"] == 6 and run["jobs"] == 12
    assert run["completed_domain_slots"] == 6 and run["products"] == 12
    assert run["not_successful"] == [] and run["done_twice"] == []
    assert run["killed"] is not None and run["killed"]["at_slot"] == 1
    assert run["slots_per_minute"] > 0 and run["latency_s"]["p50"] <= run["latency_s"]["max"]
