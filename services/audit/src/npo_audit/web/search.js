// Compliance search: every filter of POST /audit/search, keyset paging, export.
import { api, el, formValues, named, problemNode, say } from "./assets/npo.js";
import {
  BASES, CONCLUSIONS, OUTCOMES, RULES, field, flagPills, instant, label, options, row, table, when,
} from "./labels.js";

const input = (id, props = {}) => el("input", { id, name: id.replace(/^s-/, ""), autocomplete: "off", ...props });
const select = (id, children) => el("select", { id, name: id.replace(/^s-/, "") }, children);

function searchForm() {
  return el("form", { class: "inline filters", "data-testid": "search-form", "aria-describedby": "s-help" },
    field("Patient (personnummer)", input("s-patient_id", { inputmode: "numeric", maxlength: "15" })),
    field("User (HSA-id)", input("s-user_hsa_id")),
    field("Care unit (HSA-id)", input("s-care_unit")),
    field("Care giver (HSA-id)", input("s-care_giver")),
    field("From", input("s-time_from", { type: "datetime-local" })),
    field("To (before)", input("s-time_to", { type: "datetime-local" })),
    field("Basis", select("s-basis", options(BASES))),
    field("Outcome", select("s-outcome", options(OUTCOMES))),
    field("Flagged by rule", select("s-rule", options(RULES))),
    field("Kind", select("s-kind", [el("option", { value: "access" }, "Access"),
      el("option", { value: "consent" }, "Consent"), el("option", { value: "review" }, "Review")])),
    field("Rows per page", input("s-limit", { type: "number", min: "1", max: "1000", value: "25", required: true })),
    el("button", { type: "submit", "data-testid": "search" }, "Search"),
    el("p", { id: "s-help", class: "muted" },
      "All filters are optional and combine. The patient's personnummer is sent in the request body, never in an address."));
}

/** The form's filters as a request body (times as instants, limit as a number). */
function filters(form) {
  const values = formValues(form);
  for (const key of ["time_from", "time_to"]) values[key] = instant(values[key]);
  if (values.patient_id) values.patient_id = values.patient_id.replace(/[\s-]/g, "");
  values.limit = Number(values.limit ?? 25);
  return values;
}

function details(item) {
  if (item.kind === "review") {
    const review = item.review ?? {};
    return [review.conclusion ? `${label(CONCLUSIONS, review.conclusion)}: ` : "", review.note ?? "",
      el("span", { class: "muted" }, ` (on ${item.subject})`)];
  }
  return [item.emergency_reason && `Emergency reason: ${item.emergency_reason}`, item.reason_code,
    item.categories.length ? el("span", { class: "muted" }, ` ${item.categories.length} categories`) : ""]
    .filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part]));
}

function resultRow(item) {
  return row({ "data-testid": "result-row", "data-event-id": item.event_id }, when(item.event_time),
    item.patient_id,
    named("people", item.user_hsa_id, item.user_name),
    [named("care_units", item.care_unit), el("br"), el("span", { class: "muted" }, named("care_givers", item.care_giver))],
    label(BASES, item.basis), label(OUTCOMES, item.outcome), details(item), flagPills(item.flags));
}

export function searchSection() {
  const form = searchForm();
  const status = el("p", { role: "status", "aria-live": "polite", "data-testid": "search-status" });
  const results = el("div", { class: "scroll" });
  const pager = el("div", { class: "pager" });
  const exportFormat = el("select", { id: "s-format" },
    el("option", { value: "csv" }, "CSV"), el("option", { value: "fhir" }, "FHIR AuditEvent bundle"));
  const download = el("p", { "aria-live": "polite" });
  const cursors = [];  // cursors of the pages before the current one ([null] on page 1)
  let body = null;

  async function load(cursor) {
    say(status, "Searching…");
    try {
      const page = await api("", "/audit/search", { method: "POST", body: { ...body, cursor } });
      results.replaceChildren(table(`Records, page ${cursors.length}`,
        ["Time", "Patient", "User", "Care unit / giver", "Basis", "Outcome", "Details", "Flags"],
        page.items.map(resultRow), { "data-testid": "results" }));
      say(status, `${page.items.length} record(s) on page ${cursors.length}${page.next_cursor ? "; more follow" : ""}.`);
      pager.replaceChildren(
        cursors.length > 1 ? el("button", { type: "button", class: "secondary", "data-testid": "previous-page",
          onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]); } }, "Previous page") : "",
        page.next_cursor ? el("button", { type: "button", class: "secondary", "data-testid": "next-page",
          onclick: () => { cursors.push(page.next_cursor); load(page.next_cursor); } }, "Next page") : "");
    } catch (error) {
      say(status, "");
      results.replaceChildren(problemNode(error));
    }
  }

  async function exportAll() {
    const format = exportFormat.value;
    say(download, "Exporting…");
    try {
      const { limit, ...rest } = filters(form);
      const text = await api("", `/audit/export?format=${format}`, { method: "POST", body: rest });
      const body = typeof text === "string" ? text : JSON.stringify(text);
      const type = format === "csv" ? "text/csv" : "application/fhir+json";
      const url = URL.createObjectURL(new Blob([body], { type }));
      const lines = format === "csv" ? Math.max(0, body.trim().split("\n").length - 1) : (JSON.parse(body).entry ?? []).length;
      download.replaceChildren(el("a", { href: url, download: `access-log.${format === "csv" ? "csv" : "fhir.json"}`,
        "data-testid": "export-link", "data-format": format }, `Download the export (${lines} records)`));
    } catch (error) {
      download.replaceChildren(problemNode(error));
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    body = filters(form);
    cursors.length = 0;
    cursors.push(null);
    load(null);
  });
  return el("section", { id: "search", "aria-labelledby": "search-title" },
    el("h2", { id: "search-title" }, "Search the log"), form, status, results, pager,
    el("div", { class: "export" }, field("Export format", exportFormat),
      el("button", { type: "button", class: "secondary", "data-testid": "export", onclick: exportAll },
        "Export all matching"), download));
}
