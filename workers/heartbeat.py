"""The lease of a running job, renewed from a background thread while the task works.

A job's record stays ``running`` whatever happens to the process running it; only the lease tells
a live worker from a lost one. :class:`Heartbeat` renews the lease (and the per-job lock) every
third of ``lease_s``; when the process dies, or loses Redis, renewals stop and the lease runs out,
after which ``workers.housekeeping.requeue_stalled`` queues the job again.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import redis

from workers import jobs

log = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(r, job_id=..., owner=..., lease_s=30): work()`` keeps the job's lease alive."""

    def __init__(self, r: redis.Redis, *, job_id: str, owner: str, lease_s: float) -> None:
        self.r, self.job_id, self.owner, self.lease_s = r, job_id, owner, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def beat(self) -> bool:
        try:
            return jobs.heartbeat(self.r, job_id=self.job_id, owner=self.owner, lease_s=self.lease_s)
        except redis.RedisError as exc:  # the lease runs out if this persists: that is the point
            log.warning("job %s: lease not renewed (%s)", self.job_id, exc.__class__.__name__)
            return False

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
