// Reflectivity colour scale of the quicklook PNGs, and times as a forecaster reads them.
//
// REFLECTIVITY_SCALE lists the lower bound of each colour class in dBZ: the 5 dBZ classes from 5 to
// 75 dBZ that the PNG renderer draws with (model/visualization/palette.py, REFLECTIVITY_LEVELS and
// REFLECTIVITY_COLOURS, the NWS reflectivity palette). Change both together, or the legend lies;
// tests/viewer checks that they agree. Below 5 dBZ the quicklook is white (no echo). Rain rates
// come from Marshall-Palmer Z = 200 R^1.6 (docs/contracts.md), the convention of pysteps.

export const MARSHALL_PALMER_A = 200.0;
export const MARSHALL_PALMER_B = 1.6;

/** Colour classes: echoes >= dbz (and below the next bound, the last one up to 75) in `color`. */
export const REFLECTIVITY_SCALE = Object.freeze([
  { dbz: 5, color: "#04e9e7" },
  { dbz: 10, color: "#019ff4" },
  { dbz: 15, color: "#0300f4" },
  { dbz: 20, color: "#02fd02" },
  { dbz: 25, color: "#01c501" },
  { dbz: 30, color: "#008e00" },
  { dbz: 35, color: "#fdf802" },
  { dbz: 40, color: "#e5bc00" },
  { dbz: 45, color: "#fd9500" },
  { dbz: 50, color: "#fd0000" },
  { dbz: 55, color: "#d40000" },
  { dbz: 60, color: "#bc0000" },
  { dbz: 65, color: "#f800fd" },
  { dbz: 70, color: "#9854c6" },
]);

/**
 * The colour-blind-safe option, same classes: under deuteranopia (Machado et al. 2009) every two
 * neighbouring classes stay at least 12 CIEDE2000 apart (tests/viewer/test_palette.py), where the
 * NWS palette's 40/45 dBZ pair is 3.5 and 55/60 dBZ 5.7, exactly where warnings start. It runs
 * light to dark three times on the axes a deuteranope keeps (lightness, blue-yellow): blues for
 * light rain, yellows to browns for moderate to heavy, pinks to purples for intense, near-black
 * above 70 dBZ.
 */
export const COLOUR_BLIND_SCALE = Object.freeze([
  { dbz: 5, color: "#c6dbef" },
  { dbz: 10, color: "#6baed6" },
  { dbz: 15, color: "#2171b5" },
  { dbz: 20, color: "#08306b" },
  { dbz: 25, color: "#fff7bc" },
  { dbz: 30, color: "#ecb83a" },
  { dbz: 35, color: "#c08a2a" },
  { dbz: 40, color: "#8c5a14" },
  { dbz: 45, color: "#4a2a05" },
  { dbz: 50, color: "#f5c6e8" },
  { dbz: 55, color: "#c77dbd" },
  { dbz: 60, color: "#8e3b8a" },
  { dbz: 65, color: "#4d1150" },
  { dbz: 70, color: "#1a1a1a" },
]);

/**
 * Exceedance probability of an ensemble product (P(reflectivity >= threshold), 0..1) in 10 % classes:
 * lower bounds 10 %, 20 %, ... 90 %; below 10 % nothing is drawn. ColorBrewer's YlGnBu ramp (pale
 * yellow-green to dark navy): its lightness falls class by class, also for a deuteranope, so the
 * order never depends on hue, and it never reads as reflectivity's green-yellow-red. Nine classes
 * from one ramp cannot be 12 CIEDE2000 apart like the colour-blind palette's: neighbours here are at
 * least 7 apart for a deuteranope (tests/viewer/test_palette.py).
 */
export const PROBABILITY_SCALE = Object.freeze([
  { probability: 0.1, color: "#d6efb3" },
  { probability: 0.2, color: "#abdeb7" },
  { probability: 0.3, color: "#73c8bd" },
  { probability: 0.4, color: "#40b5c4" },
  { probability: 0.5, color: "#2498c1" },
  { probability: 0.6, color: "#2072b1" },
  { probability: 0.7, color: "#234da0" },
  { probability: 0.8, color: "#1f2f87" },
  { probability: 0.9, color: "#081d58" },
]);

/** "40 %" for a probability 0..1 (whole percent: the API sends hundredths). */
export function formatProbability(probability) {
  return `${Math.round(probability * 100)} %`;
}

export const PALETTES = Object.freeze({
  nws: { label: "NWS (as the quicklooks)", scale: REFLECTIVITY_SCALE },
  "colour-blind": { label: "Colour-blind safe", scale: COLOUR_BLIND_SCALE },
});

/** The scale of a palette name; an unknown name is the NWS palette. */
export function paletteScale(name) {
  return (PALETTES[name] ?? PALETTES.nws).scale;
}

/**
 * Rain rate (mm/h) for a reflectivity (dBZ), Marshall-Palmer.
 * @param {number} dbz reflectivity in dBZ
 * @returns {number} rain rate in mm/h
 */
export function dbzToRainRate(dbz) {
  const z = 10 ** (dbz / 10);
  return (z / MARSHALL_PALMER_A) ** (1 / MARSHALL_PALMER_B);
}

/** A rain rate written with the precision a forecaster needs: 0.15, 1.3, 12, 205. */
export function formatRainRate(rate) {
  if (rate < 1) return rate.toFixed(2);
  if (rate < 10) return rate.toFixed(1);
  return Math.round(rate).toString();
}

/** "2026-01-01 12:06 UTC" for a Date; "—" for none. */
export function formatUtc(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "—";
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** "12:06Z" for a Date; "—" for none. */
export function formatClock(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "—";
  return `${date.toISOString().slice(11, 16)}Z`;
}

/** Lead time in minutes as "+30 min", "−12 min" (a true minus sign) or "±0 min". */
export function formatLead(minutes) {
  if (minutes > 0) return `+${minutes} min`;
  if (minutes < 0) return `\u2212${-minutes} min`;
  return "\u00b10 min";
}

/** Parse an ISO-8601 string or a slot id "nowcast-YYYYmmddTHHMMZ" into a Date (or null). */
export function parseTime(value) {
  if (typeof value !== "string" || value === "") return null;
  const compact = /(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})?Z/.exec(value);
  if (compact) {
    const [, y, mo, d, h, mi, s] = compact;
    return new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, s ? +s : 0));
  }
  // Naive ISO strings are UTC in this service (contracts: ISO-8601 UTC).
  const withZone = /[zZ]|[+-]\d{2}:?\d{2}$/.test(value) ? value : `${value}Z`;
  const date = new Date(withZone);
  return Number.isNaN(date.getTime()) ? null : date;
}
