"""``GET /verification``, the rolling CSI gauges and the source policy, over real Redis and real files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from tests.workers.verification_builders import direct_skill, make_product, shifted
from workers import verification

LEADS = 3
SLOTS = [FEED_START + dt.timedelta(minutes=30 + 6 * k) for k in range(3)]  # 12:30, 12:36, 12:42
NOW = SLOTS[-1] + dt.timedelta(hours=1)


def build(settings: ApiSettings, store: redis.Redis, *, model_shift: int = 1, extrapolation_shift: int = 3) -> dict:
    """Three slots, both streams, verified by a sweep; returns {stream: [records]}."""
    write_blob_feed(settings.feed_dir, FEED_START, 12)  # 12:00 .. 13:06
    made: dict[str, list] = {"model": [], "extrapolation": []}
    for slot in SLOTS:
        index = int((slot - FEED_START) / dt.timedelta(minutes=6))
        truth = blob_field(index + 1 + LEADS)[index + 1:]
        made["model"].append(make_product(settings, store, slot=slot, stream="model",
                                          dbz=shifted(truth, model_shift), source="predrnn"))
        made["extrapolation"].append(make_product(settings, store, slot=slot, stream="extrapolation",
                                                  dbz=shifted(truth, extrapolation_shift), source="extrapolation"))
    verification.sweep(settings, store, now=NOW)
    return made


def window(**extra: str) -> dict[str, str]:
    return {"since": "2026-03-01T12:00:00Z", "until": "2026-03-01T14:00:00Z", **extra}


def test_verification_equals_skillscores_on_the_same_files(client: TestClient, settings: ApiSettings,
                                                           store: redis.Redis) -> None:
    made = build(settings, store)
    body = client.get("/verification", params=window()).json()
    for stream, records in made.items():
        report = body["sources"][stream]
        assert report["slots"] == 3 and report["missing_scans"] == 0
        for item in report["leads"]:
            lead = item["lead_minutes"]
            expected = None
            for record in records:
                one = direct_skill(Path(record.products["netcdf"]), settings.feed_dir, [lead])
                expected = one if expected is None else expected.merge(one)
            computed = expected.compute()
            assert item["slots"] == 3
            for name in ("20dBZ", "30dBZ", "40dBZ"):
                got = item["scores"][name]
                assert got["hits"] == computed["contingency"]["hits"][name][0]
                assert got["false_alarms"] == computed["contingency"]["false_alarms"][name][0]
                for score in ("csi", "pod", "far", "bias"):
                    value = computed[score][name][0]
                    assert got[score] == pytest.approx(value, nan_ok=True) if value == value else got[score] is None
                assert got["fss"]["5"] == pytest.approx(computed["fss"][name]["5"][0])
    one = client.get("/verification", params=window(source="model", lead="12", threshold="30")).json()
    assert list(one["sources"]) == ["model"]
    assert [item["lead_minutes"] for item in one["sources"]["model"]["leads"]] == [12]
    assert list(one["sources"]["model"]["leads"][0]["scores"]) == ["30dBZ"]
    # The rolling gauges on /metrics: the last 24 h on the stack's clock, set here to an hour after the slots.
    import time

    clocked = settings.model_copy(update={"clock_wall_start": time.time(), "clock_sim_start": NOW.isoformat()})
    with TestClient(create_app(clocked)) as clocked_client:
        text = clocked_client.get("/metrics").text
        default = clocked_client.get("/verification").json()  # default window: the same 24 h
    csi = default["sources"]["extrapolation"]["leads"][0]["scores"]["20dBZ"]["csi"]
    line = 'nowcast_verification_csi{lead_minutes="6",source="extrapolation",threshold="20dBZ"}'
    assert f"{line} {csi}" in text or f"{line} {float(csi)!r}" in text, text[-2000:]


def test_bad_parameters_are_problems(client: TestClient) -> None:
    for params, code in (({"lead": "7"}, "invalid-lead"), ({"lead": "600"}, "invalid-lead"),
                         ({"threshold": "25"}, "invalid-threshold"), ({"since": "yesterday"}, "invalid-time"),
                         (window(since="2026-03-02T00:00:00Z"), "invalid-window")):
        response = client.get("/verification", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code


def test_best_policy_serves_the_source_with_the_higher_csi(settings: ApiSettings, store: redis.Redis) -> None:
    # Extrapolation is the better one here: the "model" is displaced by 4 pixels, extrapolation by 1.
    build(settings, store, model_shift=4, extrapolation_shift=1)
    best = settings.model_copy(update={"source_policy": "best", "policy_min_slots": 2, "policy_slots": 3})
    with TestClient(create_app(best)) as client:
        response = client.get("/nowcasts/latest")
        assert response.status_code == 200
        assert response.headers["nowcast-source"] == "extrapolation"
        assert "CSI at 30dBZ over the last 3 slots" in response.headers["nowcast-source-reason"]
        assert response.headers["content-location"].endswith("/nowcasts/20260301T1242Z?source=extrapolation")
        policy = client.get("/verification", params=window()).json()["policy"]
        assert policy["served"] == "extrapolation" and policy["csi"]["extrapolation"] > policy["csi"]["model"]
    too_few = settings.model_copy(update={"source_policy": "best", "policy_min_slots": 5, "policy_slots": 5})
    with TestClient(create_app(too_few)) as client:
        response = client.get("/nowcasts/latest")
        assert response.headers["nowcast-source"] == "model" and "fewer than the 5" in \
            response.headers["nowcast-source-reason"]


def test_a_failed_model_slot_falls_back_to_the_extrapolation_product(client: TestClient, settings: ApiSettings,
                                                                    store: redis.Redis) -> None:
    made = build(settings, store)
    from workers import jobs

    jobs.update_job(store, job_id=made["model"][-1].job_id, status="failed", message="boom")
    response = client.get("/nowcasts/latest")
    assert response.status_code == 200 and response.headers["nowcast-source"] == "extrapolation"
    assert "no model product for the newest slot" in response.headers["nowcast-source-reason"]
    assert client.get("/nowcasts/20260301T1242Z", params={"source": "extrapolation"}).status_code == 200


def test_verification_reports_the_ensemble_scores_of_ensemble_slots(client: TestClient, settings: ApiSettings,
                                                                     store: redis.Redis) -> None:
    import numpy as np

    from workers import skill_store

    write_blob_feed(settings.feed_dir, FEED_START, 12)
    made = []
    for slot in SLOTS:
        index = int((slot - FEED_START) / dt.timedelta(minutes=6))
        truth = blob_field(index + 1 + LEADS)[index + 1:]
        made.append(make_product(settings, store, slot=slot, stream="model", source="predrnn",
                                 dbz=np.stack([shifted(truth, s) for s in (0, 1, 3)])))
        make_product(settings, store, slot=slot, stream="extrapolation", dbz=shifted(truth, 3),
                     source="extrapolation")
    verification.sweep(settings, store, now=NOW)
    body = client.get("/verification", params=window()).json()
    for item in body["sources"]["model"]["leads"]:
        merged = None
        for record in made:
            stored = skill_store.read_record(store, job_id=record.job_id)
            one = skill_store.ensemble_of(stored.leads[item["lead_minutes"]])
            merged = one if merged is None else merged.merge(one)
        expected = merged.compute()
        ensemble = item["ensemble"]
        assert (ensemble["members"], ensemble["slots"]) == (3, 3)
        assert ensemble["crps_dbz"] == expected["crps_dbz"][0] and ensemble["crps_dbz"] > 0
        assert ensemble["brier"] == {name: expected["brier"][name][0] for name in ("20dBZ", "30dBZ", "40dBZ")}
        assert ensemble["reliability"]["20dBZ"]["observed"] == expected["reliability"]["20dBZ"]["observed"][0]
    assert all("ensemble" not in item for item in body["sources"]["extrapolation"]["leads"])
    one_threshold = client.get("/verification", params=window(threshold="30", lead="12")).json()
    (lead,) = one_threshold["sources"]["model"]["leads"]
    assert list(lead["ensemble"]["brier"]) == ["30dBZ"] and list(lead["ensemble"]["reliability"]) == ["30dBZ"]
