"""A private stack for fault injection: redis-server, uvicorn with the API, Celery workers.

Each part is a real process on loopback that the caller can pause, kill and restart::

    with FaultStack(Path(tmp), checkpoint=..., env={...}) as stack:
        stack.redis.pause(); ...; stack.redis.resume()
        stack.api.kill(); stack.api.start()
        stack.workers[0].kill_children()

Only processes started here are ever signalled. Used by ``benchmarks/bench_faults.py`` and the
fault tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """One child process with its log file; ``start`` waits until ``ready()`` holds."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Proc:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def ready(self) -> bool:
        return True

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self.resume()
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        self.resume()
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisProc(Proc):
    port: int = 0

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.3) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class ApiProc(Proc):
    url: str = ""

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class WorkerProc(Proc):
    def child_pids(self) -> list[int]:
        if self.process is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rfind(")") + 2:].split()[1]) == self.process.pid:
                    children.append(int(entry.name))
        return children

    def ready(self) -> bool:
        return "ready." in self.log_text()

    def kill_children(self) -> list[int]:
        pids = self.child_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids


@dataclass
class FaultStack:
    """Redis (AOF, appendfsync always), one API and ``workers`` Celery workers on ``root``."""

    root: Path
    checkpoint: Path
    api_key: str = "fault-suite-key-0123456789"
    env: dict[str, str] = field(default_factory=dict)
    workers_count: int = 1
    beat: bool = True
    redis: RedisProc = field(init=False)
    api: ApiProc = field(init=False)
    workers: list[WorkerProc] = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data_dir, logs = self.root / "data", self.root / "logs"
        for folder in (data_dir / "beat", logs, self.root / "redis"):
            folder.mkdir(parents=True, exist_ok=True)
        redis_port, api_port = free_port(), free_port()
        binary = shutil.which("redis-server") or "redis-server"
        self.redis = RedisProc("redis", [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "yes", "--appendfsync", "always",
                                         "--dir", str(self.root / "redis")], dict(os.environ), logs / "redis.log")
        self.redis.port = redis_port
        env = {**os.environ, "NOWCAST_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
               "NOWCAST_DATA_DIR": str(data_dir), "NOWCAST_CHECKPOINT": str(self.checkpoint),
               "NOWCAST_API_KEYS": self.api_key, "NOWCAST_DEVICE": "cpu", "NOWCAST_PRECISION": "fp32",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **self.env}
        self.api = ApiProc("api", [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
                                   "--host", "127.0.0.1", "--port", str(api_port), "--no-access-log"],
                           env, logs / "api.log")
        self.api.url = f"http://127.0.0.1:{api_port}"
        self.workers = []
        for index in range(self.workers_count):
            command = [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker", "-P", "prefork",
                       "-c", "1", "-Q", "gpu,cpu", "-n", f"fault{index}@%h", "--loglevel", "INFO",
                       "--without-mingle", "--without-gossip"]
            if self.beat and index == 0:
                command.append("-B")
            self.workers.append(WorkerProc(f"worker{index}", command, env, logs / f"worker{index}.log"))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def __enter__(self) -> FaultStack:
        self.redis.start()
        self.api.start()
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for proc in [*self.workers, self.api, self.redis]:
            proc.stop()
