// The patient's own log extract (POST /audit/extract): the patient comes from the token, so the
// page has no patient field and can show no one else's log.
import { api, el, formatTime, loadNames, named, problemNode, say, session } from "./assets/npo.js";

const ROLE = "patient";
const PAGE = 100;
const ACTIVITIES = { read: ["Läste", "Read"], emergency_open: ["Öppnade med nödåtkomst", "Opened by emergency access"],
  print: ["Skrev ut", "Printed"], write: ["Skrev", "Wrote"], sign: ["Signerade", "Signed"] };
// What the reader got, when not everything asked for: attempts are logged too.
const OUTCOMES = { denied: ["Nekades, inget visades", "Refused, nothing was shown"],
  partial: ["Delvis, en del visades inte", "In part, some was not shown"],
  not_delivered: ["Avbröts, inget visades", "Interrupted, nothing was shown"] };
const PURPOSES = { care: ["Vård och behandling", "Care and treatment"] };

const both = (sv, en) => [el("span", { lang: "sv" }, sv), el("br"), el("span", { lang: "en", class: "muted" }, en)];
const pair = (names, code) => (names[code] ? both(...names[code]) : code);

function explanation() {
  return el("section", { "aria-labelledby": "about-title", class: "rights" },
    el("div", { lang: "sv" },
      el("h2", { id: "about-title" }, "Om loggen"),
      el("p", {}, "Varje gång någon i vården öppnar dina uppgifter i den nationella patientöversikten (NPÖ) loggas det. "
        + "Här ser du vilken vårdgivare och vårdenhet som tog del av dina uppgifter, när, vilken sorts information och varför. "
        + "Nödåtkomst (när du inte kunde ge samtycke) är markerad."),
      el("p", {}, "Enligt patientdatalagen (PDL) har du rätt att få veta vem som har tagit del av dina journaluppgifter (loggutdrag). "
        + "Om något ser fel ut kan du kontakta vårdgivaren, som ska utreda åtkomsten. Du kan också vända dig till "
        + "Inspektionen för vård och omsorg (IVO) eller Integritetsskyddsmyndigheten (IMY).")),
    el("div", { lang: "en" },
      el("h2", {}, "About this log"),
      el("p", {}, "Every time someone in health care opens your information in the national patient overview (NPÖ), it is logged. "
        + "Here you see which care giver and care unit accessed your information, when, what kind of information and why. "
        + "Emergency access (when you could not give consent) is marked."),
      el("p", {}, "Under the Patient Data Act (PDL) you have the right to know who has accessed your records (a log extract). "
        + "If something looks wrong, contact the care giver, who must investigate the access. You can also turn to the "
        + "Health and Social Care Inspectorate (IVO) or the Swedish Authority for Privacy Protection (IMY).")));
}

function why(item) {
  const parts = [pair(PURPOSES, item.purpose)].flat();
  if (item.emergency) {
    parts.push(el("br"), el("strong", { class: "pill emergency", "data-testid": "emergency" },
      "Nödåtkomst · Emergency access"));
  }
  return parts;
}

function done(item) {
  const parts = [pair(ACTIVITIES, item.activity)].flat();
  if (OUTCOMES[item.outcome]) {
    parts.push(el("br"), el("span", { class: "pill", "data-testid": "outcome", "data-outcome": item.outcome },
      `${OUTCOMES[item.outcome][0]} · ${OUTCOMES[item.outcome][1]}`));
  }
  return parts;
}

function accessRow(item) {
  const kinds = el("ul", { class: "plain" }, item.resource_names.map((c) =>
    el("li", {}, el("span", { lang: "sv" }, c.sv), " ", el("span", { lang: "en", class: "muted" }, `(${c.en})`))));
  return el("tr", { "data-testid": "extract-row" },
    el("th", { scope: "row" }, el("time", { datetime: item.access_time }, formatTime(item.access_time))),
    el("td", { "data-testid": "extract-care-giver" }, named("care_givers", item.care_giver)),
    el("td", { "data-testid": "extract-care-unit" }, named("care_units", item.care_unit)), el("td", {}, done(item)),
    el("td", {}, item.resource_names.length > 3 ? el("details", {}, el("summary", {},
      `${item.resource_names.length} slags information · kinds of information`), kinds) : kinds),
    el("td", {}, why(item)));
}

function extractSection() {
  const body = el("tbody", {});
  const status = el("p", { role: "status", "aria-live": "polite", "data-testid": "extract-status" }, "Hämtar… · Loading…");
  const more = el("div");
  const head = (sv, en) => el("th", { scope: "col" }, both(sv, en));
  const tableNode = el("table", { "data-testid": "extract" },
    el("caption", {}, "Åtkomster till dina uppgifter, senaste först · Accesses to your information, newest first"),
    el("thead", {}, el("tr", {}, head("När", "When"), head("Vårdgivare", "Care giver"), head("Vårdenhet", "Care unit"),
      head("Vad gjordes", "What was done"), head("Vilken information", "What kind of information"), head("Varför", "Why"))),
    body);
  let shown = 0;

  async function load(cursor) {
    try {
      const page = await api("", "/audit/extract", { method: "POST", body: { limit: PAGE, ...(cursor ? { cursor } : {}) } });
      body.append(...page.items.map(accessRow));
      shown += page.items.length;
      say(status, shown ? `${shown} åtkomst(er) visas · ${shown} access(es) shown.`
        : "Ingen har tagit del av dina uppgifter via NPÖ · No one has accessed your information through NPÖ.");
      more.replaceChildren(page.next_cursor ? el("button", { type: "button", class: "secondary",
        onclick: () => load(page.next_cursor) }, "Visa fler · Show more") : "");
    } catch (error) {
      say(status, "");
      more.replaceChildren(problemNode(error));
    }
  }
  load(null);
  return el("section", { "aria-labelledby": "extract-title" },
    el("h2", { id: "extract-title" }, "Ditt loggutdrag ", el("span", { lang: "en" }, "· Your log extract")),
    status, el("div", { class: "scroll" }, tableNode), more);
}

// The same extract as FHIR R4 AuditEvents (a Bundle), for the patient's own apps and records.
function fhirSection() {
  const link = el("p", { "aria-live": "polite", "data-testid": "fhir-status" });
  async function download() {
    say(link, "Hämtar… · Loading…");
    try {
      const found = await api("", "/audit/extract?format=fhir", { method: "POST", body: { limit: 10000 } });
      const text = typeof found === "string" ? found : JSON.stringify(found);
      const url = URL.createObjectURL(new Blob([text], { type: "application/fhir+json" }));
      const count = ((typeof found === "string" ? JSON.parse(found) : found).entry ?? []).length;
      link.replaceChildren(el("a", { href: url, download: "min-logg.fhir.json", "data-testid": "fhir-link" },
        `Spara loggutdraget (${count} åtkomster) · Save the extract (${count} accesses)`));
    } catch (error) {
      link.replaceChildren(problemNode(error));
    }
  }
  return el("section", { "aria-labelledby": "fhir-title" },
    el("h2", { id: "fhir-title" }, "Som FHIR ", el("span", { lang: "en" }, "· As FHIR")),
    el("p", {}, "Loggutdraget som FHIR R4 AuditEvent, för appar och journalsystem. ",
      el("span", { lang: "en", class: "muted" }, "The extract as FHIR R4 AuditEvents, for apps and record systems.")),
    el("button", { type: "button", class: "secondary", "data-testid": "fhir-download", onclick: download },
      "Hämta som FHIR · Download as FHIR"), link);
}

const who = session([ROLE]);
const main = document.querySelector("main");
if (who && (who.roles ?? []).includes(ROLE)) {
  await loadNames();
  main.replaceChildren(explanation(), extractSection(), fhirSection());
} else if (who) {
  main.replaceChildren(el("p", { class: "notice", role: "alert", "data-testid": "refused" },
    el("span", { lang: "sv" }, "Den här sidan visar bara en patients egen logg. Logga in som patient. "),
    el("span", { lang: "en" }, "This page shows only a patient's own log. Sign in as the patient.")));
}
