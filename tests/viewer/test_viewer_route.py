"""The viewer's route: the page, its static modules, the redirect, and the no-internet rule."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.routes.viewer import CONTENT_SECURITY_POLICY, STATIC_DIR, router

REFERENCE = re.compile(r'(?:href|src)="([^"]+)"')
IMPORT = re.compile(r'from\s+"(\./[^"]+)"')


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_page_is_html_with_a_same_origin_policy(client: TestClient) -> None:
    response = client.get("/viewer")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="viewer/static/viewer.js"></script>' in response.text


def test_trailing_slash_redirects_to_the_page(client: TestClient) -> None:
    response = client.get("/viewer/", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/viewer"


def test_redirect_keeps_a_proxy_prefix() -> None:
    app = FastAPI()
    app.include_router(router)
    response = TestClient(app, root_path="/radar").get("/viewer/", follow_redirects=False)
    assert response.headers["location"] == "/radar/viewer"


# Browsers refuse ES modules served as anything but a JavaScript type; the MIME table of the host
# decides which of the two JavaScript spellings StaticFiles sends.
JAVASCRIPT = {"text/javascript", "application/javascript"}


@pytest.mark.parametrize(
    ("name", "media_types"),
    [
        ("viewer.js", JAVASCRIPT),
        ("api.js", JAVASCRIPT),
        ("scale.js", JAVASCRIPT),
        ("viewer.css", {"text/css"}),
        ("favicon.svg", {"image/svg+xml"}),
    ],
)
def test_static_files_are_served_with_their_media_type(
    client: TestClient, name: str, media_types: set[str]
) -> None:
    response = client.get(f"/viewer/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in media_types
    assert response.content == (STATIC_DIR / name).read_bytes()


def test_unknown_static_file_is_404(client: TestClient) -> None:
    assert client.get("/viewer/static/missing.js").status_code == 404


def test_everything_the_page_references_exists() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    referenced = REFERENCE.findall(html)
    assert referenced == ["viewer/static/favicon.svg", "viewer/static/vendor/ol/ol.css", "viewer/static/viewer.css",
                          "viewer/static/vendor/ol/ol.js", "viewer/static/vendor/proj4/proj4.js",
                          "viewer/static/viewer.js"]
    for path in referenced:
        assert (STATIC_DIR / path.removeprefix("viewer/static/")).is_file(), path
    # Every vendored library comes with its licence.
    for library in sorted(p for p in (STATIC_DIR / "vendor").iterdir() if p.is_dir()):
        assert any(f.name.startswith("LICENSE") for f in library.iterdir()), library
    for module in sorted(p.name for p in STATIC_DIR.glob("*.js")):
        for imported in IMPORT.findall((STATIC_DIR / module).read_text()):
            assert (STATIC_DIR / imported).is_file(), f"{module} imports missing {imported}"


def test_no_static_file_reaches_outside_the_api() -> None:
    # No CDN, no web fonts, no analytics: an operations network has no internet. The SVG namespace
    # is a name, not a fetch.
    # Vendored libraries (vendor/) name their authors' sites in comments; they are checked in the
    # browser instead, where every request off the API's origin is refused.
    own = [p for p in STATIC_DIR.rglob("*") if p.is_file() and "vendor" not in p.relative_to(STATIC_DIR).parts]
    for path in sorted(own):
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        text = text.replace('const SVG = "http://www.w3.org/2000/svg";', "")  # skill.js: createElementNS
        assert re.search(r"(https?:)?//[a-z0-9-]+(\.[a-z0-9-]+)+", text) is None, path


def test_config_carries_the_stacks_clock(tmp_path) -> None:
    """A stack with a simulated clock: the page is told its time and speed, to judge a scan's age on it."""
    import datetime as dt
    import time

    from service.settings import ApiSettings

    def config(**clock: object) -> dict:
        app = FastAPI()
        app.include_router(router)
        app.state.settings = ApiSettings(api_keys=["viewer-test-key-0123456789"], data_dir=tmp_path, **clock)
        return TestClient(app).get("/viewer/config.json").json()

    simulated = config(clock_speed=60.0, clock_wall_start=time.time() - 10.0, clock_sim_start="2026-03-01T12:00:00Z")
    assert simulated["clock_speed"] == 60.0
    elapsed = dt.datetime.fromisoformat(simulated["now"]) - dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    assert dt.timedelta(minutes=10) <= elapsed < dt.timedelta(minutes=15)  # 10 s and more, 60 times faster
    wall = config()
    assert wall["clock_speed"] == 1.0
    assert abs(dt.datetime.fromisoformat(wall["now"]).timestamp() - time.time()) < 60
