// Console shell: sign in, switch views, report errors readably.
import { api, setToken, token } from "./api.js";
import { $, clearError, showError } from "./dom.js";
import * as conversations from "./conversations.js";
import * as health from "./health.js";
import * as models from "./models.js";
import * as simulator from "./simulator.js";

const VIEWS = { simulator, models, conversations, health };
let current = null;

function show(name) {
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const button of document.querySelectorAll("#nav button")) {
    button.classList.toggle("current", button.dataset.view === name);
  }
  if (current && current !== name && VIEWS[current].leave) VIEWS[current].leave();
  current = name;
  clearError();
  if (VIEWS[name]) VIEWS[name].enter().catch(showError);
}

async function signIn() {
  // /admin/status is the cheapest authenticated call: a wrong token fails here, readably.
  await api("GET", "/admin/status");
  const { data } = await api("GET", "/bots");
  $("login").hidden = true;
  $("logout").hidden = false;
  $("nav").hidden = false;
  simulator.configure(data.bots);
  show(current && current !== "login" ? current : "simulator");
}

function signOut() {
  setToken("");
  if (current && VIEWS[current] && VIEWS[current].leave) VIEWS[current].leave();
  current = "login";
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-login";
}

function start() {
  // `make run` prints a one-time URL with the token in the fragment (never sent to the server).
  const match = /^#token=(.+)$/.exec(location.hash);
  if (match) {
    setToken(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token").value.trim());
    $("token").value = "";
    signIn().catch((err) => {
      setToken("");
      showError(err);
    });
  });
  $("logout").addEventListener("click", signOut);
  simulator.init();
  models.init();
  conversations.init();
  health.init();
  if (token()) signIn().catch(showError);
}

start();
