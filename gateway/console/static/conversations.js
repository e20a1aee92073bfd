// Conversations per language from the tracker store, newest first; one as a transcript; erase on request.
import { api } from "./api.js";
import { $, clear, el, notice, showError, clearError, when } from "./dom.js";

const PAGE = 20;
let offset = 0;
let selected = null;
let languages = [];
let listing = 0; // the newest list request: an older answer arriving late must not replace it

function pct(confidence) {
  return typeof confidence === "number" ? `${(confidence * 100).toFixed(1)}%` : "";
}

function entryNode(entry) {
  const time = el("time", { text: when(entry.timestamp) });
  switch (entry.kind) {
    case "user":
      return el("li", { className: "t-user" }, time,
        el("span", { className: "who", text: "user" }), el("q", { text: entry.text || "" }),
        el("span", { className: "intent", text: `${entry.intent || "no intent"} ${pct(entry.confidence)}` }),
        entry.entities && entry.entities.length
          ? el("span", { className: "entities",
            text: entry.entities.map((e) => `${e.entity}=${JSON.stringify(e.value)}`).join(", ") })
          : null);
    case "bot":
      return el("li", { className: "t-bot" }, time, el("span", { className: "who", text: "bot" }),
        el("span", { text: entry.text || "" }),
        entry.data && Object.keys(entry.data).length
          ? el("code", { text: JSON.stringify(entry.data) }) : null);
    case "action":
      return el("li", { className: "t-action" }, time, el("span", { className: "who", text: "action" }),
        el("code", { text: entry.name || "" }));
    case "slot":
      return el("li", { className: "t-slot" }, time, el("span", { className: "who", text: "slot" }),
        el("code", { text: `${entry.name} = ${JSON.stringify(entry.value)}` }));
    case "session_started":
      return el("li", { className: "t-session" }, time, el("span", { className: "who", text: "session started" }));
    default:
      return el("li", { className: "t-other" }, time, el("span", { className: "who", text: entry.kind }),
        el("code", { text: entry.name || "" }));
  }
}

let opening = 0; // likewise for transcripts: the last conversation clicked is the one shown

async function open(lang, sender) {
  clearError();
  const ticket = ++opening;
  const { data } = await api("GET", `/admin/conversations/${lang}/${encodeURIComponent(sender)}`);
  if (ticket !== opening) return;
  selected = { lang, sender };
  $("conv-title").textContent = sender;
  $("conv-delete").hidden = false;
  clear($("conv-transcript")).append(...data.transcript.map(entryNode));
}

async function list() {
  const lang = $("conv-lang").value;
  const ticket = ++listing;
  const { data } = await api("GET", `/admin/conversations/${lang}?offset=${offset}&limit=${PAGE}`);
  if (ticket !== listing) return; // e.g. the view opened on one language, then another was picked
  const body = clear($("conv-list").tBodies[0]);
  for (const conv of data.conversations) {
    body.append(el("tr", { "data-sender": conv.sender_id },
      el("td", {}, el("button", { type: "button", className: "link", text: conv.sender_id,
        onclick: () => open(lang, conv.sender_id).catch(showError) })),
      el("td", { text: when(conv.latest) }),
      el("td", { text: conv.turns }),
      el("td", { text: conv.last_intent || "" }),
      el("td", { text: conv.last_text || "" })));
  }
  if (!data.conversations.length) body.append(el("tr", {}, el("td", { colspan: 5, text: "No conversations." })));
  const last = Math.min(offset + PAGE, data.total);
  $("conv-page").textContent = `${data.total ? offset + 1 : 0}–${last} of ${data.total}` +
    `${data.truncated ? "+" : ""} · ${data.backend}`;
  $("conv-prev").disabled = offset === 0;
  $("conv-next").disabled = last >= data.total;
}

async function erase() {
  if (!selected) return;
  const { lang, sender } = selected;
  if (!confirm(`Delete conversation ${sender}? This cannot be undone.`)) return;
  await api("DELETE", `/admin/conversations/${lang}/${encodeURIComponent(sender)}`);
  selected = null;
  $("conv-title").textContent = "Pick a conversation";
  $("conv-delete").hidden = true;
  clear($("conv-transcript"));
  notice(`Deleted conversation ${sender}.`);
  await list();
}

export function init() {
  $("conv-lang").addEventListener("change", () => {
    offset = 0;
    list().catch(showError);
  });
  $("conv-refresh").addEventListener("click", () => list().catch(showError));
  $("conv-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    list().catch(showError);
  });
  $("conv-next").addEventListener("click", () => {
    offset += PAGE;
    list().catch(showError);
  });
  $("conv-delete").addEventListener("click", () => erase().catch(showError));
}

export async function enter() {
  notice("");
  if (!languages.length) {
    const { data } = await api("GET", "/bots");
    languages = data.bots.map((bot) => bot.lang);
    clear($("conv-lang")).append(...languages.map((lang) => el("option", { value: lang, text: lang })));
  }
  await list();
}

export function leave() {
  notice("");
}
