// The reader's standing with the chosen patient (consent service: POST /v1/standing) and the
// forms that change it: a patient relation, a consent for the reader's unit, emergency access.
import { api, el, formatTime, formValues, nameOf, problemNode } from "./assets/npo.js";

const CONSENT_DAYS = 30;

function dateInput(id, name, days) {
  const when = new Date(Date.now() + days * 86400000);
  return el("input", { id, name, type: "date", value: when.toISOString().slice(0, 10) });
}

/** The end of the chosen day in local time, as an ISO instant (the API wants a zone). */
function endOfDay(value) {
  return value ? new Date(`${value}T23:59:59`).toISOString() : undefined;
}

function row(label, record, testid, inForceText) {
  const text = record
    ? `${inForceText}${record.valid_to ? ` until ${formatTime(record.valid_to)}` : " (no end)"}`
    : "None";
  return el("tr", { "data-testid": testid, "data-state": record ? "in-force" : "none" },
    el("th", { scope: "row" }, label),
    el("td", {}, el("span", { class: `status ${record ? "ok" : "warn"}` }, text)));
}

function table(standing) {
  return el("table", { "data-testid": "standing-table" },
    el("caption", { title: standing.care_unit }, `Your unit ${nameOf("care_units", standing.care_unit)} with this patient`),
    el("tbody", {},
      row("Patient relation", standing.relation, "standing-relation", "In force"),
      row("Consent", standing.consent, "standing-consent",
        standing.consent?.scope === "user" ? "In force (naming you)" : "In force (your unit)"),
      row("Emergency access", standing.emergency, "standing-emergency", "Open")));
}

export function createStanding(claims, { onChange }) {
  const status = el("p", { "aria-live": "polite", class: "muted", "data-testid": "standing-status" });
  const view = el("div");
  const forms = el("div", { class: "grid" });
  const node = el("section", { "aria-labelledby": "standing-title", "data-testid": "standing" },
    el("h2", { id: "standing-title" }, "Your standing with the patient"), view, status, forms);
  let pnr = null;

  async function load(patient) {
    const standing = await api("consent", "/v1/standing",
      { method: "POST", body: { patient_id: patient } });
    pnr = patient;
    show(standing);
    forms.replaceChildren(relationForm(), consentForm(), emergencyForm());
    status.textContent = "";
    return { pnr, ...standing };
  }

  function show(standing) {
    const protectedNote = standing.protected_identity
      ? el("p", { class: "notice", role: "note", "data-testid": "protected-identity" },
        "Protected identity: address, phone, relatives and location are never shown.")
      : null;
    view.replaceChildren(table(standing), protectedNote ?? "");
  }

  async function refresh() {
    const standing = await api("consent", "/v1/standing",
      { method: "POST", body: { patient_id: pnr } });
    show(standing);
    onChange({ pnr, ...standing });
  }

  function command(form, path, body, done) {
    const out = el("div", { "aria-live": "assertive" });
    form.append(out);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      out.replaceChildren();
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        await api("consent", path, { method: "POST", body: { patient_id: pnr, ...body(form) } });
        status.textContent = done;
        await refresh();
      } catch (error) {
        out.replaceChildren(problemNode(error));
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  function relationForm() {
    const form = el("form", { "data-testid": "relation-form", "aria-labelledby": "relation-title" },
      el("h3", { id: "relation-title" }, "Patient relation"),
      el("p", { class: "muted", title: claims.care_unit },
        `Registers that the patient is in care at ${nameOf("care_units", claims.care_unit)}.`),
      el("button", { type: "submit" }, "Register relation"));
    return command(form, "/v1/relations", () => ({}), "Patient relation registered.");
  }

  function consentForm() {
    const form = el("form", { "data-testid": "consent-form", "aria-labelledby": "consent-title" },
      el("h3", { id: "consent-title" }, "Consent"),
      el("p", { class: "muted", title: claims.care_unit }, `The patient consents to ` +
        `${nameOf("care_units", claims.care_unit)} reading other care givers' information.`),
      el("label", { for: "consent-to" }, "Valid to (inclusive)",
        dateInput("consent-to", "valid_to", CONSENT_DAYS)),
      el("button", { type: "submit" }, "Register consent"));
    return command(form, "/v1/consents", (f) => ({
      care_unit: claims.care_unit, valid_to: endOfDay(formValues(f).valid_to),
    }), "Consent registered.");
  }

  function emergencyForm() {
    const form = el("form", { "data-testid": "emergency-form", "aria-labelledby": "emergency-title" },
      el("h3", { id: "emergency-title" }, "Emergency access"),
      el("p", { class: "muted", id: "emergency-hint" },
        "Only when there is danger to life or serious risk to health and the patient cannot " +
        "consent. Always followed up. The reason is mandatory."),
      el("label", { for: "emergency-reason" }, "Reason (mandatory)",
        el("textarea", { id: "emergency-reason", name: "reason", rows: "2", "aria-required": "true",
          "aria-describedby": "emergency-hint", maxlength: "1000" })),
      el("button", { type: "submit", class: "danger" }, "Open emergency access"));
    return command(form, "/v1/emergency-accesses", (f) => ({ reason: formValues(f).reason ?? "" }),
      "Emergency access opened: it will be followed up.");
  }

  return { node, load, refresh };
}
