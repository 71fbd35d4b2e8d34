// The forecaster's page: the latest nowcast as an animation on a map, recent slots and jobs, an upload form.
//
// Data flow: refresh() polls the slot and job lists every refreshMs() (30 s by default); the player shows one product
// (the latest successful nowcast, or a job the user picked) as frames: observed scans before the
// reference time, forecast lead times after it. Each frame's field (?f=field) is fetched once and
// drawn on the map (map.js) in the chosen palette; "Compare" puts the model, the extrapolation and
// the scan observed at the same valid time side by side (compare.js). With several radar domains
// (GET /domains) a switcher picks the one whose slots, skill and fields the page reads (?domain=);
// an ensemble product offers a probability layer per threshold (P >= 20/30/40 dBZ).
// All text from the API goes in through textContent, never innerHTML.

import {
  ApiError,
  currentDomain,
  fetchDomains,
  fetchField,
  fetchJob,
  fetchJobs,
  fetchLatestNowcast,
  fetchModelCard,
  fetchSlots,
  fetchVerification,
  fetchViewerConfig,
  fieldUrl,
  netcdfUrl,
  setDomain,
  storeApiKey,
  storedApiKey,
  streamOf,
  submitForecast,
} from "./api.js";
import { Comparison } from "./compare.js";
import { FieldMap } from "./map.js";
import { renderSkill, skillCaveat } from "./skill.js";
import {
  dbzToRainRate,
  formatClock,
  formatLead,
  formatProbability,
  formatRainRate,
  formatUtc,
  paletteScale,
  PROBABILITY_SCALE,
} from "./scale.js";
import { scanAge, stackNow, storedPalette, storePalette } from "./status.js";

/**
 * How often the lists are polled: 30 s, or `?refresh=SECONDS` in the page URL (2 s to 10 min), for
 * a wall display that should follow faster, or a test.
 */
export function refreshMs(search) {
  const seconds = Number(new URLSearchParams(search).get("refresh"));
  if (!Number.isFinite(seconds) || seconds <= 0) return 30_000;
  return Math.round(Math.min(600, Math.max(2, seconds)) * 1000);
}
const FRAME_MS = 700;
const END_DWELL_TICKS = 3; // hold the last frame a little before looping
const FIELD_CONCURRENCY = 3;
const POLL_MIN_S = 1;
const POLL_MAX_S = 10;
// Observed frames asked for when the API does not list them (the workers keep the last six scans).
const PROBED_OBSERVED_SCANS = 6;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Frames of one product

/**
 * The frames of a product in display order: the observed scans, oldest first, then the forecast.
 * A probability layer has forecast frames only: an observed scan has no ensemble to count.
 * @param {object} product normalised job (api.normalizeJob)
 * @param {number[]} observedLeads minutes (<= 0) from the reference time that have an observed scan
 * @param {{quantity: "probability", threshold: number}|null} layer null: reflectivity
 * @returns {{kind: "observed"|"forecast", lead: number, url: string, validTime: Date|null}[]}
 */
export function buildFrames(product, observedLeads, layer = null) {
  const frames = [];
  const validAt = (lead) =>
    product.referenceTime ? new Date(product.referenceTime.getTime() + lead * 60_000) : null;
  if (layer === null) {
    for (const lead of [...observedLeads].filter((m) => m <= 0).sort((a, b) => a - b)) {
      frames.push({ kind: "observed", lead, url: fieldUrl(product.id, lead), validTime: validAt(lead) });
    }
  }
  for (const lead of product.leads) {
    frames.push({ kind: "forecast", lead, url: fieldUrl(product.id, lead, layer), validTime: validAt(lead) });
  }
  return frames;
}

/** The domain a page URL asks for (`/viewer?domain=harbour`), or null. */
export function requestedDomain(search) {
  const id = new URLSearchParams(search).get("domain")?.trim();
  return id ? id : null;
}

/** `search` with parameter `name` set to `value`, or removed for null; the others are kept. */
export function searchWith(search, name, value) {
  const params = new URLSearchParams(search);
  if (value) params.set(name, value);
  else params.delete(name);
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * The layers a product offers: reflectivity, and for an ensemble one probability layer per
 * threshold. Value "reflectivity" or "p<threshold>" (the layer select's option values).
 */
export function layersOf(product) {
  const layers = [{ value: "reflectivity", label: product?.ensemble ? "Reflectivity: ensemble mean (dBZ)" : "Reflectivity (dBZ)", layer: null }];
  for (const threshold of product?.ensemble?.thresholds_dbz ?? []) {
    layers.push({ value: `p${threshold}`, label: `Probability P(\u2265${threshold} dBZ)`,
                  layer: { quantity: "probability", threshold } });
  }
  return layers;
}

/**
 * The job id a page URL asks for (`/viewer?job=<id>`), or null.
 * @param {string} search the page's location.search
 */
export function requestedJob(search) {
  const id = new URLSearchParams(search).get("job")?.trim();
  return id ? id : null;
}

/** `search` with `?job=` set to `jobId`, or removed for null; other parameters (refresh) are kept. */
export function searchWithJob(search, jobId) {
  return searchWith(search, "job", jobId);
}

/** A job id short enough for a list: "forecast-473fb0f1…"; slot ids (22 characters) stay whole. */
export function shortId(id) {
  if (id.startsWith("nowcast-")) return id; // a slot and its stream: both parts matter
  return id.length > 24 ? `${id.slice(0, 17)}\u2026` : id;
}

/** "PredRNN", "Extrapolation" (the slot's extrapolation stream) or "Extrapolation fallback" (the model's). */
function sourceLabel(source, id = "") {
  if (source === "predrnn") return "PredRNN";
  if (source === "extrapolation") return streamOf(id) === "extrapolation" ? "Extrapolation" : "Extrapolation fallback";
  return source ? String(source) : "—";
}

// ---------------------------------------------------------------------------------------------
// The player

/**
 * Keys that drive the player wherever the focus is, except where the focused element needs them
 * itself: typing in a text field, or the slider (it moves on arrows, Home and End by itself and
 * reports through its input event). A focused button no longer swallows them.
 */
export function playerKeyAction(key, target) {
  const tag = target?.tagName?.toLowerCase() ?? "";
  const type = (target?.type ?? "").toLowerCase();
  const typing = tag === "textarea" || tag === "select" || target?.isContentEditable
    || (tag === "input" && !["range", "checkbox", "radio", "button", "submit", "file"].includes(type));
  if (typing) return null;
  const onSlider = tag === "input" && type === "range";
  if (key === " " || key === "Spacebar") return "toggle";
  if (onSlider) return null;
  return { ArrowLeft: "previous", ArrowRight: "next", Home: "first", End: "last" }[key] ?? null;
}

class Player {
  constructor() {
    this.mapElement = $("map");
    this.slider = $("frame-slider");
    this.playButton = $("play-toggle");
    this.map = new FieldMap(this.mapElement, { readout: $("readout") });
    this.scale = paletteScale(storedPalette());
    this.frames = [];
    this.fields = []; // decoded field, null (missing) or undefined (loading), per frame
    this.index = 0;
    this.timer = null;
    this.dwell = 0;
    this.loadAbort = null;
    this.product = null;
    this.layer = null; // null: reflectivity; {quantity: "probability", threshold}: an ensemble's layer
    this.onFrame = () => {};

    this.playButton.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    $("step-back").addEventListener("click", () => { this.pause(); this.show(this.index - 1); });
    $("step-forward").addEventListener("click", () => { this.pause(); this.show(this.index + 1); });
    // Dragging the slider is a request to look at that frame: stop the animation there.
    this.slider.addEventListener("input", () => { this.pause(); this.show(Number(this.slider.value)); });
    document.addEventListener("keydown", (event) => this.onKey(event));
    // A focused button would "click" on the release of space as well: the key is the player's.
    document.addEventListener("keyup", (event) => {
      if (playerKeyAction(event.key, event.target) === "toggle" && event.target.closest?.("button")) event.preventDefault();
    });
  }

  get playing() {
    return this.timer !== null;
  }

  onKey(event) {
    if (this.frames.length === 0 || event.altKey || event.ctrlKey || event.metaKey) return;
    const action = playerKeyAction(event.key, event.target);
    if (action === null) return;
    event.preventDefault();
    if (action === "toggle") { this.playing ? this.pause() : this.play(); return; }
    this.pause();
    if (action === "previous") this.show(this.index - 1);
    if (action === "next") this.show(this.index + 1);
    if (action === "first") this.show(0);
    if (action === "last") this.show(this.frames.length - 1);
  }

  /** The colour scale of a field: the chosen palette for reflectivity, the probability scale for a probability. */
  scaleFor(field) {
    return field?.quantity === "probability" ? PROBABILITY_SCALE : this.scale;
  }

  setPalette(scale) {
    this.scale = scale;
    this.map.recolour(this.scaleFor(this.map.field));
  }

  /** Show another layer of the same product (reflectivity or a probability): its frames are fetched anew. */
  setLayer(layer) {
    this.layer = layer;
    if (this.product) this.load(this.product);
  }

  /** Replace the product: forget the old frames' fields and fetch the new ones. */
  async load(product) {
    this.pause();
    this.loadAbort?.abort();
    this.product = product;
    this.loadAbort = new AbortController();
    const { signal } = this.loadAbort;

    // The statusInfo lists the observed scans (lead_times <= 0). A record that does not say
    // (a product document) gets one probe of lead 0 and, when it answers, the usual half hour.
    let observed = product.observedLeads;
    let probed = null;
    if (this.layer !== null) observed = []; // a probability layer: forecast frames only
    if (observed === null) {
      probed = await fetchField(fieldUrl(product.id, 0), { signal }).catch(() => null);
      if (signal.aborted) return;
      const count = probed === null ? 0 : Math.min(product.inputScans, PROBED_OBSERVED_SCANS);
      observed = Array.from({ length: count }, (_, i) => -(count - 1 - i) * product.timestep);
    }
    this.frames = buildFrames(product, observed, this.layer);
    this.fields = new Array(this.frames.length).fill(undefined);
    if (probed !== null) this.fields[this.frames.findIndex((f) => f.kind === "observed" && f.lead === 0)] = probed;
    const observedCount = this.frames.filter((f) => f.kind === "observed").length;
    const note = $("observed-note");
    note.hidden = observedCount > 0;
    note.textContent = observedCount > 0 ? ""
      : this.layer !== null ? "Probability layer: forecast frames only."
        : "No observed scans for this product: forecast frames only.";

    this.slider.max = String(Math.max(0, this.frames.length - 1));
    // The track is grey over the observed part and coloured over the forecast part.
    const split = this.frames.length > 1 ? (100 * Math.max(0, observedCount - 0.5)) / (this.frames.length - 1) : 0;
    this.slider.style.setProperty("--split", `${Math.min(100, split)}%`);
    for (const id of ["play-toggle", "step-back", "step-forward", "frame-slider"]) $(id).disabled = this.frames.length === 0;

    this.show(0);
    await this.fetchAll(signal);
  }

  async fetchAll(signal) {
    let next = 0;
    const worker = async () => {
      while (next < this.frames.length && !signal.aborted) {
        const i = next++;
        if (this.fields[i] !== undefined) continue;
        const field = await fetchField(this.frames[i].url, { signal }).catch(() => null);
        if (signal.aborted) return;
        this.fields[i] = field;
        if (i === this.index) this.show(i);
      }
    };
    // Start playing as soon as the first frame is in: later frames keep arriving while it plays.
    const workers = Array.from({ length: FIELD_CONCURRENCY }, worker);
    const reducedMotion = window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;
    if (!reducedMotion) this.play();
    await Promise.all(workers);
  }

  show(index) {
    if (this.frames.length === 0) return;
    this.index = (index + this.frames.length) % this.frames.length;
    const frame = this.frames[this.index];
    const field = this.fields[this.index];
    this.slider.value = String(this.index);
    this.mapElement.dataset.frameIndex = String(this.index);
    const what = this.layer ? `Probability of reflectivity at or above ${this.layer.threshold} dBZ` : "Radar reflectivity";
    this.mapElement.setAttribute("aria-label", `${what} map, ${frame.kind}, valid ${formatUtc(frame.validTime)}`);

    const placeholder = $("frame-placeholder");
    if (field) {
      this.map.setField(field, this.scaleFor(field));
      this.mapElement.dataset.lead = String(frame.lead);
      placeholder.hidden = true;
    } else {
      placeholder.hidden = false;
      placeholder.textContent = field === null ? "This frame is not available." : "Loading frame…";
    }
    const kind = $("frame-kind");
    kind.hidden = false;
    kind.textContent = frame.kind === "observed" ? "Observed" : "Forecast";
    kind.className = `frame-kind ${frame.kind}`;
    $("valid-time").textContent = formatUtc(frame.validTime);
    $("lead-time").textContent = formatLead(frame.lead);
    document.querySelector(".stage-frame").dataset.kind = frame.kind;
    this.onFrame(this.product, frame);
  }

  tick() {
    // Wait on a frame still loading rather than skipping it: the loop should look continuous.
    const next = (this.index + 1) % this.frames.length;
    if (this.fields[next] === undefined) return;
    if (this.index === this.frames.length - 1 && this.dwell < END_DWELL_TICKS) { this.dwell += 1; return; }
    this.dwell = 0;
    this.show(next);
  }

  play() {
    if (this.playing || this.frames.length < 2) return;
    this.timer = window.setInterval(() => this.tick(), FRAME_MS);
    this.playButton.textContent = "Pause";
    this.playButton.setAttribute("aria-pressed", "true");
  }

  pause() {
    if (this.timer !== null) window.clearInterval(this.timer);
    this.timer = null;
    this.playButton.textContent = "Play";
    this.playButton.setAttribute("aria-pressed", "false");
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering of the side panels

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The legend of the layer on screen: reflectivity classes with rain rates, or probability classes in %. */
function renderLegend(scale, layer = null) {
  const list = $("legend-scale");
  $("palette-picker").hidden = layer !== null; // the palettes are reflectivity's
  list.dataset.quantity = layer ? "probability" : "reflectivity";
  if (layer) {
    $("legend-title").textContent = `Probability of reflectivity \u2265 ${layer.threshold} dBZ (ensemble members, %)`;
    list.replaceChildren(
      ...PROBABILITY_SCALE.map(({ probability, color }) => {
        const item = element("li");
        const swatch = element("span", "swatch");
        swatch.style.backgroundColor = color;
        item.append(swatch, element("span", "dbz", formatProbability(probability)));
        return item;
      }),
    );
    return;
  }
  $("legend-title").textContent = "Reflectivity (dBZ) and rain rate (mm/h, Marshall-Palmer)";
  list.replaceChildren(
    ...scale.map(({ dbz, color }) => {
      const item = element("li");
      const swatch = element("span", "swatch");
      swatch.style.backgroundColor = color;
      item.append(swatch, element("span", "dbz", `${dbz}`), element("span", "rate", formatRainRate(dbzToRainRate(dbz))));
      return item;
    }),
  );
}

function showProductMeta(product, title) {
  $("product-title").textContent = title;
  $("product-reference").textContent = formatUtc(product.referenceTime);
  const source = $("product-source");
  source.textContent = sourceLabel(product.source, product.id);
  source.className = `badge source-${product.source ?? "unknown"}`;
  // The checkpoint's sha256 names the model only when the model ran (not under the fallback).
  const version = product.modelVersion && product.source !== "extrapolation"
    ? ` (${String(product.modelVersion).slice(0, 12)})` : "";
  $("product-model").textContent = `${product.model ?? (product.source === "extrapolation" ? "optical flow" : "—")}${version}`;
  const job = $("product-job");
  job.textContent = shortId(product.id);
  job.title = product.id;
}

function statusPill(status) {
  return element("span", `pill status-${status}`, status);
}

function renderSlots(slots, onShow) {
  const list = $("slots-list");
  if (slots.length === 0) { list.replaceChildren(element("li", "empty", "No scheduled slots yet.")); return; }
  list.replaceChildren(
    ...slots.map((slot) => {
      const item = element("li", `run status-${slot.status}`);
      item.dataset.jobId = slot.id;
      const head = element("div", "run-head");
      head.append(element("span", "run-time", formatClock(slot.referenceTime)), statusPill(slot.status));
      if (slot.status === "successful") head.append(element("span", "run-source", sourceLabel(slot.source, slot.id)));
      item.append(head);
      if (slot.message && slot.status !== "successful") item.append(element("p", "run-message", slot.message));
      if (slot.status === "successful") {
        const show = element("button", "link-button", "Show");
        show.type = "button";
        show.addEventListener("click", () => onShow(slot));
        item.append(show);
      }
      return item;
    }),
  );
}

/** "Reference 12:18Z · 3 lead steps (to +18 min) · PredRNN · model PredRNN-v2": what a job is. */
export function jobFacts(job) {
  const facts = [job.referenceTime ? `Reference ${formatUtc(job.referenceTime)}` : "Reference time once the scans are read"];
  const steps = job.steps ?? (job.leads.length || null);
  if (steps) facts.push(`${steps} lead step${steps === 1 ? "" : "s"} (to +${steps * job.timestep} min)`);
  if (job.source) facts.push(sourceLabel(job.source, job.id));
  if (job.model && job.source !== "extrapolation") facts.push(`model ${job.model}`);
  return facts.join(" \u00b7 ");
}

function renderJobs(jobs, onShow) {
  const list = $("jobs-list");
  if (jobs.length === 0) { list.replaceChildren(element("li", "empty", "No on-demand forecasts yet.")); return; }
  list.replaceChildren(
    ...jobs.map((job) => {
      const item = element("li", `run status-${job.status}`);
      item.dataset.jobId = job.id;
      const head = element("div", "run-head");
      const id = element("span", "run-id mono", shortId(job.id));
      id.title = job.id;
      head.append(id, statusPill(job.status), element("span", "run-time", formatClock(job.created)));
      item.append(head, element("p", "run-facts", jobFacts(job)));
      // A bar only while there is progress to show: a failed job is failed, not stuck at 5 %.
      if (job.status === "accepted" || job.status === "running") {
        const bar = element("progress", "run-progress");
        bar.max = 100;
        bar.value = job.progress;
        bar.setAttribute("aria-label", `progress ${job.progress}%`);
        item.append(bar);
      }
      if (job.message) {
        item.append(element("p", "run-message", job.status === "failed" ? `Failed: ${job.message}` : job.message));
      }
      if (job.status === "successful") item.append(resultLinks(job, onShow));
      return item;
    }),
  );
}

function resultLinks(job, onShow) {
  const links = element("p", "links");
  const show = element("button", "link-button", "Show in player");
  show.type = "button";
  show.addEventListener("click", () => onShow(job));
  const download = element("a", "", "netCDF");
  download.href = netcdfUrl(job.id);
  download.setAttribute("download", `${job.id}.nc`);
  links.append(show, download);
  return links;
}

// ---------------------------------------------------------------------------------------------
// The page

class Viewer {
  constructor() {
    this.player = new Player();
    this.latestId = null;
    // /viewer?job=<id> opens that job instead of the latest nowcast (and waits for it to finish).
    this.pendingJobId = requestedJob(window.location.search);
    this.viewingLatest = this.pendingJobId === null;
    this.refreshing = false;
    this.refreshAgain = false;
    // ?domain=<id> opens that radar domain; null until GET /domains says there is more than one.
    this.requestedDomain = requestedDomain(window.location.search);
    this.domains = null;
    this.skill = { threshold: "30dBZ" };
    this.report = null;
    this.config = null;
    this.configFetchedAt = Date.now();
    this.comparison = new Comparison(this.player.map);
    this.player.onFrame = (product, frame) => this.comparison.follow(product, frame, this.player.scale);
    $("back-to-latest").addEventListener("click", () => this.showLatest());
    this.setupUpload();
    this.setupPalette();
    this.setupLimits();
    this.setupDomains();
    this.setupLayers();
  }

  async start() {
    renderLegend(this.player.scale);
    this.config = await fetchViewerConfig().catch(() => null);
    this.configFetchedAt = Date.now();
    $("limits-open").hidden = !this.config?.model_card;
    await this.loadDomains();
    await this.refresh();
    window.setInterval(() => this.refresh(), refreshMs(window.location.search));
  }

  setupPalette() {
    const select = $("palette-select");
    select.value = storedPalette();
    select.addEventListener("change", () => {
      storePalette(select.value);
      const scale = paletteScale(select.value);
      renderLegend(scale, this.player.layer);
      this.player.setPalette(scale);
      this.comparison.recolour(scale);
    });
  }

  setupLimits() {
    const dialog = $("limits-dialog");
    $("limits-open").addEventListener("click", async () => {
      const card = await fetchModelCard().catch(() => null);
      $("limits-text").textContent = card ?? "No model card is available for the served checkpoint.";
      dialog.showModal();
      // The limits first: that is what the badge's reader came for.
      const at = card ? card.search(/^## Known limits/m) : -1;
      if (at > 0) $("limits-text").textContent = `${card.slice(at)}\n\n----\n\n${card.slice(0, at)}`;
    });
  }

  setupDomains() {
    $("domain-select").addEventListener("change", (event) => this.switchDomain(event.target.value));
  }

  /**
   * The radar domains (GET /domains). With one domain (or an API without domains) the page reads the
   * default routes and shows no switcher; with several it reads the chosen one's: ?domain=, else the
   * file's default.
   */
  async loadDomains() {
    const answer = await fetchDomains().catch(() => null);
    const list = Array.isArray(answer?.domains) ? answer.domains : [];
    if (list.length <= 1) {
      this.domains = null;
      $("domain-picker").hidden = true;
      setDomain(null);
      return;
    }
    this.domains = list;
    let chosen = currentDomain();
    if (chosen === null) {
      const asked = list.find((d) => d.id === this.requestedDomain);
      if (this.requestedDomain && !asked) this.setConnection(`No domain ${this.requestedDomain}: showing ${answer.default}`, false);
      chosen = asked ? asked.id : answer.default ?? list[0].id;
      setDomain(chosen);
    }
    this.renderDomains();
  }

  /** The switcher: every domain by title; an unhealthy one is marked with the reason and cannot be picked. */
  renderDomains() {
    const select = $("domain-select");
    const chosen = currentDomain();
    select.replaceChildren(
      ...this.domains.map((domain) => {
        const ok = domain.health?.ok !== false;
        const title = String(domain.title || domain.id);
        const option = element("option", ok ? "" : "unhealthy", ok ? title : `${title} \u2014 unavailable: ${domain.health?.detail ?? "unhealthy"}`);
        option.value = domain.id;
        option.dataset.health = ok ? "ok" : "unhealthy";
        // Not selectable: nothing fresh to show. The one in the address stays, marked, so a link still opens.
        option.disabled = !ok && domain.id !== chosen;
        return option;
      }),
    );
    select.value = chosen;
    $("domain-picker").hidden = false;
    const current = this.domains.find((d) => d.id === chosen);
    const health = $("domain-health");
    const ok = current?.health?.ok !== false;
    health.hidden = ok;
    health.textContent = ok ? "" : `Domain ${current?.title || chosen} is unhealthy: ${current?.health?.detail ?? ""}`;
    const grid = Array.isArray(current?.grid) ? ` \u00b7 ${current.grid[0]} \u00d7 ${current.grid[1]} cells` : "";
    $("product-domain").textContent = `${current?.title || chosen} (${chosen})${grid}`;
    $("product-domain-row").hidden = false;
  }

  /** Show another domain: its slots, latest nowcast, skill and fields; the address names it. */
  switchDomain(id) {
    if (!this.domains || id === currentDomain()) return;
    setDomain(id);
    const search = searchWith(searchWith(window.location.search, "job", null), "domain", id);
    window.history.replaceState(null, "", `${window.location.pathname}${search}`);
    this.latestId = null;
    this.latest = null;
    this.pendingJobId = null;
    this.viewingLatest = true;
    this.report = null;
    this.renderDomains();
    this.player.pause();
    this.player.loadAbort?.abort();
    this.player.frames = [];
    this.player.product = null;
    this.player.map.setField(null, this.player.scale);
    $("frame-placeholder").hidden = false;
    $("frame-placeholder").textContent = "Loading the domain's latest nowcast…";
    $("slots-list").replaceChildren(element("li", "empty", "Loading…"));
    this.refresh();
  }

  setupLayers() {
    $("layer-select").addEventListener("change", (event) => {
      const picked = layersOf(this.player.product).find((l) => l.value === event.target.value);
      this.player.layer = picked?.layer ?? null;
      renderLegend(this.player.scale, this.player.layer);
      this.player.setLayer(this.player.layer);
    });
  }

  /** The layer picker of a product: shown for an ensemble (reflectivity or a probability), hidden otherwise. */
  showLayers(product) {
    const layers = layersOf(product);
    const picker = $("layer-picker");
    const select = $("layer-select");
    const ensemble = layers.length > 1;
    // Keep the threshold being looked at when the next product offers it too.
    const kept = ensemble ? layers.find((l) => l.layer && l.layer.threshold === this.player.layer?.threshold) : null;
    this.player.layer = kept?.layer ?? null;
    select.replaceChildren(...layers.map((l) => {
      const option = element("option", "", l.label);
      option.value = l.value;
      return option;
    }));
    select.value = kept?.value ?? "reflectivity";
    select.disabled = !ensemble;
    picker.hidden = !ensemble;
    $("layer-members").textContent = ensemble ? `${product.ensemble.members} members` : "";
    renderLegend(this.player.scale, this.player.layer);
  }

  /** Age of the newest scan behind any successful slot, and a warning past the stale limit. */
  showScanAge(slots) {
    const line = $("scan-age");
    // On the stack's clock, which a local stack may run faster than the browser's.
    const age = scanAge(slots, stackNow(this.config, this.configFetchedAt), this.config?.stale_after_minutes ?? null);
    line.hidden = age === null;
    if (age === null) return;
    line.textContent = age.text;
    line.classList.toggle("stale", age.stale);
    line.dataset.stale = String(age.stale);
  }

  /** A note when the product on screen comes from the stream with the weaker recent skill. */
  showCaveat(product) {
    const note = $("skill-caveat");
    const text = product ? skillCaveat(this.report, product.kind === "nowcast" ? streamOf(product.id) : "model", product.source) : null;
    note.hidden = text === null;
    note.textContent = text ?? "";
  }

  setConnection(text, ok) {
    const line = $("connection");
    line.textContent = text;
    line.classList.toggle("error", !ok);
  }

  async refresh() {
    if (this.refreshing) { this.refreshAgain = true; return; }
    this.refreshing = true;
    const domain = currentDomain();
    try {
      if (this.domains) await this.loadDomains(); // health may have changed
      const [slots, jobs, report] = await Promise.all([
        fetchSlots().catch((error) => ({ error })),
        fetchJobs().catch((error) => ({ error })),
        fetchVerification().catch(() => null), // the skill panel is optional: never blocks the rest
      ]);
      if (domain !== currentDomain()) return; // switched meanwhile: the next refresh reads the new one
      renderSkill(report, this.skill);
      this.report = report;
      if (!slots.error) this.showScanAge(slots);
      this.showCaveat(this.player.product);
      const failures = [slots, jobs].filter((part) => part.error).map((part) => part.error.message);
      if (this.pendingJobId !== null) await this.openJob(this.pendingJobId);
      if (!slots.error) renderSlots(slots, (slot) => this.showProduct(slot, false));
      if (!jobs.error) renderJobs(jobs, (job) => this.showProduct(job, false));
      if (!slots.error) {
        // The default product follows the source policy, as /nowcasts/latest does.
        const latest = await fetchLatestNowcast({ slots, served: report?.policy?.served ?? "model" });
        if (domain !== currentDomain()) return;
        if (latest === null && this.viewingLatest) {
          $("frame-placeholder").hidden = false;
          $("frame-placeholder").textContent = "No successful nowcast yet.";
        }
        if (latest && latest.id !== this.latestId) {
          this.latestId = latest.id;
          this.latest = latest;
          if (this.viewingLatest) this.showProduct(latest, true);
        }
        $("back-to-latest").hidden = this.viewingLatest || !this.latest;
      }
      if (failures.length) this.setConnection(`API problem: ${failures.join("; ")}`, false);
      else this.setConnection(`Updated ${new Date().toISOString().slice(11, 19)}Z`, true);
    } catch (error) {
      this.setConnection(`API unreachable: ${error.message}`, false);
    } finally {
      this.refreshing = false;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        this.refresh();
      }
    }
  }

  /**
   * Show the job of a `?job=` link: in the player once successful; until then its status, looked at
   * again on every refresh; a failed, unknown or unreadable job is reported and no longer polled.
   */
  async openJob(jobId) {
    this.viewingLatest = false;
    $("back-to-latest").hidden = !this.latest;
    $("product-title").textContent = `Job ${shortId(jobId)}`;
    const placeholder = $("frame-placeholder");
    try {
      const { job } = await fetchJob(jobId);
      if (this.pendingJobId !== jobId) return; // the user picked something else meanwhile
      if (job.status === "successful") {
        this.pendingJobId = null;
        this.showProduct(job, false);
        return;
      }
      showProductMeta(job, job.kind === "nowcast" ? "Scheduled nowcast" : `On-demand forecast ${shortId(job.id)}`);
      const unfinished = job.status === "accepted" || job.status === "running";
      if (!unfinished) this.pendingJobId = null;
      placeholder.textContent = unfinished
        ? `Job ${shortId(job.id)} is ${job.status} (${job.progress}%): shown here when it finishes.`
        : `Job ${shortId(job.id)} ${job.status}: ${job.message || "no reason given"}`;
    } catch (error) {
      // 401 (keyed reads, no key yet) and network trouble may pass: keep trying on refresh.
      if (error instanceof ApiError && error.status === 404) this.pendingJobId = null;
      $("product-job").textContent = shortId(jobId);
      $("product-job").title = jobId;
      placeholder.textContent = error instanceof ApiError && error.status === 404
        ? `No job ${jobId}.`
        : `Could not load job ${shortId(jobId)}: ${error.message}`;
    }
    placeholder.hidden = false;
    this.player.map.setField(null, this.player.scale);
  }

  showProduct(product, isLatest) {
    this.pendingJobId = null;
    this.viewingLatest = isLatest;
    // The address names what is shown, so it can be bookmarked or sent to a colleague.
    const search = searchWithJob(window.location.search, isLatest ? null : product.id);
    if (search !== window.location.search) window.history.replaceState(null, "", `${window.location.pathname}${search}`);
    $("back-to-latest").hidden = isLatest || !this.latest;
    const title = isLatest
      ? "Latest scheduled nowcast"
      : product.kind === "nowcast" ? `Scheduled nowcast ${formatClock(product.referenceTime)}` : `On-demand forecast ${shortId(product.id)}`;
    showProductMeta(product, title);
    this.showCaveat(product);
    this.showLayers(product);
    this.player.load(product);
  }

  showLatest() {
    if (this.latest) this.showProduct(this.latest, true);
  }

  setupUpload() {
    const form = $("upload-form");
    const keyInput = $("api-key");
    keyInput.value = storedApiKey();
    // A deployment may key the reads too (read_requires_key): a typed key then unlocks the lists
    // at once, without waiting for an upload.
    keyInput.addEventListener("change", () => {
      if ($("remember-key").checked && keyInput.value.trim()) {
        storeApiKey(keyInput.value.trim());
        this.refresh();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.upload();
    });
  }

  uploadStatus(message, { progress = null, error = false } = {}) {
    $("upload-status").hidden = false;
    const line = $("upload-message");
    line.textContent = message;
    line.classList.toggle("error", error);
    const bar = $("upload-progress");
    bar.hidden = progress === null;
    if (progress !== null) bar.value = progress;
  }

  async upload() {
    const files = Array.from($("upload-files").files ?? []);
    const apiKey = $("api-key").value.trim();
    const steps = $("upload-steps").value.trim();
    $("upload-links").replaceChildren();
    if (files.length === 0) { this.uploadStatus("Choose one or more netCDF files first.", { error: true }); return; }
    if (!apiKey) { this.uploadStatus("Type your API key first.", { error: true }); return; }
    storeApiKey($("remember-key").checked ? apiKey : "");

    const submit = $("upload-submit");
    submit.disabled = true;
    try {
      this.uploadStatus(`Uploading ${files.length} file(s)…`, { progress: 0 });
      const { job } = await submitForecast({ files, steps: steps ? Number(steps) : null, apiKey });
      $("upload-status").dataset.jobId = job.id;
      await this.follow(job);
    } catch (error) {
      const text = error instanceof ApiError ? `Rejected: ${error.message}` : `Upload failed: ${error.message}`;
      this.uploadStatus(text, { error: true });
    } finally {
      submit.disabled = false;
    }
  }

  /** Poll a job until it ends, honouring Retry-After; then offer its result. */
  async follow(initial) {
    let job = initial;
    let delay = POLL_MIN_S;
    const terminal = new Set(["successful", "failed", "dismissed", "skipped"]);
    while (!terminal.has(job.status)) {
      this.uploadStatus(`Job ${shortId(job.id)}: ${job.status}${job.message ? ` (${job.message})` : ""}`, { progress: job.progress });
      await new Promise((resolve) => window.setTimeout(resolve, delay * 1000));
      const answer = await fetchJob(job.id);
      job = answer.job;
      delay = Math.min(POLL_MAX_S, Math.max(POLL_MIN_S, answer.retryAfter ?? POLL_MIN_S));
    }
    $("upload-status").dataset.status = job.status;
    this.refresh();
    if (job.status === "successful") {
      this.uploadStatus(`Job ${shortId(job.id)} finished: successful.`, { progress: 100 });
      $("upload-links").replaceChildren(...resultLinks(job, (picked) => this.showProduct(picked, false)).childNodes);
      this.showProduct(job, false);
    } else {
      this.uploadStatus(`Job ${shortId(job.id)} ${job.status}: ${job.message || "no reason given"}`, { error: true });
    }
  }
}

new Viewer().start();
