"""A real ``celery worker`` (prefork pool) as a subprocess, for tests that need one.

    worker = WorkerProcess(redis_url=server.url, data_dir=tmp_path, env={"NOWCAST_CHECKPOINT": ...})
    worker.start()            # returns once the worker answers a control ping
    ...
    worker.kill_children()    # SIGKILL the pool child (the parent forks a new one)
    worker.kill_all()         # SIGKILL parent and child: the whole worker is gone
    worker.stop()             # warm shutdown (SIGTERM), SIGKILL after a timeout

The worker runs ``python -m celery -A workers.celery_app:app worker -P prefork -c 1`` from the
repository root with ``NOWCAST_REDIS_URL`` and ``NOWCAST_DATA_DIR`` set (plus ``env``), one thread
for torch/BLAS, and its output in ``log_path``. Only processes started here are ever signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` from /proc (Linux)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces; the ppid follows the closing one.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@dataclass
class WorkerProcess:
    redis_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    queues: str = "gpu,cpu"
    concurrency: int = 1
    beat: bool = False  # embed beat (-B): the schedule's housekeeping runs in this worker
    name: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "NOWCAST_REDIS_URL": self.redis_url,
            "NOWCAST_DATA_DIR": str(self.data_dir),
            "NOWCAST_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        return env

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            self.log_path = self.data_dir / f"worker-{self.name}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker",
            "-P", "prefork", "-c", str(self.concurrency), "-Q", self.queues, "-n", self.nodename,
            "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]
        if self.beat:
            (self.data_dir / "beat").mkdir(parents=True, exist_ok=True)
            command.append("-B")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.environment(), stdout=log,
                                            stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the worker answers ``control.ping`` (its consumer is then running)."""
        from workers.celery_app import create_app
        from workers.settings import WorkerSettings

        client = create_app(WorkerSettings(redis_url=self.redis_url, data_dir=self.data_dir))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.log_text()[-4000:]}")
                try:
                    if client.control.ping(destination=[self.nodename], timeout=0.5):
                        return
                except Exception:  # broker not reachable yet, or no reply: keep waiting
                    time.sleep(0.2)
            raise RuntimeError(f"worker {self.nodename} did not answer ping in {timeout} s:\n"
                               f"{self.log_text()[-4000:]}")
        finally:
            client.close()

    def child_pids(self) -> list[int]:
        return [] if self.process is None else _children_of(self.process.pid)

    def kill_all(self) -> None:
        """SIGKILL the parent and its children at once: the whole worker (or its host) is gone."""
        if self.process is None:
            return
        children = self.child_pids()
        self.process.kill()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def kill_children(self) -> list[int]:
        """SIGKILL the pool child(ren): what the OOM killer or a segfault does."""
        pids = self.child_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        children = self.child_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in children:  # a child orphaned by a hard kill of the parent
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
