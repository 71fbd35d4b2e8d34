"""SIGINT / SIGTERM during training: finish the iteration, save ``last.pt``, exit 128 + signal number."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import torch
import torch.distributed as dist

from model.training.distributed import DistContext
from model.training.state import LAST

log = logging.getLogger(__name__)


class StopRequest:
    """Records SIGINT / SIGTERM instead of dying mid-step; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing this iteration, saving %s", signal.Signals(signum).name, LAST)

    def __enter__(self) -> StopRequest:
        # Handlers can only be installed from the main thread (e.g. not inside a worker thread).
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def agreed(self, context: DistContext, device: torch.device) -> int | None:
        """The signal number if any rank was signalled (ranks must stop at the same iteration)."""
        if not context.enabled:
            return self.signum
        flag = torch.tensor([self.signum or 0], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None
