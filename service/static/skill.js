// The skill panel: CSI by lead time for the model and extrapolation over the last 24 hours (POD and
// FAR on hover), the slots behind it, and which stream the source policy serves.
//
// The numbers come from GET /verification (pooled contingency tables, docs: Live verification);
// nothing is averaged here. The chart is an SVG built with DOM calls, coloured by viewer.css.

const SVG = "http://www.w3.org/2000/svg";
const STREAMS = ["model", "extrapolation"];
const SIZE = { width: 320, height: 170, left: 34, right: 10, top: 10, bottom: 28 };

/**
 * One stream's points at one threshold: [{lead, csi, pod, far, slots}], lead in minutes, scores in
 * [0, 1] or null where undefined (no event observed or forecast in the window).
 */
export function skillSeries(report, stream, threshold) {
  const leads = report?.sources?.[stream]?.leads ?? [];
  return leads.map((item) => {
    const scores = item.scores?.[threshold] ?? {};
    return { lead: item.lead_minutes, csi: scores.csi ?? null, pod: scores.pod ?? null, far: scores.far ?? null,
             slots: item.slots ?? 0 };
  });
}

function node(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function percent(value) {
  return value === null || value === undefined ? "n/a" : value.toFixed(2);
}

/** The chart of CSI against lead time for both streams (an <svg> element). */
export function skillChart(report, threshold) {
  const series = Object.fromEntries(STREAMS.map((stream) => [stream, skillSeries(report, stream, threshold)]));
  const maxLead = Math.max(6, ...STREAMS.flatMap((stream) => series[stream].map((p) => p.lead)));
  const plotW = SIZE.width - SIZE.left - SIZE.right;
  const plotH = SIZE.height - SIZE.top - SIZE.bottom;
  const x = (lead) => SIZE.left + (lead / maxLead) * plotW;
  const y = (value) => SIZE.top + (1 - value) * plotH;
  const svg = node("svg", { viewBox: `0 0 ${SIZE.width} ${SIZE.height}`, class: "skill-chart", role: "img",
                            "aria-label": `CSI at ${threshold} by lead time` });
  for (const tick of [0, 0.5, 1]) {
    svg.append(node("line", { x1: SIZE.left, x2: SIZE.width - SIZE.right, y1: y(tick), y2: y(tick), class: "grid" }));
    svg.append(node("text", { x: SIZE.left - 4, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, tick.toFixed(1)));
  }
  for (const lead of [0, maxLead / 2, maxLead]) {
    svg.append(node("text", { x: x(lead), y: SIZE.height - 12, class: "tick", "text-anchor": "middle" },
                    `${Math.round(lead)}`));
  }
  svg.append(node("text", { x: SIZE.left + plotW / 2, y: SIZE.height - 1, class: "tick", "text-anchor": "middle" },
                  "lead time (min)"));
  for (const stream of STREAMS) {
    const points = series[stream].filter((p) => p.csi !== null);
    if (points.length > 1) {
      svg.append(node("polyline", { points: points.map((p) => `${x(p.lead)},${y(p.csi)}`).join(" "),
                                    class: `skill-line ${stream}` }));
    }
    for (const p of points) {
      const dot = node("circle", { cx: x(p.lead), cy: y(p.csi), r: 3, class: `skill-dot ${stream}`,
                                   "data-stream": stream, "data-lead": p.lead });
      // Hover: the browser shows an SVG <title> as a tooltip.
      dot.append(node("title", {}, `${stream} +${p.lead} min: CSI ${percent(p.csi)}, POD ${percent(p.pod)}, ` +
                                   `FAR ${percent(p.far)} (${p.slots} slots)`));
      svg.append(dot);
    }
  }
  return svg;
}

/** Fill the panel: threshold buttons, the chart, the slots behind it and the policy's choice. */
export function renderSkill(report, state) {
  const panel = document.getElementById("skill-chart");
  const summary = document.getElementById("skill-summary");
  const policy = document.getElementById("skill-policy");
  const buttons = document.getElementById("skill-thresholds");
  if (!report) {
    panel.replaceChildren();
    summary.textContent = "No verification yet.";
    policy.textContent = "";
    return;
  }
  const thresholds = (report.thresholds_dbz ?? []).map((value) => `${value}dBZ`);
  if (!thresholds.includes(state.threshold)) state.threshold = thresholds[1] ?? thresholds[0];
  buttons.replaceChildren(...thresholds.map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name.replace("dBZ", " dBZ");
    button.setAttribute("aria-pressed", String(name === state.threshold));
    button.addEventListener("click", () => { state.threshold = name; renderSkill(report, state); });
    return button;
  }));
  panel.replaceChildren(skillChart(report, state.threshold));
  const slots = STREAMS.map((stream) => {
    const source = report.sources?.[stream];
    const missing = source?.missing_scans ? `, ${source.missing_scans} missing scans` : "";
    return `${stream} ${source?.slots ?? 0} slots${missing}`;
  });
  summary.textContent = `Last 24 h: ${slots.join("; ")}.`;
  const served = report.policy?.served ?? "model";
  policy.textContent = `Serving ${served}: ${report.policy?.reason ?? ""}`;
  policy.dataset.served = served;
}

/**
 * The note shown beside a product whose stream had the weaker skill over the window (pooled CSI at
 * 30 dBZ, all leads): null when it had the better or equal skill, or nothing is known. `source`
 * "extrapolation" on the model's stream is the fallback: its skill is the extrapolation's.
 */
export function skillCaveat(report, stream, source, threshold = "30dBZ") {
  const shown = source === "extrapolation" ? "extrapolation" : stream;
  const other = shown === "model" ? "extrapolation" : "model";
  const csi = (name) => report?.sources?.[name]?.all_leads?.[threshold]?.csi ?? null;
  const mine = csi(shown);
  const theirs = csi(other);
  if (mine === null || theirs === null || theirs <= mine) return null;
  const label = { model: "The model", extrapolation: "Extrapolation" };
  return `${label[other]} verified better over the last 24 h (CSI at ${threshold.replace("dBZ", " dBZ")}: ` +
    `${theirs.toFixed(2)} against ${mine.toFixed(2)} for ${shown === "model" ? "the model" : "extrapolation"}, ` +
    "the source shown here).";
}
