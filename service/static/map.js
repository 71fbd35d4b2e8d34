// The map: a radar field drawn in the product's own projection, with borders, coastlines and a
// lat/lon graticule, zoom and pan (OpenLayers), and the value under the cursor.
//
// OpenLayers (global `ol`) and proj4js (global `proj4`) are vendored under vendor/ and loaded by
// index.html as classic scripts. The view's projection is the grid's (its PROJ string from the API,
// registered with proj4js), so the field is never resampled: each cell is one canvas pixel scaled
// without smoothing. The country outlines (Natural Earth via world-atlas, TopoJSON) are projected
// into the grid's projection instead. Far from the grid a projection such as UTM diverges, so the
// outlines are clamped to a lon/lat box around the grid before projecting, and the view may not
// leave that box: what the clamping bends lies outside anything the view can show.

import { isProbability, paintField, valueAt } from "./field.js";
import { formatProbability, formatRainRate } from "./scale.js";

const COUNTRIES_URL = new URL("./vendor/world-atlas/countries-50m.json", import.meta.url).href;
const MARGIN_DEGREES = 10; // the clamping box: the grid's lon/lat outline plus this, plus its own size
// The view may pan half the grid's size beyond each edge, and at least this far (metres; degrees
// for a lon/lat grid), so that even a small grid can be seen among its borders and coasts.
const VIEW_MARGIN = 0.5;
const VIEW_MARGIN_MIN = { m: 250_000, degrees: 2.5 };
const LONLAT = "EPSG:4326";

let countries = null; // one fetch of the TopoJSON per page, shared by every map
const projections = new Map(); // PROJ string -> registered OpenLayers projection code

/** The country outlines as OpenLayers features in lon/lat (fetched once). */
function countryFeatures() {
  countries ??= fetch(COUNTRIES_URL)
    .then((response) => {
      if (!response.ok) throw new Error(`${response.status} for the country outlines`);
      return response.json();
    })
    .then((topology) => new window.ol.format.TopoJSON().readFeatures(topology));
  return countries;
}

/** The OpenLayers projection of a field: its grid mapping, or a plain metric plane without one. */
function projectionOf(field, limit) {
  const ol = window.ol;
  const proj4text = field.grid_mapping?.proj4;
  if (!proj4text) {
    return new ol.proj.Projection({ code: "nowcast:plain", units: "m", extent: limit });
  }
  if (!projections.has(proj4text)) {
    const code = `nowcast:grid-${projections.size + 1}`;
    window.proj4.defs(code, proj4text);
    ol.proj.proj4.register(window.proj4);
    projections.set(proj4text, code);
  }
  const projection = ol.proj.get(projections.get(proj4text));
  projection.setExtent(limit);
  if (field.lonlat_bounds) projection.setWorldExtent(clampBox(field));
  return projection;
}

/** [west, south, east, north] in degrees inside which outlines are drawn exactly. */
function clampBox(field) {
  const [west, south, east, north] = field.lonlat_bounds;
  const padX = MARGIN_DEGREES + (east - west);
  const padY = MARGIN_DEGREES + (north - south);
  return [Math.max(-180, west - padX), Math.max(-89, south - padY), Math.min(180, east + padX), Math.min(89, north + padY)];
}

function viewLimit(field) {
  const [west, south, east, north] = field.extent;
  const degrees = /\+proj=(longlat|latlong)/.test(field.grid_mapping?.proj4 ?? "");
  const least = degrees ? VIEW_MARGIN_MIN.degrees : VIEW_MARGIN_MIN.m;
  const dx = Math.max((east - west) * VIEW_MARGIN, least);
  const dy = Math.max((north - south) * VIEW_MARGIN, least);
  return [west - dx, south - dy, east + dx, north + dy];
}

/** The outlines inside the clamping box, projected into the grid's projection. */
async function projectedOutlines(field) {
  const ol = window.ol;
  const box = clampBox(field);
  const toGrid = window.proj4(LONLAT, field.grid_mapping.proj4);
  const clampAndProject = (input, output = input, dimension = 2) => {
    for (let i = 0; i + 1 < input.length; i += dimension) {
      const lon = Math.min(box[2], Math.max(box[0], input[i]));
      const lat = Math.min(box[3], Math.max(box[1], input[i + 1]));
      const [x, y] = toGrid.forward([lon, lat]);
      output[i] = x;
      output[i + 1] = y;
    }
    return output;
  };
  const features = [];
  for (const feature of await countryFeatures()) {
    const geometry = feature.getGeometry();
    if (!geometry || !ol.extent.intersects(geometry.getExtent(), box)) continue;
    const projected = geometry.clone();
    projected.applyTransform(clampAndProject);
    features.push(new ol.Feature({ geometry: projected, name: feature.get("name") ?? "" }));
  }
  return features;
}

const sameArray = (a, b) => Boolean(a && b) && a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * One map panel. `setField(field, scale)` shows a decoded field (field.js); the first field, or one
 * on another grid, sets the view. Maps built with `{ view }` share that view (side by side).
 */
export class FieldMap {
  constructor(target, { view = null, readout = null } = {}) {
    const ol = window.ol;
    this.target = target;
    this.readout = readout;
    this.field = null;
    this.scale = null;
    this.canvas = null;
    this.gridKey = null;
    this.sharedView = view;
    this.fieldSource = new ol.source.ImageCanvas({
      canvasFunction: (extent, resolution, pixelRatio, size) => this.drawField(extent, size),
      ratio: 1,
      interpolate: false,
    });
    this.outlines = new ol.source.Vector();
    this.map = new ol.Map({
      target,
      controls: ol.control.defaults.defaults({ attribution: false, rotate: false }).extend([new ol.control.ScaleLine()]),
      layers: [
        new ol.layer.Image({ source: this.fieldSource }),
        new ol.layer.Vector({
          source: this.outlines,
          style: new ol.style.Style({ stroke: new ol.style.Stroke({ color: "rgba(40, 40, 40, 0.85)", width: 1 }) }),
        }),
      ],
      view: view ?? new ol.View({ center: [0, 0], zoom: 2 }),
    });
    // For tests and debugging: the element knows its map (no global object).
    target.fieldMap = this;
    if (readout) {
      this.map.on("pointermove", (event) => this.showValue(event.coordinate));
      target.addEventListener("pointerleave", () => this.showValue(null));
    }
  }

  get view() {
    return this.map.getView();
  }

  /** Show a field (or null: an empty map with its note) coloured with `scale`. */
  async setField(field, scale) {
    this.field = field;
    this.scale = scale;
    this.canvas = field ? paintField(field, scale) : null;
    this.target.dataset.drawn = field ? "field" : "none";
    if (field) await this.fitGrid(field);
    this.fieldSource.changed();
  }

  /** Repaint with another palette, same field. */
  recolour(scale) {
    if (this.field) this.setField(this.field, scale);
  }

  /** A new grid (or the first): a view in its projection, fitted to it, and its outlines. */
  async fitGrid(field) {
    const key = JSON.stringify([field.grid_mapping?.proj4 ?? null, field.extent]);
    if (key === this.gridKey) return;
    this.gridKey = key;
    const ol = window.ol;
    const limit = viewLimit(field);
    const projection = projectionOf(field, limit);
    if (this.sharedView) {
      this.map.setView(this.sharedView);
    } else if (this.view.getProjection() !== projection || !sameArray(this.lastLimit, limit)) {
      this.map.setView(new ol.View({ projection, extent: limit, showFullExtent: true, constrainOnlyCenter: false }));
      this.view.fit(field.extent, { padding: [8, 8, 8, 8] });
    }
    this.lastLimit = limit;
    this.setGraticule(field, projection);
    this.outlines.clear();
    this.target.dataset.geography = "none";
    if (field.grid_mapping?.proj4 && field.lonlat_bounds) {
      try {
        this.outlines.addFeatures(await projectedOutlines(field));
        this.target.dataset.geography = String(this.outlines.getFeatures().length);
      } catch (error) {
        this.target.dataset.geography = `error: ${error.message}`;
      }
    }
  }

  setGraticule(field, projection) {
    const ol = window.ol;
    if (this.graticule) this.map.removeLayer(this.graticule);
    this.graticule = null;
    if (!field.grid_mapping?.proj4 || !field.lonlat_bounds) return;
    this.graticule = new ol.layer.Graticule({
      strokeStyle: new ol.style.Stroke({ color: "rgba(60, 60, 60, 0.45)", width: 1, lineDash: [3, 4] }),
      showLabels: true,
      wrapX: false,
      extent: projection.getExtent(),
    });
    this.map.addLayer(this.graticule);
  }

  /** The ImageCanvas callback: the field's cells scaled to the requested extent, unsmoothed. */
  drawField(extent, size) {
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(size[0]));
    canvas.height = Math.max(1, Math.round(size[1]));
    if (!this.canvas || !this.field) return canvas;
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    const [west, south, east, north] = this.field.extent;
    const perUnitX = canvas.width / (extent[2] - extent[0]);
    const perUnitY = canvas.height / (extent[3] - extent[1]);
    context.drawImage(this.canvas, (west - extent[0]) * perUnitX, (extent[3] - north) * perUnitY,
                      (east - west) * perUnitX, (north - south) * perUnitY);
    return canvas;
  }

  /** The value under a map coordinate, written into the readout element. */
  showValue(coordinate) {
    if (!this.readout) return;
    const cell = coordinate && this.field ? valueAt(this.field, coordinate) : null;
    if (!cell) {
      this.readout.textContent = "Move the pointer over the field for its value.";
      delete this.readout.dataset.dbz;
      delete this.readout.dataset.probability;
      return;
    }
    let place = "";
    if (this.field.grid_mapping?.proj4) {
      const [lon, lat] = window.proj4(this.field.grid_mapping.proj4, LONLAT, coordinate);
      place = `${Math.abs(lat).toFixed(3)}\u00b0${lat >= 0 ? "N" : "S"} ${Math.abs(lon).toFixed(3)}\u00b0${lon >= 0 ? "E" : "W"}: `;
    }
    this.readout.dataset.cell = `${cell.row},${cell.column}`;
    if (isProbability(this.field)) {
      delete this.readout.dataset.dbz;
      this.readout.dataset.probability = cell.probability === null ? "" : String(cell.probability);
      const event = `P(>=${this.field.threshold_dbz} dBZ)`;
      this.readout.textContent = `${place}${event} ${cell.probability === null ? "no data" : formatProbability(cell.probability)}`;
      return;
    }
    delete this.readout.dataset.probability;
    this.readout.dataset.dbz = cell.dbz === null ? "" : String(cell.dbz);
    if (cell.dbz === null) {
      this.readout.textContent = `${place}no data`;
    } else {
      const rate = formatRainRate(cell.rate);
      const below = cell.dbz < 5 ? " (below the first class: no echo drawn)" : "";
      this.readout.textContent = `${place}${cell.dbz.toFixed(1)} dBZ, ${rate} mm/h${below}`;
    }
  }

  /** Map coordinate of the centre of a cell. */
  coordinateOfCell(row, column) {
    const [west, south, east, north] = this.field.extent;
    return [west + ((column + 0.5) / this.field.width) * (east - west),
            north - ((row + 0.5) / this.field.height) * (north - south)];
  }

  /** Pixel (relative to the map element) of the centre of a cell: for tests. */
  pixelOfCell(row, column) {
    return this.map.getPixelFromCoordinate(this.coordinateOfCell(row, column));
  }
}
