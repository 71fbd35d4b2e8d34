"""The viewer in a real headless chromium against the running stack (tests/viewer/conftest.py).

The page loads the latest nowcast, the animation advances, the slider picks a frame, the slots and
jobs panels show what the API says, and an upload through the form ends in a finished job shown
on the page. Screenshots (laptop and phone) land in artifacts/viewer/.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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
    return int(page.locator("#frame-img").get_attribute("data-frame-index") or "-1")


def displayed_pixels_sha256(page: Page) -> str:
    """sha256 of the RGBA pixels of the frame on screen, read back through a canvas in the page."""
    # Hashed in the page: shipping 700 k numbers through the protocol takes half a minute.
    return page.evaluate(
        """async () => {
            const img = document.querySelector('#frame-img');
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', pixels));
            return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
        }"""
    )


def test_page_shows_the_latest_nowcast_with_its_metadata(page: Page, stack: Stack) -> None:
    info = stack.get(f"/jobs/{LATEST_ID}").json()
    assert info["lead_times"] == [-18, -12, -6, 0, 6, 12, 18] and info["model"] == "PredRNN-v2"
    expect(page.locator("#product-title")).to_have_text("Latest scheduled nowcast")
    expect(page.locator("#product-reference")).to_have_text("2026-03-01 12:30 UTC")
    expect(page.locator("#product-source")).to_have_text("PredRNN")
    expect(page.locator("#product-model")).to_have_text(f"PredRNN-v2 ({info['model_version'][:12]})")
    expect(page.locator("#frame-img")).to_be_visible()
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
        expect(page.locator("#frame-img")).not_to_have_attribute("data-frame-index", str(previous), timeout=10_000)
        seen.add(frame_index(page))
    assert len(seen) == 3
    page.click("#play-toggle")
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")
    paused_at = frame_index(page)
    page.wait_for_timeout(2_000)  # three frame periods
    assert frame_index(page) == paused_at


def test_slider_selects_a_frame_and_shows_the_api_png(page: Page, stack: Stack) -> None:
    page.locator("#frame-slider").fill("4")
    expect(page.locator("#lead-time")).to_have_text("+6 min")
    expect(page.locator("#play-toggle")).to_have_attribute("aria-pressed", "false")  # dragging pauses
    # The player fetches each PNG once and sets src when it has arrived: wait for it, don't race it.
    expect(page.locator("#frame-img")).to_have_attribute("src", re.compile(r".+"))
    first = page.locator("#frame-img").get_attribute("src")

    page.locator("#frame-slider").fill("6")
    expect(page.locator("#lead-time")).to_have_text("+18 min")
    expect(page.locator("#valid-time")).to_have_text("2026-03-01 12:48 UTC")
    expect(page.locator("#frame-img")).to_have_attribute("data-frame-index", "6")
    expect(page.locator("#frame-img")).not_to_have_attribute("src", first)
    expect(page.locator("#frame-img")).to_have_attribute("src", re.compile(r".+"))
    # The frame on screen is exactly the API's PNG, pixel for pixel (the worker draws opaque RGB
    # images): a forecast frame, and an observed scan (lead <= 0).
    for lead in (18, -12):
        if lead < 0:
            page.locator("#frame-slider").fill("1")
            expect(page.locator("#frame-kind")).to_have_text("Observed")
            expect(page.locator("#frame-img")).to_have_attribute("alt", "Radar reflectivity, observed, valid "
                                                                        "2026-03-01 12:18 UTC")
        png = stack.get(f"/jobs/{LATEST_ID}/results", params={"f": "png", "lead": lead})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        expected = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGBA"))
        assert expected.shape == (384, 448, 4)
        assert displayed_pixels_sha256(page) == hashlib.sha256(expected.tobytes()).hexdigest()


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
                assert [job["jobID"] for job in listed] == [job_id]
                assert listed[0]["status"] == "successful"
                short = f"{job_id[:17]}\u2026"  # ids are "forecast-<sha256>"
                expect(page.locator("#upload-message")).to_have_text(f"Job {short} finished: successful.")
                expect(page.locator("#product-title")).to_have_text(f"On-demand forecast {short}")
                expect(page.locator("#product-job")).to_have_attribute("title", job_id)
                row = page.locator(f"#jobs-list li[data-job-id='{job_id}']")
                expect(row.locator(".pill")).to_have_text("successful", timeout=10_000)
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
        expect(page.locator("#frame-img")).to_be_visible()  # the PNGs are fetched with the key too
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
    assert results["observedUrl"] == "/jobs/nowcast-20260301T1230Z/results?f=png&lead=-6"
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
        expect(page.locator("#frame-img")).to_be_visible()
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
