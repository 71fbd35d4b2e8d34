"""The forecaster's web page: ``GET /viewer`` and its static files under ``/viewer/static``.

Interface
---------
router      an ``APIRouter`` to include in the app once, without a prefix:
            ``GET /viewer`` -> ``index.html`` (``/viewer/`` redirects there);
            ``/viewer/static/{file}`` -> ``service/static/{file}`` (ES modules, CSS).

The page is plain HTML, CSS and ES modules (no build step, no CDN) and talks only to the public
API, so this module reads no settings and touches neither Redis nor the product files. The page's
links are relative (``viewer/static/...``; the modules find the API root from their own URL), so it
keeps working when a proxy mounts the API under a sub-path. The content-security policy pins every
fetch, script and image to the API's own origin: a forecaster's browser on an operations network
must not reach the internet because of this page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Same origin only. blob: because the page fetches each PNG frame once and shows it from memory,
# so the animation never refetches and a missing frame is known (an HTTP status, not a broken icon).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter(tags=["viewer"])


@router.get("/viewer/", include_in_schema=False)
def viewer_slash(request: Request) -> RedirectResponse:
    """``/viewer/`` -> ``/viewer``: the page's relative links resolve against ``/viewer`` only."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{root}/viewer", status_code=308)


@router.get("/viewer", include_in_schema=False)
def viewer_page() -> FileResponse:
    """The viewer page (HTML); everything else it needs comes from the public API."""
    # no-cache: the page is tiny and must follow a redeploy at once (the modules it loads too).
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


# check_dir=False: an installed wheel without package data should fail on the request
# (404 for the file), not at import of the whole API.
router.mount("/viewer/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="viewer-static")
