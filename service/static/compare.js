// Side by side: the model's and the extrapolation's forecast for one valid time, and the scan
// observed at that time once it has arrived, on three maps that share one view (pan or zoom one,
// all follow).
//
// A scheduled slot T has two products, nowcast-T (model) and nowcast-T-extrapolation; the scan
// observed at a valid time V is the newest scan (lead 0) of slot V's product, so it exists once
// slot V has run. An on-demand forecast has no extrapolation twin; its observed panel still looks
// for slot V.

import { compactTime, fetchField, fieldUrl, observedAtUrl, streamOf } from "./api.js";
import { FieldMap } from "./map.js";
import { formatClock } from "./scale.js";

const $ = (id) => document.getElementById(id);
const PANELS = ["model", "extrapolation", "observed"];

/** The job ids of both streams of a scheduled product (null for an on-demand forecast). */
export function streamIds(product) {
  if (product.kind !== "nowcast") return null;
  const base = streamOf(product.id) === "extrapolation" ? product.id.replace(/-extrapolation$/, "") : product.id;
  return { model: base, extrapolation: `${base}-extrapolation` };
}

export class Comparison {
  constructor(mainMap) {
    this.mainMap = mainMap;
    this.maps = null; // built on first opening: three OpenLayers maps cost nothing until then
    this.open = false;
    this.cache = new Map(); // URL -> Promise of a field (or null)
    this.request = 0;
    this.last = null;
    this.scale = null;
    $("compare-toggle").addEventListener("click", () => this.toggle());
  }

  toggle() {
    this.open = !this.open;
    $("compare").hidden = !this.open;
    $("compare-toggle").setAttribute("aria-expanded", String(this.open));
    $("compare-toggle").textContent = this.open ? "Hide comparison" : "Compare side by side";
    if (this.open && this.last) this.follow(...this.last);
  }

  fetchOnce(url) {
    if (!this.cache.has(url)) this.cache.set(url, fetchField(url).catch(() => null));
    return this.cache.get(url);
  }

  /** The fields for the frame on screen: {model, extrapolation, observed} with a note for each. */
  async fieldsFor(product, frame) {
    const ids = streamIds(product);
    const note = {};
    const fields = {};
    if (frame.kind === "observed") {
      note.model = note.extrapolation = "an observed frame: no forecast";
      fields.observed = await this.fetchOnce(fieldUrl(product.id, frame.lead));
    } else {
      const modelId = ids?.model ?? product.id;
      fields.model = await this.fetchOnce(fieldUrl(modelId, frame.lead));
      fields.extrapolation = ids ? await this.fetchOnce(fieldUrl(ids.extrapolation, frame.lead)) : null;
      if (!ids) note.extrapolation = "none for an on-demand forecast";
      const valid = frame.validTime;
      fields.observed = valid ? (await this.fetchOnce(observedAtUrl(valid))) ?? (await this.fetchOnce(observedAtUrl(valid, "extrapolation"))) : null;
      if (!fields.observed && valid) note.observed = `no scan for ${formatClock(valid)} yet`;
    }
    for (const panel of PANELS) if (!fields[panel] && !note[panel]) note[panel] = "not available";
    return { fields, note };
  }

  /** Show the frame on screen (called by the player on every frame). */
  async follow(product, frame, scale) {
    this.last = [product, frame, scale];
    this.scale = scale;
    if (!this.open || !product) return;
    this.maps ??= Object.fromEntries(PANELS.map((panel) => [panel, new FieldMap($(`compare-${panel}`))]));
    const request = ++this.request;
    const { fields, note } = await this.fieldsFor(product, frame);
    if (request !== this.request) return; // a newer frame is on screen already
    for (const panel of PANELS) {
      const map = this.maps[panel];
      // The main map's view for all three: the streams and the scans share the slot's grid, and
      // panning or zooming any map moves the others.
      map.sharedView = this.mainMap.view;
      await map.setField(fields[panel], scale);
      if (map.view !== this.mainMap.view) map.map.setView(this.mainMap.view);
      $(`compare-${panel}-note`).textContent = fields[panel]
        ? `valid ${formatClock(new Date(fields[panel].valid_time))}` : `(${note[panel]})`;
      $(`compare-${panel}`).dataset.validTime = fields[panel]?.valid_time ?? "";
    }
    $("compare").dataset.frame = `${product.id} ${frame.lead} ${compactTime(frame.validTime ?? new Date(0))}`;
  }

  recolour(scale) {
    this.scale = scale;
    if (this.maps) for (const map of Object.values(this.maps)) map.recolour(scale);
  }
}
