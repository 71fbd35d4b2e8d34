"""Pure ASGI middleware: request id + access log + metrics, and the request body limit.

Both are pure ASGI rather than ``BaseHTTPMiddleware`` so exceptions are not wrapped and streamed
bodies are not buffered.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_context
from service.metrics import ApiMetrics
from service.problems import Problem, problem_response

logger = logging.getLogger("service.access")

# A client-supplied id is echoed only when it looks like an id, so logs cannot be injected into.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Assigns ``X-Request-ID``, logs one JSON access line and counts the request in metrics."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        context: dict[str, str | None] = {"request_id": request_id, "job_id": None}
        token = request_context.set(context)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # The route template, not the raw path, keeps label cardinality bounded.
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], template, status, elapsed)
            logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "route": template,
                },
            )
            request_context.reset(token)


class BodyLimitMiddleware:
    """413 problem+json for a body above ``max_bytes``: at once by ``Content-Length``, else while streaming.

    A chunked upload has no ``Content-Length``, so bytes are also counted as they arrive; crossing
    the limit raises Starlette's ``HTTPException(413)``, which FastAPI re-raises from body parsing
    and the problem handler renders.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(
                Problem(
                    413,
                    "body-too-large",
                    f"the request body has {declared} bytes, above the limit of {self.max_bytes}",
                ),
                scope["path"],
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"the request body is above the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)
