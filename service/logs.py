"""Structured JSON logs (or escaped text lines) carrying the request id and the job id of the work in hand.

``request_id`` is set by the request middleware for every request, ``job_id`` by the routes once
they know which job a request is about (:func:`set_job_id`). Both live in one dict held by a context
variable: sync routes and dependencies run in a threadpool with a *copy* of the context, so a new
value set there would not reach the middleware's access log, but a change to the shared dict does.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from typing import Any

from workers.logformat import EscapingFormatter

request_context: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "request_context", default=None
)


def set_job_id(job_id: str) -> None:
    """Tag the rest of this request's log lines (and its access line) with ``job_id``."""
    context = request_context.get()
    if context is not None:
        context["job_id"] = job_id

# LogRecord attributes that are not user "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request/job ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in (request_context.get() or {}).items():
            if value is not None:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install one stderr handler on the root logger (idempotent: replaces our earlier handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nowcast_api", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._nowcast_api = True  # type: ignore[attr-defined]
    # Text lines escape control characters (a request path could otherwise forge lines); JSON does.
    text = EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    root.addHandler(handler)
    root.setLevel(level.upper())
