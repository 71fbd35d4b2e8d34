"""How fast the viewer shows a 512 x 512 product: the page, one frame, and the GeoTIFF.

    python -m benchmarks.bench_viewer --output results/bench/viewer_512.json

Starts a private redis-server and the real API under uvicorn, writes one successful on-demand job
as the workers write it (forecast.nc with 20 lead times and observed.nc with 6 scans on a 512 x 512
UTM grid, 1 km cells, moving synthetic cells), then drives Debian's chromium (Playwright):

* page load: from navigation to the first frame and the country outlines drawn on the map and
  painted (``/viewer?job=<id>``, a fresh browser context each time, so every script and the
  outlines are fetched again);
* one frame: fetch ``?f=field`` of one lead time, decode, colour and draw it on the map, in the page;
* the field document alone (server time and size, httpx), and the GeoTIFF of one lead time on its
  first request (rendered) and the next (cached file).

Medians of ``--repeat`` runs. No worker is needed: the product is written directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.machine import machine_description

SIZE = 512
LEADS = 20
OBSERVED = 6
JOB_ID = "forecast-" + "b" * 64
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def storm_fields(count: int, seed: int = 0) -> np.ndarray:
    """(count, 512, 512) dBZ: Gaussian cells of 20-55 dBZ moving 2 km per step; no echo elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    centres = rng.uniform(40, SIZE - 40, (25, 2))
    peaks = rng.uniform(20, 55, 25)
    widths = rng.uniform(6, 30, 25)
    fields = np.full((count, SIZE, SIZE), np.nan, dtype=np.float32)
    for step in range(count):
        dbz = np.full((SIZE, SIZE), -10.0, dtype=np.float32)  # no echo
        for (cy, cx), peak, width in zip(centres, peaks, widths, strict=True):
            cell = peak * np.exp(-(((yy - cy - step) ** 2 + (xx - cx - 2 * step) ** 2) / (2 * width**2)))
            dbz = np.maximum(dbz, cell)
        fields[step] = dbz
    return fields


def write_product(data_dir: Path, store: Any) -> None:
    from model.io import netcdf
    from workers import jobs

    times = [dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=6 * k) for k in range(OBSERVED)]
    observed = storm_fields(OBSERVED + LEADS)
    grid = {"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": 9.0,
            "latitude_of_projection_origin": 0.0, "scale_factor_at_central_meridian": 0.9996,
            "false_easting": 500000.0, "false_northing": 0.0}
    scans = netcdf.write_scans(data_dir / "scans", observed[:OBSERVED], times,
                               x=300_000.0 + 1000.0 * np.arange(SIZE), y=4_900_000.0 + 1000.0 * np.arange(SIZE),
                               grid_mapping=grid)
    sequence = netcdf.read_scans(scans)
    product_dir = data_dir / "products" / JOB_ID
    product_dir.mkdir(parents=True)
    leads = [6 * (k + 1) for k in range(LEADS)]
    forecast = netcdf.write_forecast(product_dir / "forecast.nc", observed[OBSERVED:], reference_time=times[-1],
                                     lead_minutes=leads, grid=sequence, model="PredRNN-v2", model_version="bench",
                                     checkpoint_sha256="bench", source="predrnn", input_times=sequence.times)
    obs = netcdf.write_observed(product_dir / "observed.nc", sequence, count=OBSERVED)
    jobs.create_job(store, job_id=JOB_ID, kind="forecast", steps=LEADS, input_path=str(data_dir / "scans"),
                    model_version="bench")
    jobs.update_job(store, job_id=JOB_ID, status="successful", progress=100, source="predrnn", model="PredRNN-v2",
                    products={"netcdf": str(forecast), "observed": str(obs),
                              "png": {str(m): "" for m in leads},
                              "obs_png": {str(6 * k): "" for k in range(OBSERVED)}},
                    reference_time=times[-1].strftime("%Y-%m-%dT%H:%M:%SZ"), timestep_minutes=6,
                    finished=jobs.utc_now_iso())


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited early")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def lscpu() -> dict[str, str]:
    """Model name and flags as lscpu prints them (the full flag list, not only torch's)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: fields[key].strip() for key in ("Model name", "Flags", "CPU(s)") if key in fields}


def measure_browser(base: str, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    page_ms, dom_ms, frame_ms = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"{base}/viewer?job={JOB_ID}&refresh=600")
            # Loaded: the first frame's field drawn and the country outlines on the map, then painted.
            page.wait_for_selector("#map[data-drawn='field']", timeout=60_000)
            page.wait_for_function("/^\\d+$/.test(document.getElementById('map').dataset.geography ?? '')",
                                   timeout=60_000)
            page.evaluate("new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))")
            page_ms.append((time.perf_counter() - started) * 1000)
            dom_ms.append(page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
            if page.locator("#play-toggle").get_attribute("aria-pressed") == "true":
                page.locator("#play-toggle").click()  # the animation would draw other frames meanwhile
            # One frame, in the page: fetch, decode, colour, draw and wait for the map's render.
            for lead in (30, 60, 90, 120):
                frame_ms.append(page.evaluate(
                    """async ([jobId, lead]) => {
                        const api = await import('./viewer/static/api.js');
                        const scale = await import('./viewer/static/scale.js');
                        const fieldMap = document.getElementById('map').fieldMap;
                        const started = performance.now();
                        const url = api.fieldUrl(jobId, lead) + '&nocache=' + Math.random();
                        const field = await api.fetchField(url);
                        const rendered = new Promise((resolve) => fieldMap.map.once('rendercomplete', resolve));
                        await fieldMap.setField(field, scale.paletteScale('nws'));
                        fieldMap.map.render();
                        await rendered;
                        return performance.now() - started;
                    }""", [JOB_ID, lead]))
            context.close()
        browser.close()
    return {"page_to_first_frame_ms": page_ms, "dom_content_loaded_ms": dom_ms, "one_frame_ms": frame_ms}


def measure_server(base: str, repeat: int) -> dict[str, Any]:
    field_ms, sizes = [], []
    with httpx.Client(base_url=base, timeout=60) as client:
        for k in range(repeat):
            started = time.perf_counter()
            response = client.get(f"/jobs/{JOB_ID}/results", params={"f": "field", "lead": 6 * (k % LEADS + 1)})
            field_ms.append((time.perf_counter() - started) * 1000)
            sizes.append(len(response.content))
        geotiff = {}
        for attempt in ("first", "cached"):
            started = time.perf_counter()
            response = client.get(f"/jobs/{JOB_ID}/results", params={"f": "geotiff", "lead": 60})
            response.raise_for_status()
            geotiff[f"{attempt}_ms"] = round((time.perf_counter() - started) * 1000, 1)
            geotiff["bytes"] = len(response.content)
    return {"field_ms": field_ms, "field_bytes": sizes[0], "geotiff_lead_60": geotiff}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("results/bench/viewer_512.json"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import redis

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        redis_port, api_port = free_port(), free_port()
        redis_process = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api = None
        try:
            url = f"redis://127.0.0.1:{redis_port}/0"
            deadline = time.monotonic() + 20
            store = redis.Redis.from_url(url)
            while True:
                try:
                    store.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            data_dir = tmp / "var"
            write_product(data_dir, store)
            env = {**os.environ, "NOWCAST_REDIS_URL": url, "NOWCAST_DATA_DIR": str(data_dir),
                   "NOWCAST_API_KEYS": secrets.token_urlsafe(24), "NOWCAST_ENVIRONMENT": "development",
                   "NOWCAST_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
            api = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
                                    "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{api_port}"
            wait_http(f"{base}/healthz", api)
            server = measure_server(base, args.repeat * 2)
            browser = measure_browser(base, args.repeat)
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=15)
            redis_process.terminate()
            redis_process.wait(timeout=15)
    report = {
        "benchmark": "viewer_512",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "grid": [SIZE, SIZE], "lead_times": LEADS, "observed_scans": OBSERVED, "repeat": args.repeat,
        "machine": machine_description(), "lscpu": lscpu(),
        "median": {
            "page_to_first_frame_ms": median(browser["page_to_first_frame_ms"]),
            "dom_content_loaded_ms": median(browser["dom_content_loaded_ms"]),
            "one_frame_fetch_decode_draw_ms": median(browser["one_frame_ms"]),
            "field_request_ms": median(server["field_ms"]),
        },
        "field_bytes": server["field_bytes"],
        "geotiff_lead_60": server["geotiff_lead_60"],
        "runs": {**browser, "field_request_ms": [round(v, 1) for v in server["field_ms"]]},
        "command": "python -m benchmarks.bench_viewer " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    summary = report["median"] | {"field_bytes": report["field_bytes"], "geotiff": report["geotiff_lead_60"]}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
