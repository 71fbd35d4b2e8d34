// Small facts about the page's state: how old the newest scan is, and the remembered palette.

import { formatClock } from "./scale.js";

const PALETTE_STORAGE = "nowcast.palette";

/** The palette chosen on this device earlier ("nws" when none, or storage is off). */
export function storedPalette() {
  try {
    return window.localStorage.getItem(PALETTE_STORAGE) ?? "nws";
  } catch {
    return "nws";
  }
}

/** Remember the palette on this device. */
export function storePalette(name) {
  try {
    window.localStorage.setItem(PALETTE_STORAGE, name);
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
}

/** "4 min", "3 h 12 min", "277 days". */
export function formatAge(minutes) {
  if (minutes < 120) return `${Math.max(0, Math.round(minutes))} min`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h ${Math.round(minutes % 60)} min`;
  return `${Math.floor(minutes / 1440)} days`;
}

/**
 * The stack's "now" (a Date): the config's `now`, read at `fetchedAtMs`, run on at its `clock_speed`.
 * Without a config, the browser's clock.
 */
export function stackNow(config, fetchedAtMs, nowMs = Date.now()) {
  if (!config?.now) return new Date(nowMs);
  return new Date(Date.parse(config.now) + (config.clock_speed ?? 1) * (nowMs - fetchedAtMs));
}

/**
 * The newest scan behind the successful slots (a slot's reference time is its newest scan) and its
 * age at `now`: {text, stale, minutes}, or null without any successful slot. `staleAfter` is the
 * workers' stale limit in minutes (null: unknown, never stale).
 */
export function scanAge(slots, now, staleAfter) {
  const times = slots.filter((slot) => slot.status === "successful" && slot.referenceTime).map((slot) => slot.referenceTime);
  if (times.length === 0) return null;
  const newest = new Date(Math.max(...times.map((time) => time.getTime())));
  const minutes = (now.getTime() - newest.getTime()) / 60_000;
  const stale = staleAfter !== null && minutes > staleAfter;
  const day = newest.toISOString().slice(0, 10);
  const base = `Newest scan ${formatClock(newest)} ${day}, ${formatAge(minutes)} old`;
  return { minutes, stale, text: stale ? `${base}: stale, past the ${staleAfter} min limit` : base };
}
