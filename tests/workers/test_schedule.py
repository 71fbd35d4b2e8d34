"""The beat schedule and the Celery configuration, as pure functions of a frozen clock."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from workers import jobs
from workers.celery_app import TASK_ROUTES, celery_config, create_app
from workers.schedule import beat_schedule, expires_seconds, fire_times, floor_to_step, slot_for
from workers.settings import WorkerSettings

UTC = dt.UTC
HOUR = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_beat_fires_ten_times_an_hour_with_the_right_slots_and_ids() -> None:
    """Step a frozen clock through an hour, minute by minute, and ask the real crontab when it is due."""
    clock = {"now": HOUR}
    entry = beat_schedule(timestep_minutes=6, latency_offset_minutes=2, nowfun=lambda: clock["now"])
    schedule = entry["nowcast-every-slot"]["schedule"]
    last_run = HOUR - dt.timedelta(minutes=1)
    fired = []
    for minute in range(60):
        clock["now"] = HOUR + dt.timedelta(minutes=minute, seconds=1)
        if schedule.is_due(last_run).is_due:
            fired.append(clock["now"].replace(second=0))
            last_run = clock["now"]
    assert [f"{t:%H:%M}" for t in fired] == ["12:02", "12:08", "12:14", "12:20", "12:26", "12:32", "12:38",
                                             "12:44", "12:50", "12:56"]
    assert fired == fire_times(HOUR, HOUR + dt.timedelta(hours=1), timestep_minutes=6, latency_offset_minutes=2)
    slots = [slot_for(t, timestep_minutes=6, latency_offset_minutes=2) for t in fired]
    assert [jobs.nowcast_job_id(s) for s in slots] == [
        "nowcast-20260301T1200Z", "nowcast-20260301T1206Z", "nowcast-20260301T1212Z", "nowcast-20260301T1218Z",
        "nowcast-20260301T1224Z", "nowcast-20260301T1230Z", "nowcast-20260301T1236Z", "nowcast-20260301T1242Z",
        "nowcast-20260301T1248Z", "nowcast-20260301T1254Z"]
    assert entry["nowcast-every-slot"]["task"] == "workers.tasks.nowcast"
    assert entry["nowcast-every-slot"]["options"] == {"queue": "gpu", "expires": 300}


def test_a_late_or_early_trigger_still_serves_its_own_slot() -> None:
    fire = dt.datetime(2026, 3, 1, 12, 8, tzinfo=UTC)  # beat's trigger for the 12:06 scan
    expires = dt.timedelta(seconds=expires_seconds(6))
    for moment in (fire - dt.timedelta(seconds=29), fire, fire + dt.timedelta(seconds=90), fire + expires):
        assert slot_for(moment, timestep_minutes=6, latency_offset_minutes=2) == dt.datetime(2026, 3, 1, 12, 6,
                                                                                              tzinfo=UTC)
    # The next trigger (12:14) is never confused with this one.
    assert slot_for(fire + dt.timedelta(minutes=6), timestep_minutes=6, latency_offset_minutes=2).minute == 12


def test_other_cadences_and_offsets_and_midnight() -> None:
    assert [f"{t:%H:%M}" for t in fire_times(HOUR, HOUR + dt.timedelta(minutes=30), timestep_minutes=5,
                                               latency_offset_minutes=0)] == [
        "12:00", "12:05", "12:10", "12:15", "12:20", "12:25"]
    late_evening = dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    assert floor_to_step(late_evening, 6) == dt.datetime(2026, 3, 1, 23, 54, tzinfo=UTC)
    just_after = dt.datetime(2026, 3, 2, 0, 1, tzinfo=UTC)  # the 00:00 trigger fires at 00:02
    assert slot_for(just_after, timestep_minutes=6, latency_offset_minutes=2) == dt.datetime(2026, 3, 1, 23, 54,
                                                                                              tzinfo=UTC)
    assert expires_seconds(6) < 6 * 60 and expires_seconds(5) == 240


def test_celery_config_has_the_reliability_settings(tmp_path: Path) -> None:
    settings = WorkerSettings(redis_url="redis://127.0.0.1:1/2", data_dir=tmp_path)
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == "redis://127.0.0.1:1/2"
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["task_acks_late"] is True and config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_cancel_long_running_tasks_on_connection_loss"] is True
    assert config["task_soft_time_limit"] < config["task_time_limit"] < \
        config["broker_transport_options"]["visibility_timeout"]
    assert config["result_backend_transport_options"] == config["broker_transport_options"]
    assert config["task_track_started"] is True and config["result_expires"] == 7 * 24 * 3600
    assert TASK_ROUTES["workers.tasks.forecast"] == {"queue": "gpu"}
    assert config["beat_schedule_filename"] == str(tmp_path / "beat" / "celerybeat-schedule")
    app = create_app(settings)
    assert app.conf.task_acks_late is True and app.conf.broker_url == "redis://127.0.0.1:1/2"


def test_celery_app_reads_settings_lazily_and_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from workers.celery_app import app\n"
        "assert 'torch' not in sys.modules\n"
        "os.environ['NOWCAST_REDIS_URL'] = 'redis://127.0.0.1:9/5'\n"  # set after import: still used
        "assert app.conf.broker_url == 'redis://127.0.0.1:9/5', app.conf.broker_url\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_on_the_stack_clock_beat_fires_once_per_simulated_slot() -> None:
    """At speed 60 (nowcast up --speed 60) a slot lasts 6 wall seconds; beat fires at slot + 2 simulated min."""
    from workers.schedule import SlotSchedule

    wall_start = dt.datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    sim_start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the feed's clock, months away from the wall's
    clock = {"wall": wall_start}
    schedule = SlotSchedule(timestep_minutes=6, latency_offset_minutes=2, speed=60.0,
                            wall_start=wall_start.timestamp(), sim_start=sim_start, nowfun=lambda: clock["wall"])
    last_run = wall_start
    fired = []
    for tenth in range(600):  # one wall minute in 0.1 s steps = one simulated hour
        clock["wall"] = wall_start + dt.timedelta(seconds=tenth / 10)
        state = schedule.is_due(last_run)
        assert 0 < state.next <= 6.0
        if state.is_due:
            fired.append(schedule.simulated(clock["wall"]))
            last_run = clock["wall"]
    assert [f"{t:%H:%M:%S}" for t in fired] == [f"12:{m:02d}:00" for m in range(2, 60, 6)]
    assert [slot_for(t, timestep_minutes=6, latency_offset_minutes=2) for t in fired] == [
        sim_start + dt.timedelta(minutes=6 * k) for k in range(10)]
    import pickle

    assert pickle.loads(pickle.dumps(schedule)) == schedule
    entry = beat_schedule(timestep_minutes=6, latency_offset_minutes=2,
                          clock=(60.0, wall_start.timestamp(), sim_start))
    assert entry["nowcast-every-slot"]["options"] == {"queue": "gpu", "expires": 5.0}
    assert entry["extrapolation-every-slot"]["options"]["queue"] == "cpu"
    assert entry["verify"]["task"] == "workers.tasks.verify"


def test_the_feed_check_runs_every_few_seconds_and_is_dropped_when_stale(tmp_path: Path) -> None:
    entries = beat_schedule(timestep_minutes=6, latency_offset_minutes=2, feed_poll_seconds=2.5)
    watch = entries["nowcast-when-scan-lands"]
    assert watch["task"] == "workers.tasks.watch_feed" and watch["schedule"] == dt.timedelta(seconds=2.5)
    assert watch["options"] == {"queue": "cpu", "expires": 2.5}
    assert entries["nowcast-every-slot"]["task"] == "workers.tasks.nowcast"  # the watchdog stays
    assert "nowcast-when-scan-lands" not in beat_schedule(timestep_minutes=6, latency_offset_minutes=2)
    config = celery_config(WorkerSettings(redis_url="redis://127.0.0.1:1/2", data_dir=tmp_path))
    assert config["beat_schedule"]["nowcast-when-scan-lands"]["schedule"] == dt.timedelta(seconds=2)
