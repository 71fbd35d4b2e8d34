"""The API's reference pages, served from the package: ``GET /docs`` (Swagger UI), ``GET /redoc`` (ReDoc).

FastAPI's defaults load Swagger UI and ReDoc from a CDN, so on an operations network without
internet both pages were blank. Here both libraries are vendored under ``service/static/vendor/``
(versions and licences in docs/api.md) and each page is a static HTML file whose only script is a
same-origin module that starts the library on ``openapi.json``: no inline script, so the pages get a
strict same-origin Content-Security-Policy like the viewer.

ReDoc needs two relaxations, both kept to the minimum: ``style-src 'unsafe-inline'`` (its
styled-components insert ``<style>`` elements at run time) and ``worker-src blob:`` (its search
index runs in a Web Worker built from a blob). Swagger UI draws its icons as ``data:`` SVGs.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.routes.viewer import STATIC_DIR

SWAGGER_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
REDOC_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; worker-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

router = APIRouter(include_in_schema=False)


def _page(name: str, policy: str) -> FileResponse:
    return FileResponse(
        STATIC_DIR / "docs" / name,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/docs")
def swagger_ui() -> FileResponse:
    """Swagger UI over ``/openapi.json``, from the vendored ``swagger-ui-dist`` bundle."""
    return _page("swagger.html", SWAGGER_POLICY)


@router.get("/redoc")
def redoc() -> FileResponse:
    """ReDoc over ``/openapi.json``, from the vendored ``redoc`` standalone bundle."""
    return _page("redoc.html", REDOC_POLICY)
