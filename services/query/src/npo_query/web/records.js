// Records of the overview, grouped by category, newest first within each group; records are
// added as producers answer and put in the server's final order when the summary arrives.
import { el, named } from "./assets/npo.js";

/** yyyyMMddHHmmss → "yyyy-MM-dd HH:mm". */
export function recordTime(value) {
  const t = String(value ?? "");
  return t.length >= 12 ? `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)} ${t.slice(8, 10)}:${t.slice(10, 12)}` : t;
}

/** A short text of a document's body: its first few text values (never HTML). */
export function gist(document) {
  const texts = [];
  (function walk(value) {
    if (texts.length >= 3 || value === null || value === undefined) return;
    if (typeof value === "string" || typeof value === "number") texts.push(String(value));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === "object") Object.values(value).forEach(walk);
  })(document?.body ?? document);
  return texts.join(" · ");
}

/** Where a record was documented (its accountable professional's unit and care giver), by name. */
function documentedAt(record) {
  const who = record.document?.header?.accountableHealthcareProfessional ?? {};
  const unit = who.healthcareProfessionalCareUnitHSAId, giver = who.healthcareProfessionalCareGiverHSAId;
  return el("td", { "data-testid": "record-unit" }, unit ? named("care_units", unit) : "",
    giver ? el("div", { class: "muted" }, named("care_givers", giver)) : (unit ? "" : record.logicalAddress));
}

const key = (r) => `${r.documentId}\u0000${r.sourceSystem}`;
const newestFirst = (a, b) => b.time.localeCompare(a.time) || key(a).localeCompare(key(b));

export function recordsView(names) {
  const byCategory = new Map();
  const empty = el("p", { class: "muted", "data-testid": "no-records" }, "No records yet.");
  const node = el("div", { "data-testid": "records", "aria-live": "off" }, empty);
  let rank = null;

  function group(category) {
    let found = byCategory.get(category);
    if (!found) {
      const body = el("tbody", {});
      const section = el("div", { class: "record-group", "data-testid": "record-group",
        "data-category": category },
      el("h4", {}, names[category] ?? category),
      el("table", {},
        el("thead", {}, el("tr", {}, ["Time", "Record", "Care unit (care giver)", "Source system"]
          .map((h) => el("th", { scope: "col" }, h)))),
        body));
      found = { section, body, records: [] };
      byCategory.set(category, found);
      const groups = [...byCategory.keys()].sort((a, b) => (names[a] ?? a).localeCompare(names[b] ?? b));
      node.replaceChildren(...groups.map((c) => byCategory.get(c).section));
    }
    return found;
  }

  function render(g) {
    const sorted = rank ? [...g.records].sort((a, b) => rank.get(key(a)) - rank.get(key(b)))
      : [...g.records].sort(newestFirst);
    g.body.replaceChildren(...sorted.map((r) => el("tr", { "data-testid": "record" },
      el("td", {}, recordTime(r.time)), el("td", {}, gist(r.document)), documentedAt(r),
      el("td", {}, el("span", { class: "muted" }, r.sourceSystem)))));
  }

  function add(records) {
    const touched = new Set();
    for (const record of records) {
      const g = group(record.category);
      g.records.push(record);
      touched.add(g);
    }
    touched.forEach(render);
  }

  /** The server's merged order ([documentId, sourceSystem] pairs, newest first). */
  function order(pairs) {
    rank = new Map(pairs.map(([doc, source], i) => [`${doc}\u0000${source}`, i]));
    for (const g of byCategory.values()) {
      g.records = g.records.filter((r) => rank.has(key(r)));
      render(g);
    }
  }

  const count = () => [...byCategory.values()].reduce((n, g) => n + g.records.length, 0);
  return { node, add, order, count };
}
