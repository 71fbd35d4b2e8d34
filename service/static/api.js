// The public API as the viewer uses it: statusInfo job records, slot lists, PNG quicklooks.
//
// Every response is normalised here (normalizeJob, asList) so that the rest of the page reads one
// shape: { id, kind, status, progress, message, created, updated, finished, source, model,
// modelVersion, referenceTime, timestep, leads (forecast minutes), observedLeads (<= 0), ... }. The API follows OGC API - Processes statusInfo (jobID, status, ...)
// plus the job-store fields of docs/contracts.md (kind, steps, products, source, slot, ...).

import { decodeField } from "./field.js";
import { parseTime } from "./scale.js";

const API_KEY_STORAGE = "nowcast.apiKey";
// This module is served at <api root>/viewer/static/api.js; resolving from it keeps every request
// right when a proxy mounts the API under a sub-path (the API's root_path).
const API_ROOT = new URL("../../", import.meta.url);
const DEFAULT_TIMESTEP_MINUTES = 6;
const DEFAULT_LEAD_STEPS = 20;
const DEFAULT_INPUT_SCANS = 10;

// The radar domain the page shows (GET /domains): null reads the default domain's routes
// (/nowcasts, /verification), an id that domain's (/domains/{id}/nowcasts, ...).
let activeDomain = null;

/** Read slots, the latest nowcast, skill and observed scans of domain `id` (null: the default routes). */
export function setDomain(id) {
  activeDomain = id || null;
}

/** The domain the reads go to (null: the default routes). */
export function currentDomain() {
  return activeDomain;
}

/** `path` ("/nowcasts?limit=12") under the active domain: "/domains/harbour/nowcasts?limit=12". */
export function domainPath(path, domain = activeDomain) {
  return domain ? `/domains/${encodeURIComponent(domain)}${path}` : path;
}

/** Absolute URL of an API path such as "/jobs/abc" under the API root. */
export function apiUrl(path) {
  return new URL(path.replace(/^\/+/, ""), API_ROOT).href;
}

/** An HTTP error with the RFC 9457 problem details the API sends (title, detail). */
export class ApiError extends Error {
  constructor(status, title, detail, url) {
    super(`${status} ${title}${detail ? `: ${detail}` : ""}`);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.url = url;
  }
}

/** The API key the user typed earlier on this device ("" when none). */
export function storedApiKey() {
  try {
    return window.localStorage.getItem(API_KEY_STORAGE) ?? "";
  } catch {
    return ""; // storage disabled (private mode): the key lives only in the form
  }
}

/** Remember (or, with "", forget) the API key on this device. */
export function storeApiKey(key) {
  try {
    if (key) window.localStorage.setItem(API_KEY_STORAGE, key);
    else window.localStorage.removeItem(API_KEY_STORAGE);
  } catch {
    // storage disabled: nothing to do, the form keeps the key for this page
  }
}

function authHeaders() {
  const key = storedApiKey();
  // Reads are open by default; a deployment may key them too, so send the key when we have one.
  return key ? { "X-API-Key": key } : {};
}

async function problemFrom(response) {
  let title = response.statusText || "HTTP error";
  let detail = "";
  try {
    const body = await response.json();
    title = body.title ?? body.code ?? title;
    detail = body.detail ?? body.description ?? (typeof body.message === "string" ? body.message : "");
  } catch {
    // not JSON (a proxy page, an empty body): the status line is all we know
  }
  return new ApiError(response.status, title, detail, response.url);
}

/** GET a JSON document; throws ApiError on a non-2xx answer. */
export async function getJson(path, { signal } = {}) {
  const response = await fetch(apiUrl(path), {
    headers: { Accept: "application/json", ...authHeaders() },
    cache: "no-store",
    signal,
  });
  if (!response.ok) throw await problemFrom(response);
  return response.json();
}

/** The array inside a list answer: a bare array, or the first of the usual keys holding one. */
export function asList(body, keys = ["jobs", "nowcasts", "slots", "items", "results"]) {
  if (Array.isArray(body)) return body;
  if (body && typeof body === "object") {
    for (const key of keys) if (Array.isArray(body[key])) return body[key];
  }
  return [];
}

/**
 * The minutes of a product that have a PNG: forecast lead times (> 0) and observed scans (<= 0,
 * minutes from the reference time). `observed` is null when the answer does not say, so the player
 * has to ask the API.
 */
function leadsOf(raw, timestep) {
  const numbers = (values) => values.map(Number).filter(Number.isFinite).sort((a, b) => a - b);
  // statusInfo: lead_times lists every PNG, observed scans (<= 0) and forecast (> 0).
  if (Array.isArray(raw.lead_times) && raw.lead_times.length > 0) {
    const listed = numbers(raw.lead_times);
    return { forecast: listed.filter((m) => m > 0), observed: listed.filter((m) => m <= 0) };
  }
  // A job-store record: {lead minutes: path} and {minutes before the reference time: path}.
  const png = raw.products?.png;
  if (png && typeof png === "object" && Object.keys(png).length > 0) {
    const observed = numbers(Object.keys(raw.products.obs_png ?? {})).map((m) => -m).sort((a, b) => a - b);
    return { forecast: numbers(Object.keys(png)), observed };
  }
  const explicit = raw.lead_time_minutes ?? raw.lead_minutes;
  if (Array.isArray(explicit) && explicit.length > 0) return { forecast: numbers(explicit), observed: null };
  const steps = Number(raw.steps ?? raw.inputs?.steps ?? DEFAULT_LEAD_STEPS);
  return { forecast: Array.from({ length: steps }, (_, i) => (i + 1) * timestep), observed: null };
}

/** An ensemble job's {members, seed, thresholds_dbz} (thresholds sorted, dBZ), or null. */
function ensembleOf(value) {
  if (!value || typeof value !== "object") return null;
  const thresholds = (Array.isArray(value.thresholds_dbz) ? value.thresholds_dbz : []).map(Number).filter(Number.isFinite);
  if (Number(value.members) <= 1 || thresholds.length === 0) return null;
  return { members: Number(value.members), seed: value.seed ?? null, thresholds_dbz: thresholds.sort((a, b) => a - b) };
}

/** One job record (statusInfo or job store), whatever spelling, in the viewer's shape. */
export function normalizeJob(raw) {
  const id = String(raw.jobID ?? raw.job_id ?? raw.id ?? "");
  const kind = raw.kind ?? (id.startsWith("nowcast-") ? "nowcast" : "forecast");
  const timestep = Number(raw.timestep_minutes ?? DEFAULT_TIMESTEP_MINUTES);
  const slot = raw.slot ?? raw.scan_time ?? (kind === "nowcast" ? id : null);
  const referenceTime = parseTime(raw.forecast_reference_time ?? raw.reference_time ?? slot ?? "");
  const progress = Number(raw.progress ?? (raw.status === "successful" ? 100 : 0));
  const leads = leadsOf(raw, timestep);
  return {
    id,
    kind,
    status: String(raw.status ?? "unknown"),
    progress: Number.isFinite(progress) ? Math.max(0, Math.min(100, progress)) : 0,
    steps: Number.isFinite(Number(raw.steps)) && raw.steps !== null && raw.steps !== undefined ? Number(raw.steps) : null,
    message: typeof raw.message === "string" ? raw.message : "",
    created: parseTime(raw.created ?? ""),
    started: parseTime(raw.started ?? ""),
    finished: parseTime(raw.finished ?? ""),
    updated: parseTime(raw.updated ?? ""),
    source: raw.source ?? raw.meta?.source ?? null,
    model: raw.model ?? raw.meta?.model ?? null,
    modelVersion: raw.model_version ?? raw.meta?.model_version ?? null,
    slot,
    referenceTime,
    timestep,
    leads: leads.forecast,
    observedLeads: leads.observed,
    inputScans: Number(raw.input_scans ?? DEFAULT_INPUT_SCANS),
    domain: typeof raw.domain === "string" ? raw.domain : null,
    // {members, seed, thresholds_dbz} of an ensemble job; null for a deterministic one.
    ensemble: ensembleOf(raw.ensemble),
    links: Array.isArray(raw.links) ? raw.links : [],
  };
}

/** Recent scheduled slots, newest first (successful, skipped with the reason, failed). */
export async function fetchSlots({ limit = 12, signal } = {}) {
  const body = await getJson(domainPath(`/nowcasts?limit=${limit}`), { signal });
  return asList(body).map(normalizeJob);
}

/** Recent on-demand jobs, newest first. */
export async function fetchJobs({ limit = 10, signal } = {}) {
  const body = await getJson(`/jobs?limit=${limit}&kind=forecast`, { signal });
  return asList(body).map(normalizeJob).filter((job) => job.kind !== "nowcast");
}

/** One job's statusInfo, and the poll delay the API asks for (Retry-After, seconds). */
export async function fetchJob(jobId, { signal } = {}) {
  const response = await fetch(apiUrl(`/jobs/${encodeURIComponent(jobId)}`), {
    headers: { Accept: "application/json", ...authHeaders() },
    cache: "no-store",
    signal,
  });
  if (!response.ok) throw await problemFrom(response);
  const retryAfter = Number(response.headers.get("Retry-After"));
  return { job: normalizeJob(await response.json()), retryAfter: Number.isFinite(retryAfter) ? retryAfter : null };
}

/** The stream of a scheduled job id: "extrapolation" for nowcast-<slot>-extrapolation, else "model". */
export function streamOf(id) {
  return String(id).endsWith("-extrapolation") ? "extrapolation" : "model";
}

/**
 * The product the page shows by default, as /nowcasts/latest chooses it: the newest slot with a
 * successful product, from the stream the source policy serves (`served`), or the other stream's
 * product of that slot when the served one has none.
 */
export function newestProduct(slots, served = "model") {
  const successful = slots.filter((slot) => slot.status === "successful");
  if (successful.length === 0) return null;
  const timeOf = (slot) => String(slot.slot ?? "");
  const newest = successful.reduce((best, slot) => (timeOf(slot) > timeOf(best) ? slot : best));
  const same = successful.filter((slot) => timeOf(slot) === timeOf(newest));
  return same.find((slot) => streamOf(slot.id) === served) ?? same[0];
}

/** The newest successful scheduled nowcast of the served stream (null when there is none yet). */
export async function fetchLatestNowcast({ slots = null, served = "model", signal } = {}) {
  const candidates = slots ?? (await fetchSlots({ signal }));
  const latest = newestProduct(candidates, served);
  if (latest) return latest;
  try {
    return normalizeJob(await getJson(domainPath("/nowcasts/latest"), { signal }));
  } catch (error) {
    // 404: no nowcast yet; 406: the API would not send this one as JSON. Either way, none to show.
    if (error instanceof ApiError && error.status >= 400 && error.status < 500) return null;
    throw error;
  }
}

/** The live verification report of the last 24 h (GET /verification), or null where there is none. */
export async function fetchVerification({ signal } = {}) {
  try {
    return await getJson(domainPath("/verification"), { signal });
  } catch (error) {
    if (error instanceof ApiError && error.status >= 400 && error.status < 500) return null;
    throw error;
  }
}

/** URL of the PNG quicklook of a job's forecast at `lead` minutes. */
export function forecastPngUrl(jobId, lead) {
  return apiUrl(`/jobs/${encodeURIComponent(jobId)}/results?f=png&lead=${lead}`);
}

/**
 * URL of the PNG of an observed input scan `minutesBefore` >= 0 before the reference time: a
 * non-positive lead time of the same results resource (lead=0 is the last observed scan). The
 * job's statusInfo lists them in lead_times; a product without them answers 404.
 */
export function observedPngUrl(jobId, minutesBefore) {
  return apiUrl(`/jobs/${encodeURIComponent(jobId)}/results?f=png&lead=${-minutesBefore}`);
}

/** URL of the forecast product as netCDF (the default representation). */
export function netcdfUrl(jobId) {
  return apiUrl(`/jobs/${encodeURIComponent(jobId)}/results?f=netcdf`);
}

/** Fetch one PNG as an object URL (null when the API has no such image). */
export async function fetchImage(url, { signal } = {}) {
  const response = await fetch(url, { headers: { Accept: "image/png", ...authHeaders() }, signal });
  if (!response.ok) return null;
  const type = response.headers.get("Content-Type") ?? "";
  if (!type.startsWith("image/")) return null;
  return URL.createObjectURL(await response.blob());
}

/**
 * POST /forecast with netCDF files (multipart field `file`, repeated) and `steps`.
 * @returns {Promise<{job: object, location: string|null}>}
 */
export async function submitForecast({ files, steps, apiKey, signal }) {
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  if (steps) form.append("steps", String(steps));
  const response = await fetch(apiUrl("/forecast"), {
    method: "POST",
    headers: { Accept: "application/json", ...(apiKey ? { "X-API-Key": apiKey } : {}) },
    body: form,
    signal,
  });
  if (!response.ok) throw await problemFrom(response);
  return { job: normalizeJob(await response.json()), location: response.headers.get("Location") };
}

/**
 * URL of one lead time of a job as the map field (lead <= 0: an observed scan). `layer` picks an
 * ensemble product's quantity: {quantity: "probability", threshold: 30} is P(reflectivity >= 30
 * dBZ); without it the API sends the reflectivity (an ensemble's mean).
 */
export function fieldUrl(jobId, lead, layer = null) {
  let url = `/jobs/${encodeURIComponent(jobId)}/results?f=field&lead=${lead}`;
  if (layer?.quantity === "probability") url += `&quantity=probability&threshold=${layer.threshold}`;
  return apiUrl(url);
}

/** "20260301T1236Z" for a Date: the slot form of /nowcasts/{scan_time}. */
export function compactTime(date) {
  return `${date.toISOString().slice(0, 16).replace(/[-:]/g, "")}Z`;
}

/**
 * URL of the scan observed at `validTime`, as the newest scan (lead 0) of that slot's product:
 * the model's, or with `source` "extrapolation" the other stream's (same scan).
 */
export function observedAtUrl(validTime, source = "model") {
  const query = source === "model" ? "" : `&source=${source}`;
  return apiUrl(domainPath(`/nowcasts/${compactTime(validTime)}?f=field&lead=0${query}`));
}

/** Fetch and decode a map field (field.js); null when the API has none (404, 409). */
export async function fetchField(url, { signal } = {}) {
  const response = await fetch(url, { headers: { Accept: "application/vnd.nowcast.field+json", ...authHeaders() }, signal });
  if (response.status === 404 || response.status === 409) return null;
  if (!response.ok) throw await problemFrom(response);
  return decodeField(await response.json());
}

/**
 * The radar domains ({default, domains: [{id, title, grid, projection, health: {ok, detail}, ...}]}),
 * or null from an API without them (404).
 */
export async function fetchDomains({ signal } = {}) {
  try {
    return await getJson("/domains", { signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** What the page needs to know of the deployment: {stale_after_minutes, timestep_minutes, model_card, now, clock_speed}. */
export async function fetchViewerConfig({ signal } = {}) {
  return getJson("/viewer/config.json", { signal });
}

/** The model card of the served checkpoint (Markdown text), or null where there is none. */
export async function fetchModelCard({ signal } = {}) {
  const response = await fetch(apiUrl("/viewer/model-card"), { headers: authHeaders(), signal });
  return response.ok ? response.text() : null;
}
