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
