// The overview: choose categories, then POST /v1/overview/stream. Each producer's answer is
// shown as it arrives (status and cause per producer, records grouped by category, newest
// first), then the summary. Withheld producers are listed, never hidden; a block shows only
// *that* blocked information exists (one row with no producer nor category). Refused for want
// of a patient relation, the page says what to do.
import { api, el, named, problemNode, stream } from "./assets/npo.js";
import { recordsView } from "./records.js";

const STATUS_CLASS = {
  DataFromSource: "ok", WithheldByDecision: "withheld", NotAuthorisedByRouting: "withheld",
  NoDataSynchFailed: "failed",
};
const CAUSE_TEXT = {
  blocked: "blocked by the patient", no_relation: "no patient relation", no_consent: "no consent",
  timeout: "timed out", connection_error: "could not connect", http_status: "error answer",
  invalid_answer: "invalid answer", not_in_routing: "not in the routing table",
  social_services: "social services (never shown)",
};

let categoriesPromise = null;
function categories() {
  categoriesPromise ??= api("", "/v1/categories");
  return categoriesPromise;
}

function producerRow(p, names) {
  const where = p.dataController ? named("care_givers", p.dataController)
    : (p.logicalAddress ?? "Not shown (blocked)");
  const category = p.category ? (names[p.category] ?? p.category) : "Not shown";
  const cause = p.cause ? `${CAUSE_TEXT[p.cause] ?? p.cause} (${p.cause})` : "";
  const http = p.httpStatus ? ` HTTP ${p.httpStatus}` : "";
  return el("tr", { "data-testid": "producer-row", "data-status": p.status },
    el("td", {}, category),
    el("td", { "data-testid": "producer-name" }, where,
      p.dataController && p.logicalAddress ? el("div", { class: "muted" }, p.logicalAddress) : ""),
    el("td", {}, el("span", { class: `status ${STATUS_CLASS[p.status] ?? ""}` }, p.status)),
    el("td", {}, cause + http),
    el("td", {}, p.status === "DataFromSource" ? String(p.recordCount) : "—"),
    el("td", {}, p.durationMs ? `${Math.round(p.durationMs)} ms` : "—"));
}

function producerTable() {
  const body = el("tbody", { "data-testid": "producer-rows" });
  const node = el("table", { "data-testid": "producers" },
    el("caption", {}, "Producers (one row per producer and category)"),
    el("thead", {}, el("tr", {}, ["Category", "Producer", "Status", "Cause", "Records", "Time"]
      .map((h) => el("th", { scope: "col" }, h)))),
    body);
  return { node, body };
}

function categoryForm(onSubmit) {
  const boxes = el("div", { class: "categories" });
  const message = el("div", { "aria-live": "polite" });
  const form = el("form", { "data-testid": "overview-form" },
    el("fieldset", {},
      el("legend", {}, "Information categories"),
      el("div", { class: "inline-buttons" },
        el("button", { type: "button", class: "secondary", onclick: () => tick(true) }, "All 17"),
        el("button", { type: "button", class: "secondary", onclick: () => tick(false) }, "None")),
      boxes),
    message,
    el("button", { type: "submit", "data-testid": "show-overview" }, "Show overview"));
  function tick(on) {
    for (const box of boxes.querySelectorAll("input")) box.checked = on;
  }
  categories().then((list) => boxes.replaceChildren(...list.map((c) => el("label", { class: "check" },
    el("input", { type: "checkbox", name: "category", value: c.key, checked: true }),
    `${c.number}. ${c.nameEn}${c.available ? "" : " (coming)"}`))))
    .catch((error) => boxes.replaceChildren(problemNode(error)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const all = [...boxes.querySelectorAll("input")];
    const chosen = all.filter((b) => b.checked).map((b) => b.value);
    if (!chosen.length) {
      message.replaceChildren(el("p", { role: "alert", class: "problem" }, "Choose at least one category."));
      return;
    }
    message.replaceChildren();
    onSubmit(chosen.length === all.length ? [] : chosen);
  });
  return form;
}

export function createOverview() {
  const progress = el("p", { "aria-live": "polite", "data-testid": "overview-progress" });
  const notices = el("div", { "data-testid": "overview-notices" });
  const results = el("div", { "data-testid": "overview-results", "aria-busy": "false" });
  let pnr = null, chosen = [], controller = null, names = {}, runs = 0;
  const form = categoryForm((keys) => { chosen = keys; run(); });
  const node = el("section", { "aria-labelledby": "overview-title", "data-testid": "overview" },
    el("h2", { id: "overview-title" }, "Overview"), form, progress, notices, results);
  categories().then((list) => { names = Object.fromEntries(list.map((c) => [c.key, c.nameEn])); },
    () => {});

  function open(patient) {
    controller?.abort();
    pnr = patient;
    progress.textContent = "Choose categories and show the overview.";
    notices.replaceChildren();
    results.replaceChildren();
  }

  function blockedNotice() {
    if (notices.querySelector("[data-testid=blocked-notice]")) return;
    notices.append(el("p", { class: "notice", role: "note", "data-testid": "blocked-notice" },
      "Blocked information exists: the patient has blocked some information from you. " +
      "Where is not shown. Only the patient's consent or emergency access opens it."));
  }

  function settle(producers, table) {
    table.body.replaceChildren(...producers.map((p) => producerRow(p, names)));
    if (producers.some((p) => p.status === "WithheldByDecision" && p.cause === "blocked")) blockedNotice();
  }

  async function run() {
    if (!pnr) return;
    controller?.abort();
    controller = new AbortController();
    const table = producerTable();
    const records = recordsView(names);
    const summary = el("div", { "data-testid": "overview-summary" });
    notices.replaceChildren();
    results.replaceChildren(el("h3", {}, "Producers"), table.node, el("h3", {}, "Records"),
      records.node, summary);
    results.setAttribute("aria-busy", "true");
    progress.textContent = "Asking the index and the producers…";
    let called = 0, answered = 0;
    try {
      await stream("", "/v1/overview/stream", { body: { patientId: pnr, categories: chosen },
        signal: controller.signal }, ({ event, data }) => {
        if (event === "accepted") {
          called = data.producersCalled;
          settle(data.producers, table);
          if (data.blockedInformationExists) blockedNotice();
          progress.textContent = `Access logged. Waiting for ${called} producer answer(s)…`;
        } else if (event === "producer") {
          answered += 1;
          table.body.append(producerRow(data.producer, names));
          records.add(data.records);
          progress.textContent = `${answered} of ${called} producer answer(s) received…`;
        } else if (event === "summary") {
          settle(data.producers, table);
          if (data.blockedInformationExists) blockedNotice();
          records.order(data.order);
          summary.replaceChildren(summaryNode(data, records.count()));
          progress.textContent = `Done: ${answered} of ${called} producer(s) answered.`;
        }
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      refused(error, table);
    } finally {
      results.setAttribute("aria-busy", "false");
      node.dataset.runs = String(++runs); // finished runs, for tests waiting on a re-run
    }
  }

  function refused(error, table) {
    progress.textContent = "The overview was refused.";
    notices.replaceChildren(problemNode(error));
    const body = error.body ?? {};
    if (body.reasonCode === "no_relation") notices.append(noRelationNotice());
    if (body.blockedInformationExists) blockedNotice();
    if (Array.isArray(body.producers)) settle(body.producers, table);
  }

  return { node, open, run };
}

function noRelationNotice() {
  return el("p", { class: "notice", role: "note", "data-testid": "no-relation-notice" },
    "You have no patient relation with this patient, so nothing is shown, not even your own " +
    "care giver's information (inner secrecy). If you take part in the patient's care, register " +
    "a patient relation for your unit under \u201cYour standing with the patient\u201d and show " +
    "the overview again. In an emergency, register emergency access with its reason instead.");
}

function summaryNode(data, count) {
  const reason = data.reasonCode ? ` Reason: ${CAUSE_TEXT[data.reasonCode] ?? data.reasonCode} ` +
    `(${data.reasonCode}).` : "";
  return el("p", { class: `notice ${data.outcome === "allowed" ? "info" : ""}`, role: "status",
    "data-testid": "summary", "data-outcome": data.outcome },
  `Outcome: ${data.outcome}. ${count} record(s) from ${data.producers.length} producer ` +
  `row(s).${reason}`);
}
