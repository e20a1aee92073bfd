// The Assistant simulator: Actions Builder webhook requests through /admin/simulate, which runs the
// webhook's own path (decode, route by locale, the bot's turn, encode) and says what answered.
import { api } from "./api.js";
import { $, clear, clearError, el, pretty, showError } from "./dom.js";

const SURFACES = {
  phone: ["SPEECH", "RICH_RESPONSE", "LONG_FORM_AUDIO", "WEB_LINK"],
  speaker: ["SPEECH", "LONG_FORM_AUDIO"],
};
let session = null;
let params = {};
let ended = false;
// Turns run one after another, in the order asked for (clicks during a turn wait their turn).
let queue = Promise.resolve();

function enqueue(job) {
  queue = queue.then(job).catch(showError);
  return queue;
}

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function request(text, intent) {
  return {
    handler: { name: "main" },
    intent: { name: intent, params: {}, query: text },
    scene: { name: "Conversation", slotFillingStatus: "UNSPECIFIED", slots: {} },
    session: { id: session, params, typeOverrides: [], languageCode: "" },
    user: { locale: $("sim-locale").value.trim(), params: {}, verificationStatus: "VERIFIED" },
    home: { params: {} },
    device: { capabilities: SURFACES[$("sim-surface").value] },
  };
}

function bubble(who, ...children) {
  const item = el("li", { className: `bubble ${who}` }, ...children);
  $("sim-chat").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function image(picture) {
  // Only https images load (the console's CSP, as on Assistant); any other URL is named, not fetched.
  const url = typeof picture.url === "string" ? picture.url : "";
  if (/^https:\/\//i.test(url)) return el("img", { src: url, alt: picture.alt || "", className: "card-image" });
  return url ? el("p", { className: "meta", text: `image not shown (not https): ${url}` }) : null;
}

function render(response) {
  const prompt = response.prompt || {};
  const parts = [];
  for (const simple of [prompt.firstSimple, prompt.lastSimple]) {
    if (simple) parts.push(el("p", { text: simple.text || simple.speech || "" }));
  }
  const content = prompt.content || {};
  const card = content.card;
  if (card) {
    parts.push(el("div", { className: "card" },
      card.image ? image(card.image) : null,
      card.title ? el("strong", { text: card.title }) : null,
      card.subtitle ? el("em", { text: card.subtitle }) : null,
      card.text ? el("p", { text: card.text }) : null));
  }
  const picture = content.image ? image(content.image) : null;
  if (picture) {
    // Assistant shows a lone image as a card of its own under the text; the alt text is its caption
    // for screen readers.
    parts.push(el("div", { className: "card image-card" }, picture));
  }
  bubble("bot", ...parts);
  const chips = prompt.suggestions || [];
  if (chips.length && !ended) {
    bubble("chips", ...chips.map((chip) =>
      el("button", { type: "button", className: "chip", text: chip.title, onclick: () => say(chip.title) })));
  }
  const next = response.scene && response.scene.next && response.scene.next.name;
  if (next === "actions.scene.END_CONVERSATION") {
    ended = true;
    bubble("end", el("span", { text: "End of conversation" }));
    $("sim-text").disabled = true;
  }
}

async function turn(text, intent, restart = false) {
  clearError();
  const body = request(text, intent);
  if (text && intent === "actions.intent.TEXT" && !restart) bubble("user", el("p", { text }));
  $("sim-request").textContent = pretty(body);
  try {
    const { data } = await api("POST", restart ? "/admin/simulate?restart=true" : "/admin/simulate", body);
    $("sim-response").textContent = pretty(data.response);
    $("sim-meta").textContent =
      `bot ${data.lang || "none"} · model ${data.model || "none"} · locale ${data.locale || "none"} · ` +
      `${data.latency_ms} ms · request ${data.request_id} · HTTP ${data.status}`;
    if (data.status !== 200) {
      showError(`The webhook answered ${data.status}: ${(data.response && data.response.error) || ""}`);
      return;
    }
    if (data.response.session && data.response.session.params) params = data.response.session.params;
    render(data.response);
    $("sim-chat").dataset.session = session;
  } catch (err) {
    showError(err);
  }
}

function say(text) {
  return enqueue(() => {
    if (ended || !text.trim()) return undefined;
    for (const old of document.querySelectorAll("#sim-chat .chips")) old.remove();
    return turn(text, "actions.intent.TEXT");
  });
}

function newConversation() {
  return enqueue(() => {
    session = newSessionId();
    params = {};
    ended = false;
    $("sim-text").disabled = false;
    clear($("sim-chat"));
    return turn("", "actions.intent.MAIN");
  });
}

function restartConversation() {
  // Same conversation id, but the bot forgets it: Rasa's /restart (typed, it would be plain text).
  return enqueue(() => {
    if (session === null) return newConversation();
    ended = false;
    $("sim-text").disabled = false;
    for (const old of document.querySelectorAll("#sim-chat .chips")) old.remove();
    bubble("restart", el("span", { text: "Conversation restarted" }));
    return turn("/restart", "actions.intent.TEXT", true);
  });
}

export function configure(bots) {
  const list = clear($("sim-locales"));
  for (const bot of bots || []) {
    list.append(el("option", { value: bot.lang }));
    for (const locale of bot.locales || []) list.append(el("option", { value: locale }));
  }
}

export function init() {
  $("sim-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("sim-text").value;
    $("sim-text").value = "";
    say(text);
  });
  $("sim-new").addEventListener("click", () => newConversation());
  $("sim-restart").addEventListener("click", () => restartConversation());
}

export async function enter() {
  if (session === null) await newConversation();
}
