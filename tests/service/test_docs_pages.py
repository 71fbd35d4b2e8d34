"""/docs and /redoc come from the package: every script and style they load is served by the API.

FastAPI's defaults pointed both pages at a CDN, so without internet they were blank. The browser
test (tests/viewer) opens both pages with every non-local request refused.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.routes.docs import REDOC_POLICY, SWAGGER_POLICY

REFERENCE = re.compile(r'(?:href|src)="([^"]+)"')
EXTERNAL = re.compile(r"(https?:)?//[a-z0-9-]+(\.[a-z0-9-]+)+")


@pytest.mark.parametrize(("path", "policy", "library"), [
    ("/docs", SWAGGER_POLICY, "viewer/static/vendor/swagger-ui/swagger-ui-bundle.js"),
    ("/redoc", REDOC_POLICY, "viewer/static/vendor/redoc/redoc.standalone.js"),
])
def test_reference_pages_load_only_local_files(client: TestClient, path: str, policy: str, library: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == policy
    assert EXTERNAL.search(page.text) is None, page.text
    referenced = REFERENCE.findall(page.text)
    assert library in referenced
    for reference in referenced:
        served = client.get(f"/{reference}")
        assert served.status_code == 200, reference
        if reference.endswith(".js") and "/vendor/" not in reference:
            assert EXTERNAL.search(served.text) is None, reference  # our own init modules
    # The OpenAPI document the page starts on is served too, and no CDN page hides elsewhere.
    assert client.get("/openapi.json").status_code == 200
    assert "/docs" not in client.get("/openapi.json").json()["paths"]


def test_openapi_description_says_what_an_input_must_contain(client: TestClient) -> None:
    description = client.get("/openapi.json").json()["info"]["description"]
    for needed in ("equivalent_reflectivity_factor", "rainfall_rate", "grid_mapping", "units", "time",
                   "curl ", "-F file=@"):
        assert needed in description, needed
