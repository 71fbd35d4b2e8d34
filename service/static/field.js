// One lead time as data: decode the API's map field (?f=field), colour it, read a value back.
//
// The API sends one byte per cell (value = offset + code * step in the field's `units`, 255 = no
// data), rows north to south (service/fields.py): reflectivity in dBZ, or for an ensemble's
// `quantity=probability` a probability 0..1 (step 0.01). Colouring happens here, with whichever palette the forecaster chose, into a
// canvas of exactly one pixel per cell; the map scales that canvas without smoothing, so a cell
// stays a sharp square at any zoom.

import { dbzToRainRate } from "./scale.js";

/** Below the first class (5 dBZ) nothing is drawn: the map shows through. */
const TRANSPARENT = [0, 0, 0, 0];

/** Decode a field document into {width, height, extent, codes (Uint8Array), ...}. */
export function decodeField(document) {
  const binary = atob(document.values);
  const codes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) codes[i] = binary.charCodeAt(i);
  if (codes.length !== document.width * document.height) {
    throw new Error(`field of ${codes.length} cells, expected ${document.width} x ${document.height}`);
  }
  return { ...document, codes, values: undefined };
}

/** True for a field of exceedance probabilities (0..1) rather than reflectivity (dBZ). */
export function isProbability(field) {
  return field?.quantity === "probability";
}

/** The value of a code in the field's units (dBZ, or a probability 0..1), or null for no data. */
export function codeToValue(field, code) {
  const { encoding } = field;
  // Every field document has the generic offset/step; an older API sent only the dBZ names.
  const offset = encoding.offset ?? encoding.offset_dbz;
  const step = encoding.step ?? encoding.step_dbz;
  return code === encoding.nodata ? null : offset + code * step;
}

/** dBZ of a code, or null for no data (a reflectivity field). */
export function codeToDbz(field, code) {
  return codeToValue(field, code);
}

function hexToRgba(hex) {
  const value = Number.parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255, 255];
}

/**
 * The RGBA colour of every code 0..255 under a scale (lower class bounds in the field's units:
 * [{dbz, color}] for reflectivity, [{probability, color}] for a probability): one lookup per cell
 * instead of a search through the classes.
 */
export function colourTable(field, scale) {
  const table = new Uint8ClampedArray(256 * 4);
  // Codes are exact hundredths of a probability: compare in whole percent, so 0.3 is in the 30 % class.
  const round = isProbability(field) ? (v) => Math.round(v * 100) : (v) => v;
  for (let code = 0; code < 256; code += 1) {
    const value = codeToValue(field, code);
    let rgba = TRANSPARENT;
    if (value !== null) {
      for (const entry of scale) if (round(value) >= round(entry.probability ?? entry.dbz)) rgba = hexToRgba(entry.color);
    }
    table.set(rgba, code * 4);
  }
  return table;
}

/** A canvas of width x height pixels, one per cell, coloured by `scale`. */
export function paintField(field, scale) {
  const canvas = document.createElement("canvas");
  canvas.width = field.width;
  canvas.height = field.height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(field.width, field.height);
  const table = colourTable(field, scale);
  const { codes } = field;
  for (let i = 0; i < codes.length; i += 1) {
    const at = codes[i] * 4;
    image.data[i * 4] = table[at];
    image.data[i * 4 + 1] = table[at + 1];
    image.data[i * 4 + 2] = table[at + 2];
    image.data[i * 4 + 3] = table[at + 3];
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

/**
 * The cell under a map coordinate [x, y] (the grid's own projection): {row, column, dbz, rate}
 * (reflectivity) or {row, column, probability} (0..1), or null off the grid. The values are null
 * for a no-data cell.
 */
export function valueAt(field, [x, y]) {
  const [west, south, east, north] = field.extent;
  const column = Math.floor(((x - west) / (east - west)) * field.width);
  const row = Math.floor(((north - y) / (north - south)) * field.height);
  if (column < 0 || row < 0 || column >= field.width || row >= field.height) return null;
  const value = codeToValue(field, field.codes[row * field.width + column]);
  if (isProbability(field)) return { row, column, probability: value };
  return { row, column, dbz: value, rate: value === null ? null : dbzToRainRate(value) };
}
