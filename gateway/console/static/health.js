// Health: each bot's state and probe, recent swaps, and request rate and p99 per language sampled from
// the gateway's own /metrics, drawn on a canvas (no chart library).
import { api, metricsText } from "./api.js";
import { $, clear, el, showError, when } from "./dom.js";

const SAMPLE_MS = 2000;
const KEEP = 60;
const COLORS = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6"];
let timer = null;
let previous = null;
const series = new Map(); // lang -> [{rate, p99}]
let languages = [];

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/;

export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    out.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return out;
}

function snapshot(samples) {
  const requests = {};
  const buckets = {};
  for (const s of samples) {
    const lang = s.labels.lang;
    if (!lang) continue;
    if (s.name === "gateway_requests_total") requests[lang] = (requests[lang] || 0) + s.value;
    if (s.name === "gateway_request_duration_seconds_bucket") {
      (buckets[lang] = buckets[lang] || {})[s.labels.le] = s.value;
    }
  }
  return { t: performance.now() / 1000, requests, buckets };
}

function p99(now, before) {
  const edges = Object.keys(now).sort((a, b) => Number(a) - Number(b));
  const counts = edges.map((le) => now[le] - ((before && before[le]) || 0));
  const total = counts[counts.length - 1] || 0;
  if (total <= 0) return null;
  const index = counts.findIndex((count) => count >= total * 0.99);
  const edge = Number(edges[index]);
  return Number.isFinite(edge) ? edge : Number(edges[index - 1] || 0);
}

async function sample() {
  const snap = snapshot(parseMetrics(await metricsText()));
  if (previous) {
    const dt = Math.max(snap.t - previous.t, 0.001);
    for (const lang of new Set([...languages, ...Object.keys(snap.buckets)])) {
      const rate = Math.max(0, (snap.requests[lang] || 0) - (previous.requests[lang] || 0)) / dt;
      const points = series.get(lang) || [];
      points.push({ rate, p99: snap.buckets[lang] ? p99(snap.buckets[lang], previous.buckets[lang]) : null });
      series.set(lang, points.slice(-KEEP));
    }
  }
  previous = snap;
  draw();
}

function draw() {
  const canvas = $("health-chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#ccc";
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  let maxRate = 1;
  let maxP99 = 0.1;
  for (const points of series.values()) {
    for (const p of points) {
      maxRate = Math.max(maxRate, p.rate);
      if (p.p99 !== null) maxP99 = Math.max(maxP99, p.p99);
    }
  }
  const x = (i) => (i / (KEEP - 1)) * (width - 20) + 10;
  const legend = [];
  [...series.keys()].sort().forEach((lang, n) => {
    const color = COLORS[n % COLORS.length];
    const points = series.get(lang);
    const offset = KEEP - points.length;
    ctx.strokeStyle = color;
    ctx.setLineDash([]);
    ctx.beginPath();
    points.forEach((p, i) => {
      const y = height - 10 - (p.rate / maxRate) * (height - 20);
      if (i === 0) ctx.moveTo(x(i + offset), y);
      else ctx.lineTo(x(i + offset), y);
    });
    ctx.stroke();
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    let started = false;
    points.forEach((p, i) => {
      if (p.p99 === null) return;
      const y = height - 10 - (p.p99 / maxP99) * (height - 20);
      if (!started) ctx.moveTo(x(i + offset), y);
      else ctx.lineTo(x(i + offset), y);
      started = true;
    });
    ctx.stroke();
    ctx.fillStyle = color;
    points.forEach((p, i) => {
      ctx.fillRect(x(i + offset) - 2, height - 10 - (p.rate / maxRate) * (height - 20) - 2, 4, 4);
    });
    const peak = Math.max(...points.map((p) => p.rate));
    const latencies = points.map((p) => p.p99).filter((v) => v !== null);
    const latest = latencies.length ? latencies[latencies.length - 1] : null;
    legend.push(`${lang}: peak ${peak.toFixed(2)} req/s, p99 ` +
      `${latest !== null ? `${(latest * 1000).toFixed(0)} ms` : "n/a"}`);
  });
  $("health-legend").textContent =
    `solid: requests/s (max ${maxRate.toFixed(2)}), dashed: p99 (max ${(maxP99 * 1000).toFixed(0)} ms) · ` +
    (legend.join(" · ") || "waiting for samples");
}

async function tables() {
  const [{ data: bots }, { data: swaps }] = await Promise.all([api("GET", "/bots"), api("GET", "/admin/swaps")]);
  languages = bots.bots.map((bot) => bot.lang);
  clear($("health-bots").tBodies[0]).append(...bots.bots.map((bot) => {
    const probe = bot.last_probe || {};
    return el("tr", { "data-lang": bot.lang },
      el("td", { text: bot.lang }),
      el("td", {}, el("span", { className: `badge ${bot.state}`, text: bot.state })),
      el("td", { text: bot.model || "none" }),
      el("td", { text: probe.at ? `${when(probe.at)} ${probe.ok ? "ok" : "failed"}` : "none yet" }),
      el("td", { text: typeof probe.latency_seconds === "number" ? `${(probe.latency_seconds * 1000).toFixed(0)} ms` : "" }),
      el("td", { text: bot.last_error || "" }));
  }));
  clear($("health-swaps").tBodies[0]).append(...swaps.recent.map((swap) => el("tr", {},
    el("td", { text: swap.lang }),
    el("td", { text: swap.model }),
    el("td", {}, el("span", { className: `badge ${swap.phase}`, text: swap.phase })),
    el("td", { text: when(swap.started) }),
    el("td", { text: when(swap.finished) }),
    el("td", { text: swap.error || "" }))));
  if (!swaps.recent.length) $("health-swaps").tBodies[0].append(el("tr", {}, el("td", { colspan: 6, text: "No swaps yet." })));
}

async function tick() {
  try {
    await tables();
    await sample();
  } catch (err) {
    showError(err);
  }
}

export function init() {}

export async function enter() {
  clearInterval(timer);
  await tick();
  timer = setInterval(tick, SAMPLE_MS);
}

export function leave() {
  clearInterval(timer);
}
