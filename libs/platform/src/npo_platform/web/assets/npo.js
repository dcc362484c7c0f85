// Shared by every service's pages: the session token, authenticated API calls, problem
// details, server-sent events over fetch, DOM building without innerHTML, accessible charts.
// Plain ES module, no build step.

const TOKEN_KEY = "npo.token";

// ---- session ------------------------------------------------------------------------------

/** The bearer token: taken once from the URL fragment (#token=…), then from sessionStorage. */
export function token() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromLink = fragment.get("token");
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/** The token's claims, for display only (the services verify the signature, not the page). */
export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(payload), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

/**
 * Header with the signed-in user, or a sign-in form. Resolves with the claims once signed in.
 * `roles`: the roles this page is for; a token without any of them is told so (the API would
 * refuse it anyway).
 */
export function session(roles) {
  const header = document.querySelector("#session");
  const current = claims();
  if (current && (current.exp ?? Infinity) * 1000 > Date.now()) {
    const mine = current.roles ?? [];
    const wrong = !roles.some((r) => mine.includes(r));
    header.replaceChildren(
      el("span", { class: "who", "data-testid": "who" },
        `${current.name ?? current.sub} · ${mine.join(", ")}`),
      el("button", { type: "button", class: "link", onclick: signOut }, "Sign out"));
    if (wrong) {
      header.append(el("p", { role: "alert", class: "problem" },
        `This view is for ${roles.join(" or ")}; your token has ${mine.join(", ") || "no role"}.`));
    }
    return current;
  }
  const field = el("textarea", { id: "token-input", rows: "3", required: true, autocomplete: "off" });
  const form = el("form", { class: "signin", "aria-labelledby": "signin-title" },
    el("h2", { id: "signin-title" }, "Sign in"),
    el("label", { for: "token-input" },
      "Paste your access token (the local stack prints one per role; SITHS/IdP in production)"),
    field,
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, field.value.trim());
    location.reload();
  });
  header.replaceChildren();
  document.querySelector("main").replaceChildren(form);
  return null;
}

// ---- configuration and API calls ---------------------------------------------------------

let configPromise = null;

/** `{service, links: {name: baseUrl}}` from the serving service. */
export function config() {
  configPromise ??= fetch("config.json").then((r) => r.json());
  return configPromise;
}

/** Base URL of a named service ("" for the one serving this page). */
export async function base(name) {
  if (!name) return "";
  const { service, links } = await config();
  if (name === service) return "";
  const url = links[name];
  if (!url) throw new Error(`no link to the ${name} service is configured`);
  return url;
}

export class Problem extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? `http_${status}`;
    this.body = body;
  }
}

async function send(url, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not problem details */ }
    throw new Problem(response.status, problem);
  }
  return response;
}

/** JSON API call with the bearer token; throws `Problem` on an error answer. */
export async function api(service, path, options = {}) {
  const response = await send((await base(service)) + path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

/**
 * Server-sent events over fetch (EventSource cannot send a bearer token). Calls
 * `onEvent({event, data, id})` per event, with `data` parsed as JSON when it is JSON.
 * Resolves when the server ends the stream; abort with `signal`.
 */
export async function stream(service, path, { body, signal, method = "POST" }, onEvent) {
  const response = await send((await base(service)) + path,
    { method, body, signal, accept: "text/event-stream" });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", data: "", id: null };
      const data = [];
      for (const line of frame.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(text);
        else if (field === "event") message.event = text;
        else if (field === "id") message.id = text;
      }
      if (!data.length) continue;
      message.data = data.join("\n");
      try { message.data = JSON.parse(message.data); } catch { /* plain text */ }
      onEvent(message);
    }
  }
}

// ---- names ----------------------------------------------------------------------------------

const NO_NAMES = { care_givers: {}, care_units: {}, people: {} };
let names = NO_NAMES;
let namesPromise = null;

/**
 * Load the directory's names by HSA-id (the index's GET /directory/names) once; a page awaits
 * it before it renders. Without the index the names stay empty and the pages show codes.
 */
export function loadNames() {
  namesPromise ??= api("index", "/directory/names")
    .then((found) => { names = { ...NO_NAMES, ...found }; })
    .catch(() => { names = NO_NAMES; });
  return namesPromise;
}

/**
 * A care giver's, care unit's or person's name (`kind`: "care_givers", "care_units",
 * "people"), its HSA-id on hover; `known` (a name the record itself carries) comes first; the
 * code itself when neither knows it.
 */
export function named(kind, id, known) {
  if (!id) return "";
  const entry = names[kind]?.[id];
  const text = known || (typeof entry === "string" ? entry : entry?.name);
  return el("span", { title: id, "data-hsa": id, class: text ? "named" : "code" }, text || id);
}

/** The name alone, as text (for sentences and captions); the code when unknown. */
export function nameOf(kind, id) {
  const entry = names[kind]?.[id];
  return (typeof entry === "string" ? entry : entry?.name) || id || "";
}

// ---- DOM ------------------------------------------------------------------------------------

/** `el("p", {class: "x", onclick: f}, "text", child)`: text is always text, never HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElementNS(
    tag === "svg" || props.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "svg" || value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A problem (or any error) as an alert with its stable code. */
export function problemNode(error) {
  const code = error instanceof Problem ? ` (${error.code})` : "";
  return el("p", { role: "alert", class: "problem", "data-testid": "problem" }, `${error.message}${code}`);
}

/** Show a status text in `node` (a live region). */
export function say(node, text) {
  node.textContent = text;
}

export function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString("sv-SE");
}

/** Values of a form as an object, empty fields left out. */
export function formValues(form) {
  const values = {};
  for (const [key, value] of new FormData(form).entries()) {
    if (typeof value === "string" && value.trim() !== "") values[key] = value.trim();
  }
  return values;
}

// ---- charts ---------------------------------------------------------------------------------

/**
 * A horizontal bar chart as SVG with a title, plus the same figures as a table (screen
 * readers and tests read the table). `rows`: [{label, value}]; `format(value)` for the text.
 */
export function barChart({ title, rows, format = (v) => String(v), max }) {
  const width = 640, bar = 18, gap = 6, labelWidth = 220;
  const top = Math.max(max ?? 0, ...rows.map((r) => r.value), 1e-9);
  const height = rows.length * (bar + gap) + gap;
  const svg = el("svg", {
    svg: true, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart",
  });
  rows.forEach((row, i) => {
    const y = gap + i * (bar + gap);
    const length = Math.max(0, (row.value / top) * (width - labelWidth - 80));
    svg.append(
      el("text", { svg: true, x: labelWidth - 8, y: y + bar - 5, "text-anchor": "end" }, row.label),
      el("rect", { svg: true, x: labelWidth, y, width: length, height: bar, class: "bar" },
        el("title", { svg: true }, `${row.label}: ${format(row.value)}`)),
      el("text", { svg: true, x: labelWidth + length + 6, y: y + bar - 5 }, format(row.value)));
  });
  const table = el("table", { class: "figures" },
    el("caption", {}, title),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Value"))),
    el("tbody", {}, rows.map((row) => el("tr", {},
      el("th", { scope: "row" }, row.label), el("td", {}, format(row.value))))));
  return el("figure", { class: "chart-figure" }, svg,
    el("details", {}, el("summary", {}, "Figures as a table"), table));
}
