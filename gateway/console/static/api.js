// The admin API: the token lives in sessionStorage (this tab only) and travels as a bearer header.
const KEY = "gateway.console.token";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

async function send(method, path, body, withToken) {
  const headers = {};
  if (withToken) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError(`The gateway did not answer ${method} ${path}: ${err.message}`, 0);
  }
  const text = await resp.text();
  return { resp, text };
}

export async function api(method, path, body) {
  const { resp, text } = await send(method, path, body, true);
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const reason = data && typeof data.error === "string" ? data.error : text.slice(0, 200);
    const hint = resp.status === 401 ? " (check the admin token)" : "";
    throw new ApiError(`${method} ${path} failed with ${resp.status}: ${reason}${hint}`, resp.status);
  }
  return { data, headers: resp.headers };
}

export async function metricsText() {
  const { resp, text } = await send("GET", "/metrics", undefined, false);
  if (!resp.ok) throw new ApiError(`GET /metrics failed with ${resp.status}`, resp.status);
  return text;
}
