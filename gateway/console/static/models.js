// Models per language: what is stored, active and answering (here and on every replica); Activate and
// Roll back with live progress.
import { api } from "./api.js";
import { $, clear, el, showError, clearError, when } from "./dom.js";

const POLL_MS = 400;
// Other replicas move after the activation's own answer (they follow the announcement): keep watching.
const REPLICAS_MS = 1000;
let pollTimer = null;
let replicaTimer = null;
let watching = false;

function size(bytes) {
  return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : `${Math.round(bytes / 1024)} kB`;
}

function progressText(swap) {
  if (!swap) return "";
  if (swap.phase === "refused") return `refused: ${swap.error || "no reason given"}`;
  return swap.phase;
}

function renderLanguage(lang, entry, busy) {
  const activeName = entry.active ? entry.active.model : null;
  const rows = (entry.available || []).map((model) => el("tr", { "data-model": model.model },
    el("td", { text: model.model }),
    el("td", { text: size(model.size) }),
    el("td", { text: when(model.modified) }),
    el("td", { text: model.sha256 ? model.sha256.slice(0, 12) : "not recorded" }),
    el("td", { className: `tests ${model.tests ? model.tests.verdict : ""}`,
      title: model.tests ? model.tests.detail || "" : "",
      text: model.tests ? model.tests.verdict : "not tested" }),
    el("td", { className: "replicas" }),
    el("td", {}, model.model === activeName ? el("span", { className: "badge active", text: "active" }) : null,
      model.answering ? el("span", { className: "badge live", text: "answering" }) : null),
    el("td", {}, model.answering ? null : el("button", {
      type: "button", text: "Activate", disabled: busy,
      onclick: () => change(lang, `/admin/models/${lang}/activate`, { model: model.model }, model.model),
    }))));
  const storeNote = entry.available === null ? el("p", { className: "error", text: entry.store_error }) : null;
  return el("article", { className: "lang", "data-lang": lang },
    el("h2", { text: `${lang} · ${entry.state}` }),
    el("p", { className: "meta" },
      `answering ${entry.model || "nothing"}`,
      entry.previous ? ` · previous ${entry.previous}` : "",
      entry.last_error ? ` · last error: ${entry.last_error}` : ""),
    el("p", {}, el("span", { text: "Swap: " }),
      el("output", { className: `progress ${entry.swap ? entry.swap.phase : ""}`, id: `progress-${lang}`,
        text: progressText(entry.swap) })),
    storeNote,
    el("table", {},
      el("thead", {}, el("tr", {}, ...["Model", "Size", "Stored", "sha256", "Tests", "Replicas", "", ""].map((h) =>
        el("th", { text: h })))),
      el("tbody", {}, ...rows)),
    el("h3", { text: "Replicas" }),
    el("ul", { className: "replicas", id: `replicas-${lang}` }),
    el("button", { type: "button", text: "Roll back", disabled: busy,
      onclick: () => change(lang, `/admin/models/${lang}/rollback`, undefined, null) }));
}

function phaseText(swap) {
  // A finished swap is history; one under way (or refused) is worth a word beside the model.
  if (!swap || swap.phase === "live") return "";
  return ` · ${swap.phase} ${swap.model}`;
}

function showReplicas(data) {
  // Fill each language's replica list and each stored model's "answering on n of m" cell in place,
  // so buttons and progress keep their state between polls.
  const total = data.replicas.length;
  const note = $("replicas-note");
  if (note) {
    note.textContent = data.shared
      ? `replicas sharing this Redis: ${total}${data.error ? ` · ${data.error}` : ""}`
      : "replicas: this process only (no Redis)";
  }
  for (const article of document.querySelectorAll("#models article.lang")) {
    const lang = article.dataset.lang;
    const on = new Map();
    const items = data.replicas.map((replica) => {
      const entry = replica.models[lang] || {};
      const name = entry.model || "nothing";
      if (entry.model) on.set(entry.model, [...(on.get(entry.model) || []), replica.replica]);
      return el("li", { "data-replica": replica.replica, "data-model": name },
        el("code", { text: replica.replica }),
        replica.replica === data.self ? " (this one)" : "",
        " answers with ", el("span", { className: "replica-model", text: name }),
        el("span", { className: `replica-swap ${entry.swap ? entry.swap.phase : ""}`, text: phaseText(entry.swap) }));
    });
    clear($(`replicas-${lang}`)).append(...items);
    for (const row of article.querySelectorAll("tr[data-model]")) {
      const ids = on.get(row.dataset.model) || [];
      row.querySelector("td.replicas").textContent =
        ids.length ? `answering on ${ids.length} of ${total}: ${ids.join(", ")}` : "";
    }
  }
}

async function refreshReplicas() {
  const { data } = await api("GET", "/admin/replicas");
  showReplicas(data);
}

function watchReplicas() {
  // One request at a time (a timeout after each answer), only while the view is open.
  clearTimeout(replicaTimer);
  if (!watching) return;
  replicaTimer = setTimeout(() => {
    refreshReplicas().catch(showError).finally(watchReplicas);
  }, REPLICAS_MS);
}

async function refresh(busy = false) {
  const [{ data }, replicas] = await Promise.all([api("GET", "/admin/models"), api("GET", "/admin/replicas")]);
  const box = clear($("models"));
  box.append(el("p", { className: "meta", text: `store: ${data.store} · events connected: ${data.events.connected}` }),
    el("p", { className: "meta", id: "replicas-note" }));
  for (const [lang, entry] of Object.entries(data.models)) box.append(renderLanguage(lang, entry, busy));
  showReplicas(replicas.data);
  return data;
}

async function poll(lang) {
  // While the activation's own request runs, show the phases the gateway reports.
  try {
    const [{ data }, replicas] = await Promise.all([api("GET", "/admin/models"), api("GET", "/admin/replicas")]);
    showReplicas(replicas.data);
    const swap = data.models[lang] && data.models[lang].swap;
    const out = $(`progress-${lang}`);
    if (out && swap) {
      out.textContent = progressText(swap);
      out.className = `progress ${swap.phase}`;
    }
  } catch (err) {
    showError(err);
  }
}

async function change(lang, path, body, model) {
  clearError();
  const out = $(`progress-${lang}`);
  out.textContent = "loading";
  out.className = "progress loading";
  for (const button of document.querySelectorAll("#models button")) button.disabled = true;
  clearInterval(pollTimer);
  pollTimer = setInterval(() => poll(lang), POLL_MS);
  try {
    const { data } = await api("POST", path, body);
    clearInterval(pollTimer);
    await refresh();
    const done = $(`progress-${lang}`);
    done.textContent = `live: ${data.model}`;
    done.className = "progress live";
  } catch (err) {
    clearInterval(pollTimer);
    await refresh().catch(showError);
    const failed = $(`progress-${lang}`);
    failed.textContent = `refused: ${err.message}`;
    failed.className = "progress refused";
    showError(err);
  }
  return model;
}

export function init() {}

export async function enter() {
  watching = true;
  await refresh();
  watchReplicas();
}

export function leave() {
  watching = false;
  clearInterval(pollTimer);
  clearTimeout(replicaTimer);
}
