"""The forecaster's web page: ``GET /viewer`` and its static files under ``/viewer/static``.

Interface
---------
router      an ``APIRouter`` to include in the app once, without a prefix:
            ``GET /viewer`` -> ``index.html`` (``/viewer/`` redirects there);
            ``/viewer/static/{file}`` -> ``service/static/{file}`` (ES modules, CSS, vendor/);
            ``GET /viewer/config.json`` -> {stale_after_minutes, timestep_minutes, model_card};
            ``GET /viewer/model-card`` -> the served checkpoint's card (Markdown beside it), or 404.

The page is plain HTML, CSS and ES modules (no build step, no CDN) and talks only to the public
API, so this module touches neither Redis nor the product files; it reads two settings only, for
the page's staleness warning and its model card. The page's
links are relative (``viewer/static/...``; the modules find the API root from their own URL), so it
keeps working when a proxy mounts the API under a sub-path. The content-security policy pins every
fetch, script and image to the API's own origin: a forecaster's browser on an operations network
must not reach the internet because of this page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from service.deps import SettingsDep
from service.problems import Problem
from service.settings import ApiSettings
from workers import clock

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Same origin only. The map draws every frame from data into canvases (no image is fetched);
# blob: and data: stay allowed for images because OpenLayers may hand a canvas to an <img>.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
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


def model_card_path(settings: ApiSettings) -> Path:
    """The card of the served checkpoint: the Markdown file beside it (``radar_lagrangian.md``)."""
    return Path(settings.checkpoint).with_suffix(".md")


@router.get("/viewer/config.json", include_in_schema=False)
def viewer_config(settings: SettingsDep) -> dict[str, Any]:
    """The deployment facts the page shows: when the newest scan counts as stale, the cadence, a card.

    ``now`` and ``clock_speed`` are the stack's clock (workers/clock.py): a local stack run with a
    simulated clock is hours or days from the browser's, and the page judges a scan's age on the
    clock the workers judged it on.
    """
    return {
        "stale_after_minutes": settings.stale_after_minutes,
        "timestep_minutes": settings.timestep_minutes,
        "model_card": model_card_path(settings).is_file(),
        "now": clock.now(settings).isoformat(),
        "clock_speed": settings.clock_speed,
    }


@router.get("/viewer/model-card", include_in_schema=False)
def model_card(settings: SettingsDep) -> FileResponse:
    """The model card (its known limits), one click away from the source badge."""
    path = model_card_path(settings)
    if not path.is_file():
        raise Problem(404, "no-model-card", "the served checkpoint has no model card beside it")
    return FileResponse(path, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"})


# check_dir=False: an installed wheel without package data should fail on the request
# (404 for the file), not at import of the whole API.
router.mount("/viewer/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="viewer-static")
