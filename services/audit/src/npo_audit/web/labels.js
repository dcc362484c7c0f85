// Shared by the audit pages: readable names of the log's codes, and a small table builder.
import { el, formatTime } from "./assets/npo.js";

export const BASES = {
  own_care_giver: "Own care giver", consent: "Consent", emergency: "Emergency access",
  patient_self: "Patient self", no_basis: "No basis", access_basis_unspecified: "Unspecified",
};
export const OUTCOMES = { allowed: "Allowed", partial: "Partial", denied: "Denied" };
export const RULES = {
  emergency: "Emergency access", protected_identity: "Protected identity",
  no_active_relation: "No active patient relation", out_of_hours: "Outside office hours",
  shared_surname_or_address: "Shared surname or address",
  many_patients_per_hour: "Many patients within an hour",
  repeated_refused_attempts: "Repeated refused attempts",
};
export const CONCLUSIONS = {
  justified: "Justified access", follow_up: "Needs follow-up", violation: "Unauthorised access",
};

export const label = (names, code) => (code ? names[code] ?? code : "");

/** `<option>`s of a select: an "any" choice first, then the names. */
export function options(names, any = "Any") {
  return [el("option", { value: "" }, any),
    ...Object.entries(names).map(([value, text]) => el("option", { value }, text))];
}

/** A labelled field: `<label>text <input|select></label>` with a stable id. */
export function field(text, control) {
  return el("label", { for: control.id }, text, control);
}

/** A table with a caption, column headers (th scope=col) and rows of cells (first: th scope=row). */
export function table(caption, headers, rows, props = {}) {
  return el("table", props,
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

export function row(props, head, ...cells) {
  return el("tr", props, el("th", { scope: "row" }, head), cells.map((c) => el("td", {}, c)));
}

export function flagPills(flags) {
  return (flags ?? []).map((f) => el("span", { class: "pill flag", "data-testid": "flag" }, label(RULES, f)));
}

export function when(value) {
  return el("time", { datetime: value }, formatTime(value));
}

/** `datetime-local` input value (local time) → ISO instant, or undefined. */
export function instant(local) {
  if (!local) return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}
