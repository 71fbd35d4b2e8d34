"""The viewer's domain switcher and an ensemble's probability layer, in headless chromium.

A second API process (the real app under uvicorn, its own Redis database and data directory) serves a
domains file of three radar domains: ``coast`` (the default, 24 x 32 cells on UTM zone 32), ``harbour``
(40 x 20 cells on a Lambert conformal conic projection: its feed is written by the synthetic feed
from the file's ``projection`` key) and ``lost`` (its feed directory does not exist: unhealthy). Each
healthy domain has one successful slot whose product is written by ``model.io.netcdf.write_forecast``
into the product store the API serves: coast's deterministic, harbour's an ensemble of four members
(M, L, H, W), so its probabilities are 0, 25, 50, 75 or 100 %.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import xarray as xr
from playwright.sync_api import Browser, Page, expect

from model.io import netcdf as radar_io
from tests.utils.api_process import start_api, stop_api
from tests.utils.redis_server import RedisServer, free_port
from tests.viewer.conftest import ARTIFACTS
from tests.viewer.test_palette import scale_colours
from tests.viewer.test_viewer_browser import screen_colours
from tests.workers.conftest import FEED_START, blob_field, write_blob_feed
from workers import domains as dm
from workers import jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBABILITY_COLOURS = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in scale_colours("PROBABILITY_SCALE")]  # 10 .. 90 %
DB = 12  # the viewer package's second database (the main stack uses 11)
LCC = "+proj=lcc +lat_0=54 +lon_0=-3 +lat_1=50 +lat_2=58 +datum=WGS84"
COAST_SLOT = FEED_START + dt.timedelta(minutes=18)  # 12:18, coast's newest scan
HARBOUR_SLOT = FEED_START + dt.timedelta(minutes=12)  # 12:12: another slot, so the lists differ
LEADS = [6, 12]
MEMBERS = 4
DOMAINS_FILE = f"""\
default = "coast"

[[domain]]
id = "coast"
title = "Coast composite"
feed_dir = "feeds/coast"

[[domain]]
id = "harbour"
title = "Harbour radar"
grid = "40x20"
projection = "{LCC}"

[[domain]]
id = "lost"
title = "Lost radar"
feed_dir = "feeds/lost-radar"
"""


@dataclass
class DomainStack:
    base_url: str
    coast_id: str
    harbour_id: str
    harbour_product: Path  # the ensemble's netCDF

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]


def _finish_slot(store: redis.Redis, product_dir: Path, *, job_id: str, domain: dm.Domain, slot: dt.datetime,
                 dbz: np.ndarray, sequence: radar_io.RadarSequence, members: int) -> Path:
    """A slot's product as a worker leaves it: forecast.nc (members > 1: an ensemble), observed.nc, the record."""
    product_dir.mkdir(parents=True)
    netcdf = radar_io.write_forecast(
        product_dir / "forecast.nc", dbz, reference_time=np.datetime64(slot.replace(tzinfo=None), "s"),
        lead_minutes=LEADS, grid=sequence, model="PredRNN-v2", model_version="test", checkpoint_sha256="test",
        source="predrnn", input_times=sequence.times, **({"ensemble_seed": 5, "ensemble_perturbation": "test"}
                                                          if members > 1 else {}))
    observed = radar_io.write_observed(product_dir / "observed.nc", sequence, count=2)
    jobs.create_job(store, job_id=job_id, kind="nowcast", steps=len(LEADS), input_path=None, model_version="test",
                    slot=slot, members=members, seed=5 if members > 1 else 0, domain=domain.id,
                    domain_index=not domain.default)
    jobs.update_job(store, job_id=job_id, status="successful", progress=100, source="predrnn",
                    finished=jobs.utc_now_iso(), reference_time=slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    products={"netcdf": str(netcdf), "observed": str(observed), "png": {}, "obs_png": {}},
                    model="PredRNN-v2", timestep_minutes=6)
    return netcdf


@pytest.fixture(scope="module")
def domain_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DomainStack]:
    from service.settings import ApiSettings
    from stack.feed import FrameSource

    tmp = tmp_path_factory.mktemp("viewer-domains")
    data_dir = tmp / "var"
    (tmp / "domains.toml").write_text(DOMAINS_FILE)
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    api_key = secrets.token_urlsafe(24)
    settings = ApiSettings(api_keys=[api_key], data_dir=data_dir, domains=tmp / "domains.toml")
    coast, harbour, _lost = dm.domains_for(settings).items
    # coast: a real feed directory of UTM scans; harbour: the synthetic feed on the file's projection.
    coast_scans = radar_io.read_scans(write_blob_feed(dm.feed_dir_of(settings, coast), FEED_START, 4))
    harbour_times = [FEED_START + dt.timedelta(minutes=6 * k) for k in range(4)]
    harbour_scans = radar_io.read_scans(
        FrameSource(harbour.grid, seed=3, first_slot=FEED_START, projection=harbour.projection)
        .write(dm.feed_dir_of(settings, harbour), harbour_times))
    coast_id = dm.nowcast_job_id(coast, COAST_SLOT)
    harbour_id = dm.nowcast_job_id(harbour, HARBOUR_SLOT)
    _finish_slot(store, settings.product_dir(coast_id), job_id=coast_id, domain=coast, slot=COAST_SLOT,
                 dbz=coast_scans.dbz[-2:], sequence=coast_scans, members=1)
    # Four members: two moving cells (on harbour's grid) shifted by -9, -3, +3 and +9 dBZ.
    base = blob_field(2, harbour.grid)
    members = np.stack([base + 6.0 * (m - 1.5) for m in range(MEMBERS)]).astype(np.float32)
    harbour_product = _finish_slot(store, settings.product_dir(harbour_id), job_id=harbour_id, domain=harbour,
                                   slot=HARBOUR_SLOT, dbz=members, sequence=harbour_scans, members=MEMBERS)
    env = {
        **os.environ, "NOWCAST_REDIS_URL": url, "NOWCAST_DATA_DIR": str(data_dir),
        "NOWCAST_DOMAINS": str(tmp / "domains.toml"), "NOWCAST_API_KEYS": api_key,
        "NOWCAST_DEVICE": "cpu", "NOWCAST_LOG_FORMAT": "text",
        # The stack's clock at 12:20 on the feeds' day: coast and harbour are fresh, lost has no feed.
        "NOWCAST_CLOCK_WALL_START": str(time.time()), "NOWCAST_CLOCK_SIM_START": "2026-03-01T12:20:00Z",
        "NOWCAST_CHECKPOINT": str(tmp / "none.pt"), "OMP_NUM_THREADS": "1",
    }
    port = free_port()
    api = start_api(env, port, tmp / "api.log")
    try:
        yield DomainStack(base_url=f"http://127.0.0.1:{port}", coast_id=coast_id, harbour_id=harbour_id,
                          harbour_product=harbour_product)
    finally:
        stop_api(api)
        store.flushdb()
        store.close()


@pytest.fixture()
def page(browser: Browser, domain_stack: DomainStack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def wait_until(page: Page, expression: str, timeout: float = 20.0) -> None:
    """Poll a page expression until it is true (page.evaluate: the viewer's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        page.wait_for_timeout(100)


MAP_STATE = """(() => { const m = document.getElementById('map').fieldMap;
  return {proj4: m.field.grid_mapping.proj4, code: m.view.getProjection().getCode(), extent: m.field.extent,
          width: m.field.width, height: m.field.height, codes: Array.from(m.field.codes),
          center: m.view.getCenter()}; })()"""


def test_domain_switcher_changes_field_projection_slots_and_url(page: Page, domain_stack: DomainStack) -> None:
    listed = {d["id"]: d for d in domain_stack.get("/domains").json()["domains"]}
    assert [listed[i]["health"]["ok"] for i in ("coast", "harbour", "lost")] == [True, True, False]
    assert "+proj=lcc" in listed["harbour"]["projection"]["proj4"] and listed["harbour"]["grid"] == [40, 20]
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{domain_stack.base_url}/viewer")
    expect(page.locator("#product-job")).to_have_text(domain_stack.coast_id, timeout=20_000)
    expect(page.locator("#domain-picker")).to_be_visible()
    expect(page.locator("#domain-select")).to_have_value("coast")
    # The unhealthy domain is marked with its reason and cannot be picked.
    lost = page.locator("#domain-select option[value=lost]")
    expect(lost).to_have_text("Lost radar \u2014 unavailable: feed directory lost-radar does not exist")
    expect(lost).to_be_disabled()
    expect(page.locator("#domain-select option[value=harbour]")).to_be_enabled()
    expect(page.locator("#map")).to_have_attribute("data-drawn", "field")
    expect(page.locator("#slots-list li[data-job-id]")).to_have_count(1)
    expect(page.locator("#slots-list .run-time")).to_have_text("12:18Z")
    expect(page.locator("#layer-picker")).to_be_hidden()  # deterministic: no probability layer
    coast = page.evaluate(MAP_STATE)
    assert coast["proj4"].startswith("+proj=utm +zone=32") and (coast["height"], coast["width"]) == (24, 32)

    page.locator("#domain-select").select_option("harbour")
    expect(page.locator("#product-job")).to_have_text(domain_stack.harbour_id, timeout=20_000)
    assert "domain=harbour" in page.url
    expect(page.locator("#slots-list .run-time")).to_have_text("12:12Z")
    expect(page.locator("#product-domain")).to_contain_text("Harbour radar (harbour) \u00b7 40 \u00d7 20 cells")
    wait_until(page, f"document.getElementById('map').fieldMap.field?.jobID === '{domain_stack.harbour_id}'")
    harbour = page.evaluate(MAP_STATE)
    assert harbour["proj4"].startswith("+proj=lcc") and (harbour["height"], harbour["width"]) == (40, 20)
    assert harbour["code"] != coast["code"] and harbour["extent"] != coast["extent"]
    assert harbour["codes"] != coast["codes"][: len(harbour["codes"])]
    # The view is in the new projection, centred on harbour's grid (54 N 3 W: near the Irish Sea).
    west, south, east, north = harbour["extent"]
    assert west <= harbour["center"][0] <= east and south <= harbour["center"][1] <= north
    # The coasts around it are projected into Lambert conformal conic too.
    expect(page.locator("#map")).to_have_attribute("data-geography", re.compile(r"^[1-9]\d*$"))
    assert any("/domains/harbour/nowcasts" in u for u in requests)
    assert any("/domains/harbour/verification" in u for u in requests)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "domain-harbour.png"))

    # The address opens the same domain.
    page.goto(page.url)
    expect(page.locator("#product-job")).to_have_text(domain_stack.harbour_id, timeout=20_000)
    expect(page.locator("#domain-select")).to_have_value("harbour")


def _product_probability(path: Path, threshold: float, lead_index: int) -> np.ndarray:
    """(H, W) P(reflectivity >= threshold) of the product, rows north to south as the map draws them."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        variable = ds[radar_io.PROBABILITY]
        index = [float(t) for t in ds[variable.dims[0]].values].index(threshold)
        values = np.asarray(variable.isel({variable.dims[0]: index, variable.dims[1]: lead_index}).values)
        y = np.asarray(ds["y"].values)
    return values[::-1] if y.size > 1 and y[1] > y[0] else values


def test_probability_layer_of_an_ensemble_slot(page: Page, domain_stack: DomainStack) -> None:
    info = domain_stack.get(f"/jobs/{domain_stack.harbour_id}").json()
    assert info["ensemble"] == {"members": MEMBERS, "seed": 5, "thresholds_dbz": [20.0, 30.0, 40.0]}
    page.goto(f"{domain_stack.base_url}/viewer?domain=harbour")
    expect(page.locator("#product-job")).to_have_text(domain_stack.harbour_id, timeout=20_000)
    expect(page.locator("#layer-picker")).to_be_visible()
    options = page.locator("#layer-select option")
    expect(options).to_have_text(["Reflectivity: ensemble mean (dBZ)", "Probability P(\u226520 dBZ)",
                                  "Probability P(\u226530 dBZ)", "Probability P(\u226540 dBZ)"])
    page.locator("#layer-select").select_option("p30")
    expect(page.locator("#legend-scale")).to_have_attribute("data-quantity", "probability")
    expect(page.locator("#legend-title")).to_contain_text("\u2265 30 dBZ")
    expect(page.locator("#legend-scale .dbz")).to_have_text([f"{p} %" for p in range(10, 100, 10)])
    expect(page.locator("#palette-picker")).to_be_hidden()
    wait_until(page, "document.getElementById('map').fieldMap.field?.quantity === 'probability'")
    page.locator("#frame-slider").fill("0")  # +6 min, paused: probability frames are forecast only
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#lead-time")).to_have_text("+6 min")
    expect(page.locator("#frame-slider")).to_have_attribute("max", str(len(LEADS) - 1))
    wait_until(page, "(() => { const f = document.getElementById('map').fieldMap.field; return "
                           "f?.quantity === 'probability' && f.lead_minutes === 6 && f.threshold_dbz === 30; })()")
    probability = _product_probability(domain_stack.harbour_product, 30.0, 0)
    for wanted in (0.5, 0.75):
        rows, columns = np.nonzero(np.isclose(probability, wanted))
        assert rows.size > 0, f"no cell at {wanted}"
        row, column = int(rows[rows.size // 2]), int(columns[rows.size // 2])
        x, y = page.evaluate(f"document.getElementById('map').fieldMap.pixelOfCell({row}, {column})")
        box = page.locator("#map").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + x, box["y"] + y)
        expect(page.locator("#readout")).to_contain_text(f"P(>=30 dBZ) {round(wanted * 100)} %")
        expect(page.locator("#readout")).to_have_attribute("data-cell", f"{row},{column}")
        # The cell is drawn in its class colour (75 % is in the 70 % class), painted in the page from the data.
        page.mouse.move(0, 0)
        expected = tuple(int(PROBABILITY_COLOURS[round(wanted * 100) // 10 - 1][i:i + 2], 16) for i in (1, 3, 5))
        assert expected in screen_colours(page, box["x"] + x, box["y"] + y)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "probability-layer.png"))
    # Back to reflectivity: the ensemble mean in dBZ, the palettes again.
    page.locator("#layer-select").select_option("reflectivity")
    expect(page.locator("#legend-scale")).to_have_attribute("data-quantity", "reflectivity")
    expect(page.locator("#palette-picker")).to_be_visible()
    wait_until(page, "document.getElementById('map').fieldMap.field?.quantity === 'mean'")
    # The API's field matches what the page decoded (the same document), as a cross-check of the encoding.
    document = domain_stack.get(f"/jobs/{domain_stack.harbour_id}/results",
                                params={"f": "field", "lead": 6, "quantity": "probability", "threshold": 30}).json()
    codes = np.frombuffer(base64.b64decode(document["values"]), dtype=np.uint8).reshape(40, 20)
    np.testing.assert_allclose(codes * document["encoding"]["step"], probability, atol=0.006)
