"""The viewer in a real headless chromium against the running stack (tests/viewer/conftest.py).

The page loads the latest nowcast on a map (the field drawn from the API's data, borders, value under
the cursor), the animation advances, the slider and the keys pick a frame, the slots and jobs panels
show what the API says, and an upload through the form ends in a finished job shown on the page.
Screenshots (laptop, phone, map, side by side, keys, /docs, /redoc) land in artifacts/viewer/.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.viewer.conftest import (
    ARTIFACTS,
    EARLIER_SLOT,
    FAILED_ID,
    FEED_START,
    INPUT_SCANS,
    LEAD_STEPS,
    SKIPPED_SLOT,
    SUCCESSFUL_SLOT,
    Stack,
)
from tests.workers.conftest import write_blob_feed
from workers import jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LATEST_ID = jobs.nowcast_job_id(SUCCESSFUL_SLOT)  # nowcast-20260301T1230Z
SKIPPED_ID = jobs.nowcast_job_id(SKIPPED_SLOT)
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@contextmanager
def open_viewer(browser: Browser, stack: Stack, viewport: dict[str, int]) -> Iterator[Page]:
    """The page in a fresh browser context, once it shows the latest nowcast; no JS errors allowed."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{stack.base_url}/viewer")
    expect(page.locator("#product-job")).to_have_text(LATEST_ID, timeout=20_000)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    with open_viewer(browser, stack, LAPTOP) as page:
        yield page


def frame_index(page: Page) -> int:
    return int(page.locator("#map").get_attribute("data-frame-index") or "-1")


def test_page_shows_the_latest_nowcast_with_its_metadata(page: Page, stack: Stack) -> None:
    info = stack.get(f"/jobs/{LATEST_ID}").json()
    assert info["lead_times"] == [-18, -12, -6, 0, 6, 12, 18] and info["model"] == "PredRNN-v2"
    expect(page.locator("#product-title")).to_have_text("Latest scheduled nowcast")
    expect(page.locator("#product-reference")).to_have_text("2026-03-01 12:30 UTC")
    expect(page.locator("#product-source")).to_have_text("PredRNN")
    expect(page.locator("#product-model")).to_have_text(f"PredRNN-v2 ({info['model_version'][:12]})")
    expect(page.locator("#map")).to_have_attribute("data-drawn", "field")
    # The four input scans come first, labelled observed, then the three forecast frames.
    expect(page.locator("#observed-note")).to_be_hidden()
    expect(page.locator("#frame-slider")).to_have_attribute("max", "6")  # -18 .. 0 observed, +6 .. +18
    for index, kind, lead, valid in ((0, "Observed", "\u221218 min", "12:12"), (3, "Observed", "\u00b10 min", "12:30"),
                                     (4, "Forecast", "+6 min", "12:36")):
        page.locator("#frame-slider").fill(str(index))
        expect(page.locator("#frame-kind")).to_have_text(kind)
        expect(page.locator("#frame-kind")).to_have_class(f"frame-kind {kind.lower()}")
        expect(page.locator("#lead-time")).to_have_text(lead)
        expect(page.locator("#valid-time")).to_have_text(f"2026-03-01 {valid} UTC")
    expect(page.locator("#legend-scale li")).to_have_count(14)


def test_animation_advances_and_pauses(page: Page) -> None:
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "true", timeout=10_000)
    seen = {frame_index(page)}
    for _ in range(2):
        previous = frame_index(page)
        expect(page.locator("#map")).not_to_have_attribute("data-frame-index", str(previous), timeout=10_000)
        seen.add(frame_index(page))
    assert len(seen) == 3
    page.click("#play-toggle")
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")
    paused_at = frame_index(page)
    page.wait_for_timeout(2_000)  # three frame periods
    assert frame_index(page) == paused_at


def decoded_field(stack: Stack, job_id: str, lead: int) -> tuple[dict, np.ndarray]:
    """The API's map field of one lead time, and its dBZ (NaN = no data) as the page decodes it."""
    document = stack.get(f"/jobs/{job_id}/results", params={"f": "field", "lead": lead}).json()
    codes = np.frombuffer(base64.b64decode(document["values"]), dtype=np.uint8).reshape(
        document["height"], document["width"]).astype(np.float64)
    encoding = document["encoding"]
    dbz = np.where(codes == encoding["nodata"], np.nan, encoding["offset_dbz"] + codes * encoding["step_dbz"])
    return document, dbz


def hover_cell(page: Page, row: int, column: int) -> None:
    """Move the pointer to the centre of one grid cell on the main map."""
    x, y = page.evaluate(f"document.getElementById('map').fieldMap.pixelOfCell({row}, {column})")
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + x, box["y"] + y)


def screen_colours(page: Page, x: float, y: float, radius: int = 2) -> set[tuple[int, int, int]]:
    """The colours on screen in a small square around a page point."""
    shot = page.screenshot(clip={"x": x - radius, "y": y - radius, "width": 2 * radius + 1, "height": 2 * radius + 1})
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).reshape(-1, 3)
    return {tuple(int(v) for v in p) for p in pixels}


def test_map_draws_the_field_with_borders_and_the_value_under_the_cursor(page: Page, stack: Stack) -> None:
    from model.io.units import dbz_to_rainrate
    from model.visualization.palette import REFLECTIVITY_COLOURS, REFLECTIVITY_LEVELS

    page.locator("#frame-slider").fill("1")  # the observed scan at 12:18: the blobs (the random model has none)
    expect(page.locator("#lead-time")).to_have_text("\u221212 min")
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")  # dragging pauses
    expect(page.locator("#map")).to_have_attribute("data-lead", "-12")
    expect(page.locator("#map")).to_have_attribute("data-drawn", "field")
    # Country outlines projected into the grid's UTM 32N, a graticule, zoom controls.
    expect(page.locator("#map")).to_have_attribute("data-geography", re.compile(r"^\d+$"))  # outlines loaded
    geography = page.locator("#map").get_attribute("data-geography") or ""
    assert int(geography) >= 3, geography  # Italy, Switzerland, France at least
    expect(page.locator("#map .ol-zoom-in")).to_be_visible()
    document, dbz = decoded_field(stack, LATEST_ID, -12)
    assert document["grid_mapping"]["proj4"].startswith("+proj=utm +zone=32")
    # The strongest cell, away from the grid's west edge (the 9 deg E graticule line runs there).
    inner = np.where(np.isnan(dbz), -99.0, dbz)
    inner[:, :2] = -99.0
    row, column = np.unravel_index(int(np.argmax(inner)), inner.shape)
    value = float(dbz[row, column])
    assert value >= 40
    hover_cell(page, int(row), int(column))
    rate = float(dbz_to_rainrate(np.array(value)))
    rate_text = f"{rate:.1f}" if rate < 10 else f"{round(rate)}"
    expect(page.locator("#readout")).to_contain_text(f"{value:.1f} dBZ, {rate_text} mm/h")
    expect(page.locator("#readout")).to_contain_text("\u00b0N 9.")
    # The cell on screen has its class colour (NWS palette by default), drawn in the page from the data.
    level = max(i for i, bound in enumerate(REFLECTIVITY_LEVELS[:-1]) if value >= bound)
    expected = tuple(int(REFLECTIVITY_COLOURS[level][i:i + 2], 16) for i in (1, 3, 5))
    x, y = page.evaluate(f"document.getElementById('map').fieldMap.pixelOfCell({row}, {column})")
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.move(0, 0)  # no pointer over the picture
    assert expected in screen_colours(page, box["x"] + x, box["y"] + y)
    # Zoomed in four times the cell is a sharp square: still its colour a few pixels off centre.
    page.evaluate(f"(() => {{ const m = document.getElementById('map').fieldMap; "
                  f"m.view.setCenter(m.coordinateOfCell({row}, {column})); }})()")
    for _ in range(4):
        page.locator("#map .ol-zoom-in").click()
    page.wait_for_timeout(1_200)
    x, y = page.evaluate(f"document.getElementById('map').fieldMap.pixelOfCell({row}, {column})")
    assert expected in screen_colours(page, box["x"] + x + 6, box["y"] + y + 6, radius=1)
    hover_cell(page, int(row), int(column))
    expect(page.locator("#readout")).to_contain_text(f"{value:.1f} dBZ")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "map-zoomed-readout.png"))
    # Zoomed out to 200 km around the grid: the Swiss and French borders and the Ligurian coast.
    page.evaluate("""(() => { const m = document.getElementById('map').fieldMap;
                     const [w, s, e, n] = m.field.extent;
                     m.view.fit([w - 200000, s - 200000, e + 200000, n + 200000]); })()""")
    page.wait_for_timeout(1_200)
    page.locator("#map").screenshot(path=str(ARTIFACTS / "map-borders.png"))
    outline = np.asarray(Image.open(ARTIFACTS / "map-borders.png").convert("RGB")).reshape(-1, 3)
    dark = np.all(outline < 80, axis=1).sum()  # the outlines are drawn in near-black
    assert dark > 500, dark


def test_keys_work_after_a_button_click(page: Page) -> None:
    page.locator("#play-toggle").click()  # focus on a button, the animation paused
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")
    page.locator("#step-forward").click()
    start = frame_index(page)
    page.keyboard.press("ArrowRight")  # ignored before: the focused button swallowed the key
    expect(page.locator("#map")).to_have_attribute("data-frame-index", str((start + 1) % 7))
    page.keyboard.press("End")
    expect(page.locator("#map")).to_have_attribute("data-frame-index", "6")
    expect(page.locator("#lead-time")).to_have_text("+18 min")
    page.keyboard.press("Home")
    expect(page.locator("#map")).to_have_attribute("data-frame-index", "0")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#map")).to_have_attribute("data-frame-index", "6")
    page.keyboard.press(" ")  # space plays, even with a button focused, and does not click it
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press(" ")
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")
    # On the slider the arrows move it once (its own behaviour), not twice.
    page.locator("#frame-slider").focus()
    before = frame_index(page)
    page.keyboard.press("ArrowRight")
    expect(page.locator("#map")).to_have_attribute("data-frame-index", str(min(6, before + 1)))
    page.wait_for_timeout(300)
    assert frame_index(page) == min(6, before + 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "keys-after-click.png"))


def test_side_by_side_model_extrapolation_and_the_observed_scan(browser: Browser, stack: Stack) -> None:
    earlier = jobs.nowcast_job_id(EARLIER_SLOT)
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # The 12:24 slot's +6 min is valid at 12:30, when a scan was observed (the 12:30 slot's newest).
        page.goto(f"{stack.base_url}/viewer?job={earlier}")
        expect(page.locator("#product-title")).to_have_text("Scheduled nowcast 12:24Z", timeout=20_000)
        page.locator("#frame-slider").fill("4")
        expect(page.locator("#lead-time")).to_have_text("+6 min")
        page.locator("#compare-toggle").click()
        expect(page.locator("#compare")).to_be_visible()
        expect(page.locator("#compare-model")).to_have_attribute("data-drawn", "field", timeout=10_000)
        expect(page.locator("#compare-model")).to_have_attribute("data-valid-time", "2026-03-01T12:30:00Z")
        expect(page.locator("#compare-observed")).to_have_attribute("data-drawn", "field")
        expect(page.locator("#compare-observed")).to_have_attribute("data-valid-time", "2026-03-01T12:30:00Z")
        expect(page.locator("#compare-observed-note")).to_have_text("valid 12:30Z")
        expect(page.locator("#compare-extrapolation-note")).to_have_text("(not available)")  # 12:24 ran one stream
        # The observed panel shows the API's scan at 12:30 (the 12:30 slot's lead 0), not a forecast.
        _, observed = decoded_field(stack, LATEST_ID, 0)
        assert np.nanmax(observed) >= 40
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "side-by-side-observed.png"), full_page=True)
        # The latest slot: both streams at +6 min; 12:36 has not been observed.
        page.locator("#back-to-latest").click()
        expect(page.locator("#product-job")).to_have_text(LATEST_ID)
        page.locator("#frame-slider").fill("4")
        expect(page.locator("#compare-extrapolation")).to_have_attribute("data-drawn", "field", timeout=10_000)
        expect(page.locator("#compare-extrapolation")).to_have_attribute("data-valid-time", "2026-03-01T12:36:00Z")
        expect(page.locator("#compare-model")).to_have_attribute("data-valid-time", "2026-03-01T12:36:00Z")
        expect(page.locator("#compare-observed-note")).to_have_text("(no scan for 12:36Z yet)")
        # One view for all: zooming the main map zooms the panels.
        zoom = page.evaluate("document.getElementById('compare-model').fieldMap.view.getZoom()")
        page.locator("#map .ol-zoom-in").click()
        page.wait_for_timeout(800)
        assert page.evaluate("document.getElementById('compare-model').fieldMap.view.getZoom()") > zoom
        page.screenshot(path=str(ARTIFACTS / "side-by-side.png"), full_page=True)
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def test_staleness_limits_and_the_neutral_badge(page: Page, stack: Stack) -> None:
    # The feed's newest scan (12:30, 1 March 2026) is far past the workers' 30 min limit.
    expect(page.locator("#scan-age")).to_have_text(
        re.compile(r"^Newest scan 12:30Z 2026-03-01, \d+ days old: stale, past the 30 min limit$"))
    expect(page.locator("#scan-age")).to_have_attribute("data-stale", "true")
    background = page.evaluate("getComputedStyle(document.getElementById('product-source')).backgroundColor")
    assert background != "rgb(220, 252, 231)"  # no longer the confident green
    page.locator("#limits-open").click()
    expect(page.locator("#limits-dialog")).to_be_visible()
    expect(page.locator("#limits-text")).to_contain_text("## Known limits\n\nRandom weights")
    page.keyboard.press("Escape")
    expect(page.locator("#limits-dialog")).to_be_hidden()
    notes = page.evaluate(
        """async () => {
            const s = await import('./viewer/static/skill.js');
            const report = (model, extrapolation) => ({ sources: {
                model: { all_leads: { '30dBZ': { csi: model } } },
                extrapolation: { all_leads: { '30dBZ': { csi: extrapolation } } } } });
            return [s.skillCaveat(report(0.2, 0.5), 'model', 'predrnn'),
                    s.skillCaveat(report(0.6, 0.5), 'model', 'predrnn'),
                    s.skillCaveat(report(0.6, 0.5), 'model', 'extrapolation'),
                    s.skillCaveat(null, 'model', 'predrnn')];
        }"""
    )
    assert notes[0] == ("Extrapolation verified better over the last 24 h (CSI at 30 dBZ: 0.50 against 0.20 for "
                        "the model, the source shown here).")
    assert notes[1] is None and notes[3] is None
    assert notes[2].startswith("The model verified better")  # the fallback's skill is the extrapolation's
    # The scan's age is judged on the stack's clock (config.json's now and clock_speed), not the browser's.
    ages = page.evaluate(
        """async () => {
            const s = await import('./viewer/static/status.js');
            const fetched = Date.parse('2027-01-01T00:00:00Z');
            const config = { now: '2026-03-01T12:40:00+00:00', clock_speed: 60 };
            return [s.stackNow(config, fetched, fetched + 30_000).toISOString(),
                    s.stackNow(null, fetched, fetched + 30_000).toISOString(),
                    (await (await fetch('./viewer/config.json')).json()).clock_speed];
        }"""
    )
    assert ages == ["2026-03-01T13:10:00.000Z", "2027-01-01T00:00:30.000Z", 1.0]


def test_failed_job_card_says_why_without_server_paths(page: Page, stack: Stack) -> None:
    info = stack.get(f"/jobs/{FAILED_ID}").json()
    assert info["status"] == "failed"
    assert info["message"] == "the uploaded scans of this job are no longer on the server; submit them again"
    row = page.locator(f"#jobs-list li[data-job-id='{FAILED_ID}']")
    expect(row.locator(".pill")).to_have_text("failed")
    expect(row.locator(".run-message")).to_have_text(f"Failed: {info['message']}")
    expect(row.locator("progress")).to_have_count(0)  # not a bar stuck at 5 %
    expect(row.locator(".run-facts")).to_have_text("Reference time once the scans are read \u00b7 3 lead steps "
                                                   "(to +18 min)")
    assert str(stack.tmp) not in (row.text_content() or "")


def test_colour_blind_palette_is_remembered(browser: Browser, stack: Stack) -> None:
    from tests.viewer.test_palette import scale_colours

    with open_viewer(browser, stack, LAPTOP) as page:
        page.locator("#palette-select").select_option("colour-blind")
        swatches = page.locator("#legend-scale .swatch")
        expect(swatches.first).to_have_css("background-color", "rgb(198, 219, 239)")
        assert page.evaluate("localStorage.getItem('nowcast.palette')") == "colour-blind"
        page.reload()
        expect(page.locator("#product-job")).to_have_text(LATEST_ID, timeout=20_000)
        expect(page.locator("#palette-select")).to_have_value("colour-blind")
        colours = [page.evaluate(f"getComputedStyle(document.querySelectorAll('#legend-scale .swatch')[{i}])"
                                 ".backgroundColor") for i in range(14)]
        assert colours == [f"rgb({r}, {g}, {b})" for r, g, b in scale_colours("COLOUR_BLIND_SCALE")]
        page.locator("#frame-slider").fill("1")
        expect(page.locator("#map")).to_have_attribute("data-drawn", "field")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "map-colour-blind.png"))
        page.locator("#palette-select").select_option("nws")


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_reference_pages_work_offline(browser: Browser, stack: Stack, path: str, ready: str) -> None:
    context = browser.new_context(viewport=LAPTOP)
    refused: list[str] = []

    def only_local(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(stack.base_url):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    try:
        page.goto(f"{stack.base_url}{path}")
        expect(page.locator(ready).first).to_be_visible(timeout=30_000)
        assert page.locator(ready).count() >= 8  # every operation is listed
        expect(page.get_by_text("What an input netCDF must contain").first).to_be_visible()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"offline{path.replace('/', '-')}.png"))
    finally:
        context.close()
    assert refused == [], f"{path} asked the internet for {refused}"
    assert problems == [], f"{path}: {problems}"


def test_slots_panel_shows_success_and_the_skip_reason(page: Page, stack: Stack) -> None:
    skipped = stack.get(f"/jobs/{SKIPPED_ID}").json()
    assert skipped["status"] == "skipped" and skipped["message"]
    row = page.locator(f"#slots-list li[data-job-id='{SKIPPED_ID}']")
    expect(row.locator(".pill")).to_have_text("skipped")
    expect(row.locator(".run-time")).to_have_text("14:00Z")
    expect(row.locator(".run-message")).to_have_text(skipped["message"])
    latest = page.locator(f"#slots-list li[data-job-id='{LATEST_ID}']")
    expect(latest.locator(".pill")).to_have_text("successful")
    expect(latest.locator(".run-source")).to_have_text("PredRNN")


def test_upload_ends_in_a_finished_job_on_the_page(browser: Browser, stack: Stack) -> None:
    scans = write_blob_feed(stack.tmp / "upload", FEED_START, INPUT_SCANS, seed=7)
    for viewport, name in ((LAPTOP, "laptop"), (PHONE, "phone")):
        with open_viewer(browser, stack, viewport) as page:
            if name == "laptop":
                page.fill("#api-key", stack.api_key)
                page.set_input_files("#upload-files", [str(path) for path in scans])
                page.click("#upload-submit")
                status = page.locator("#upload-status")
                expect(status).to_have_attribute("data-status", "successful", timeout=120_000)
                job_id = status.get_attribute("data-job-id") or ""
                listed = stack.get("/jobs", params={"kind": "forecast"}).json()["jobs"]
                assert [job["jobID"] for job in listed if job["jobID"] != FAILED_ID] == [job_id]
                assert next(job for job in listed if job["jobID"] == job_id)["status"] == "successful"
                short = f"{job_id[:17]}\u2026"  # ids are "forecast-<sha256>"
                expect(page.locator("#upload-message")).to_have_text(f"Job {short} finished: successful.")
                expect(page.locator("#product-title")).to_have_text(f"On-demand forecast {short}")
                expect(page.locator("#product-job")).to_have_attribute("title", job_id)
                row = page.locator(f"#jobs-list li[data-job-id='{job_id}']")
                expect(row.locator(".pill")).to_have_text("successful", timeout=10_000)
                # The card says what the job is: reference time, lead steps, source and model.
                expect(row.locator(".run-facts")).to_have_text(
                    "Reference 2026-03-01 12:18 UTC \u00b7 3 lead steps (to +18 min) \u00b7 PredRNN \u00b7 "
                    "model PredRNN-v2")
                expect(page.locator("#lead-time")).not_to_have_text("—")
                assert page.evaluate("localStorage.getItem('nowcast.apiKey')") == stack.api_key
                # The page's address now names the job (a link to send); the valid times are known.
                assert page.evaluate("location.search") == f"?job={job_id}"
                expect(page.locator("#product-reference")).to_have_text("2026-03-01 12:18 UTC")
                page.locator("#frame-slider").fill("5")  # 4 observed scans, then +6, +12, +18
                expect(page.locator("#lead-time")).to_have_text("+12 min")
                expect(page.locator("#valid-time")).to_have_text("2026-03-01 12:30 UTC")
            else:
                page.locator("#frame-slider").fill("5")
                expect(page.locator("#lead-time")).to_have_text("+12 min")
                # One column on a phone: nothing wider than the screen.
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            page.wait_for_timeout(500)  # the frame's image decoded before the picture is taken
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"viewer-{name}.png"), full_page=True)
    assert (ARTIFACTS / "viewer-laptop.png").stat().st_size > 10_000


def test_upload_with_a_wrong_key_shows_the_problem(page: Page, stack: Stack) -> None:
    scans = write_blob_feed(stack.tmp / "upload-bad-key", FEED_START, INPUT_SCANS, seed=8)
    page.fill("#api-key", "not-the-key-" + "x" * 20)
    page.uncheck("#remember-key")
    page.set_input_files("#upload-files", [str(path) for path in scans])
    page.click("#upload-submit")
    expect(page.locator("#upload-message")).to_contain_text("Rejected: 401 ")
    expect(page.locator("#upload-message")).to_have_class("error")
    assert page.evaluate("localStorage.getItem('nowcast.apiKey')") is None


def test_keyed_reads_open_with_the_typed_key(browser: Browser, stack: Stack, keyed_reads_url: str) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        page.goto(f"{keyed_reads_url}/viewer")  # the page itself stays open
        expect(page.locator("#connection")).to_contain_text("API problem: 401 ")
        expect(page.locator("#connection")).to_have_class("connection error")
        page.fill("#api-key", stack.api_key)
        page.locator("#api-key").dispatch_event("change")
        expect(page.locator("#product-job")).to_have_text(LATEST_ID, timeout=20_000)
        expect(page.locator("#map")).to_have_attribute("data-drawn", "field")  # fields fetched with the key too
        expect(page.locator("#connection")).to_have_class("connection")
        expect(page.locator(f"#slots-list li[data-job-id='{SKIPPED_ID}'] .pill")).to_have_text("skipped")
    finally:
        context.close()


def test_new_slots_appear_without_a_reload(browser: Browser, stack: Stack) -> None:
    from workers.celery_app import create_app
    from workers.settings import WorkerSettings

    slot = SKIPPED_SLOT + dt.timedelta(minutes=6)  # 14:06, stale too: the latest product stays
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    celery = create_app(WorkerSettings(redis_url=stack.redis_url, data_dir=stack.tmp / "var"))
    try:
        page.goto(f"{stack.base_url}/viewer?refresh=2")
        expect(page.locator("#product-job")).to_have_text(LATEST_ID, timeout=20_000)
        celery.send_task("workers.tasks.nowcast", args=[slot.isoformat().replace("+00:00", "Z")], queue="gpu")
        row = page.locator(f"#slots-list li[data-job-id='{jobs.nowcast_job_id(slot)}']")
        expect(row.locator(".pill")).to_have_text("skipped", timeout=60_000)
        expect(row.locator(".run-time")).to_have_text("14:06Z")
        expect(page.locator("#product-job")).to_have_text(LATEST_ID)
    finally:
        celery.close()
        context.close()


def test_legend_matches_the_quicklook_colour_scale(page: Page) -> None:
    from model.visualization.palette import REFLECTIVITY_COLOURS, REFLECTIVITY_LEVELS

    scale = page.evaluate("import('./viewer/static/scale.js').then((m) => m.REFLECTIVITY_SCALE)")
    assert [entry["dbz"] for entry in scale] == REFLECTIVITY_LEVELS[:-1]
    assert [entry["color"] for entry in scale] == REFLECTIVITY_COLOURS
    rates = page.locator("#legend-scale .rate").all_inner_texts()
    assert rates[:4] == ["0.07", "0.15", "0.32", "0.65"]  # 5..20 dBZ, Marshall-Palmer


def test_time_and_frame_helpers(page: Page) -> None:
    results = page.evaluate(
        """async () => {
            const s = await import('./viewer/static/scale.js');
            const v = await import('./viewer/static/viewer.js');
            const a = await import('./viewer/static/api.js');
            const product = { id: 'nowcast-20260301T1230Z', referenceTime: s.parseTime('nowcast-20260301T1230Z'),
                              inputScans: 2, timestep: 6, leads: [6, 12] };
            return {
                rate40: s.dbzToRainRate(40),
                leads: [s.formatLead(-12), s.formatLead(0), s.formatLead(30)],
                refresh: ['', '?refresh=5', '?refresh=0.1', '?refresh=99999', '?refresh=x'].map(v.refreshMs),
                naive: s.parseTime('2026-03-01T12:30:00').toISOString(),
                frames: v.buildFrames(product, [0, -6]).map((f) => [f.kind, f.lead, s.formatUtc(f.validTime)]),
                forecastOnly: v.buildFrames(product, []).length,
                observedUrl: v.buildFrames(product, [-6])[0].url.replace(location.origin, ''),
                job: ['?job=forecast-abc&refresh=5', '?job=', '', '?refresh=5'].map(v.requestedJob),
                search: [v.searchWithJob('?refresh=5', 'nowcast-x'), v.searchWithJob('?job=a&refresh=5', null),
                         v.searchWithJob('?job=a', null)],
                normalized: ((j) => [j.leads, j.observedLeads, j.timestep, j.model, s.formatUtc(j.referenceTime)])(
                    a.normalizeJob({ jobID: 'forecast-abc', kind: 'forecast', status: 'successful',
                                     lead_times: [12, -6, 0, 6], timestep_minutes: 6, model: 'PredRNN-v2',
                                     reference_time: '2026-03-01T12:18:00Z' })),
                unknownObserved: a.normalizeJob({ jobID: 'x', lead_time_minutes: [6] }).observedLeads,
            };
        }"""
    )
    assert results["rate40"] == pytest.approx(11.53, abs=0.01)
    assert results["leads"] == ["\u221212 min", "\u00b10 min", "+30 min"]
    assert results["naive"] == "2026-03-01T12:30:00.000Z"
    assert results["refresh"] == [30_000, 5_000, 2_000, 600_000, 30_000]
    assert results["frames"] == [
        ["observed", -6, "2026-03-01 12:24 UTC"],
        ["observed", 0, "2026-03-01 12:30 UTC"],
        ["forecast", 6, "2026-03-01 12:36 UTC"],
        ["forecast", 12, "2026-03-01 12:42 UTC"],
    ]
    assert results["forecastOnly"] == 2
    assert results["observedUrl"] == "/jobs/nowcast-20260301T1230Z/results?f=field&lead=-6"
    assert results["job"] == ["forecast-abc", None, None, None]
    assert results["search"] == ["?refresh=5&job=nowcast-x", "?refresh=5", ""]
    assert results["normalized"] == [[6, 12], [-6, 0], 6, "PredRNN-v2", "2026-03-01 12:18 UTC"]
    assert results["unknownObserved"] is None


def test_job_link_opens_that_job_and_back_to_latest(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # A job's own link: that product in the player, not as "the latest".
        page.goto(f"{stack.base_url}/viewer?job={LATEST_ID}")
        expect(page.locator("#product-title")).to_have_text("Scheduled nowcast 12:30Z", timeout=20_000)
        expect(page.locator("#product-job")).to_have_text(LATEST_ID)
        expect(page.locator("#frame-slider")).to_have_attribute("max", "6")
        page.locator("#frame-slider").fill("0")
        expect(page.locator("#frame-kind")).to_have_text("Observed")
        expect(page.locator("#map")).to_have_attribute("data-drawn", "field")
        expect(page.locator("#back-to-latest")).to_be_visible()
        # An unknown job says so, and the latest nowcast is one click away; the address follows.
        page.goto(f"{stack.base_url}/viewer?job=forecast-nope&refresh=5")
        expect(page.locator("#frame-placeholder")).to_have_text("No job forecast-nope.", timeout=20_000)
        expect(page.locator("#product-title")).to_have_text("Job forecast-nope")
        page.locator("#back-to-latest").click()
        expect(page.locator("#product-title")).to_have_text("Latest scheduled nowcast")
        expect(page.locator("#product-job")).to_have_text(LATEST_ID)
        assert page.evaluate("location.search") == "?refresh=5"
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"



def test_skill_panel_shows_csi_by_lead_for_both_streams_and_the_policy(browser: Browser, stack: Stack) -> None:
    """Verification records of two recent slots per stream (written as the sweep writes them): the
    panel draws both curves, POD and FAR on hover, the slots behind them and the served stream."""
    from model.verification.metrics import SkillScores
    from workers import skill_store, verification

    rng = np.random.default_rng(0)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    slots = [now - dt.timedelta(minutes=now.minute % 6 + 60 + 6 * k) for k in range(2)]
    written = []
    for stream, noise in (("model", 3.0), ("extrapolation", 8.0)):
        for slot in slots:
            truth = rng.normal(25.0, 12.0, (1, LEAD_STEPS, 16, 16))
            skill = SkillScores.init(LEAD_STEPS, verification.THRESHOLDS, verification.SCALES)
            skill.accum(truth, truth + rng.normal(0.0, noise, truth.shape))
            job_id = jobs.nowcast_job_id(slot, stream)
            written.append(job_id)
            skill_store.write_meta(stack.store, job_id=job_id, meta={
                "job_id": job_id, "slot": slot.strftime("%Y-%m-%dT%H:%M:%SZ"), "stream": stream,
                "n_leads": LEAD_STEPS, "thresholds": [list(t) for t in verification.THRESHOLDS],
                "scales": list(verification.SCALES)})
            for row in range(LEAD_STEPS):
                skill_store.write_lead(stack.store, job_id=job_id, lead_minutes=6 * (row + 1), entry={
                    "status": "scored", "valid_time": "", "sums": skill_store.sums_of(skill, row)})
    try:
        with open_viewer(browser, stack, LAPTOP) as page:
            expect(page.locator("#skill-summary")).to_have_text(
                "Last 24 h: model 2 slots; extrapolation 2 slots.", timeout=20_000)
            for stream in ("model", "extrapolation"):
                expect(page.locator(f"#skill-chart circle.skill-dot.{stream}")).to_have_count(LEAD_STEPS)
            tooltip = page.locator("#skill-chart circle.skill-dot.model[data-lead='6'] title").text_content()
            assert re.fullmatch(r"model \+6 min: CSI 0\.\d\d, POD 0\.\d\d, FAR 0\.\d\d \(2 slots\)", tooltip or "")
            expect(page.locator("#skill-policy")).to_have_text(re.compile(r"^Serving model: NOWCAST_SOURCE_POLICY"))
            page.get_by_role("button", name="40 dBZ").click()
            expect(page.locator("#skill-chart svg")).to_have_attribute("aria-label", "CSI at 40dBZ by lead time")
            picked = page.evaluate(
                """async () => {
                    const a = await import('./viewer/static/api.js');
                    const slots = [{ id: 'nowcast-20260301T1230Z-extrapolation', status: 'successful',
                                     slot: '2026-03-01T12:30:00Z' },
                                   { id: 'nowcast-20260301T1230Z', status: 'successful',
                                     slot: '2026-03-01T12:30:00Z' },
                                   { id: 'nowcast-20260301T1224Z', status: 'successful',
                                     slot: '2026-03-01T12:24:00Z' }];
                    // The newest slot without a model product: its extrapolation product, not an older slot.
                    return [a.newestProduct(slots, 'model').id, a.newestProduct(slots, 'extrapolation').id,
                            a.newestProduct([slots[0], slots[2]], 'model').id];
                }"""
            )
            assert picked == ["nowcast-20260301T1230Z", "nowcast-20260301T1230Z-extrapolation",
                              "nowcast-20260301T1230Z-extrapolation"]
    finally:
        stack.store.delete(*[f"{skill_store.KEY_PREFIX}{job_id}" for job_id in written],
                           *[f"{skill_store.KEY_PREFIX}index:{stream}" for stream in ("model", "extrapolation")])
