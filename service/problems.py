"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers has the same body::

    {"type": "urn:nowcast:problem:<code>", "title": "...", "status": 422, "detail": "...",
     "instance": "/forecast", "code": "<code>", "field": "steps" | null, "file": "scan_03.nc" | null}

``code`` repeats the last part of ``type`` so clients can switch on a short string; ``field`` names the
request field (form field, JSON pointer-ish dotted path, query or header) and ``file`` the uploaded
file that caused the problem, when there is one. Routes raise :class:`Problem`; the handlers here turn
it, Starlette's ``HTTPException``, request validation errors and unexpected exceptions into responses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:nowcast:problem:"

logger = logging.getLogger(__name__)

_RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "field", "file"})


class Problem(Exception):
    """An HTTP error with a stable ``code`` and, where it applies, the offending field or file.

    Parameters
    ----------
    status : int
        HTTP status code.
    code : str
        Short kebab-case identifier, e.g. ``"result-not-ready"``; becomes the problem ``type``.
    detail : str
        Human-readable explanation specific to this occurrence.
    field, file : str, optional
        The request field or uploaded file name the problem is about.
    headers : mapping, optional
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    extra : mapping, optional
        Additional members for the body (e.g. ``checks`` of a readiness failure).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        file: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.file = file
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        # An extra member must never replace a standard one (a job's "status" once replaced the
        # integer HTTP status that RFC 9457 and the OpenAPI schema promise).
        clash = set(self.extra) & _RESERVED_MEMBERS
        if clash:
            raise ValueError(f"problem extras may not replace standard members: {sorted(clash)}")

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document; ``instance`` is the request path."""
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.code,
            "title": _title(self.status),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance is not None:
            body["instance"] = instance
        if self.field is not None:
            body["field"] = self.field
        if self.file is not None:
            body["file"] = self.file
        body.update(self.extra)
        return body


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    """Render a :class:`Problem` as an ``application/problem+json`` response."""
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


# Starlette raises HTTPException for routing-level failures; give each a stable code.
_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "body-too-large",
    415: "unsupported-media-type",
}


def _location(loc: tuple[Any, ...]) -> str:
    """``("body", "frames", 3, 1)`` -> ``"frames[3][1]"``; the leading source is dropped."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or (str(loc[0]) if loc else "")


async def _problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


def _route_methods(routes: list[Any], path: str) -> set[str]:
    """Methods of every route whose path matches, looking inside included routers too."""
    methods: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI's wrapper of an included router: its prefix, then its routes
            prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            if path.startswith(prefix):
                methods |= _route_methods(inner.routes, path[len(prefix):] or "/")
            continue
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return methods


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names one route's only)."""
    methods = _route_methods(list(request.app.router.routes), request.url.path)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return [m for m in order if m in methods] + sorted(methods - set(order) - {"OPTIONS"}) + ["OPTIONS"]


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
        if request.method == "OPTIONS":  # what a client asks with OPTIONS is exactly the Allow list
            return Response(status_code=204, headers=headers)
    code = _HTTP_CODES.get(exc.status_code, f"http-{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    if exc.status_code == 413:
        detail = "the request body is larger than the configured limit"
    problem = Problem(exc.status_code, code, detail, headers=headers)
    return problem_response(problem, request.url.path)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _location(tuple(err.get("loc", ()))), "message": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    problem = Problem(
        422,
        "invalid-request",
        f"{first['field']}: {first['message']}" if first["field"] else first["message"],
        field=first["field"] or None,
        extra={"errors": errors},
    )
    return problem_response(problem, request.url.path)


async def _store_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    # Redis down, paused or refusing writes: the client can try again; nothing was accepted.
    logger.warning("job store or broker unavailable on %s %s: %s", request.method, request.url.path,
                   exc.__class__.__name__)
    seconds = getattr(request.app.state.settings, "retry_after_seconds", 5)
    problem = Problem(
        503,
        "queue-unavailable",
        f"the job store (Redis) does not answer ({exc.__class__.__name__}); try again later",
        headers={"Retry-After": str(seconds)},
    )
    return problem_response(problem, request.url.path)


async def _client_disconnect_handler(request: Request, exc: Exception) -> Response:
    # Nobody is left to read an answer; this is the client's doing, not an error of ours.
    logger.info("client disconnected before sending the whole body of %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    # Logged with the traceback; the client gets no internals, only the request id to quote.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    problem = Problem(500, "internal-error", "an unexpected error occurred; quote the X-Request-ID")
    return problem_response(problem, request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json."""
    app.add_exception_handler(Problem, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(redis.RedisError, _store_unavailable_handler)
    app.add_exception_handler(BrokerError, _store_unavailable_handler)
    app.add_exception_handler(ClientDisconnect, _client_disconnect_handler)
    app.add_exception_handler(Exception, _unexpected_handler)


def problem_openapi(description: str, example_code: str, status: int) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for a problem+json answer with one example."""
    return {
        "description": description,
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/ProblemDetails"},
                "example": {
                    "type": TYPE_PREFIX + example_code,
                    "title": _title(status),
                    "status": status,
                    "detail": description,
                    "code": example_code,
                },
            }
        },
    }
