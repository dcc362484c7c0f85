// The operator's view: coverage per organisation and category (the seed's figure, from the
// index's /coverage and /directory) and searches per month and per 1,000 inhabitants (from
// the audit service's /audit/statistics/searches). Everything is drawn from authenticated API
// answers; nothing is stored.
import { api, barChart, el, problemNode, say, session } from "./assets/npo.js";

const KINDS = { region: "Region", municipality: "Municipality", private: "Private" };
const perThousand = new Intl.NumberFormat("en", { maximumSignificantDigits: 3 });
const count = new Intl.NumberFormat("en");
const percent = (share) => `${Math.round(share * 100)} %`;

const state = { directory: null, categories: [], coverage: [], searches: null, problems: {} };

function monthOf(date) {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}`;
}

function defaultRange() {
  const now = new Date();
  return { from: monthOf(new Date(now.getFullYear(), now.getMonth() - 11, 1)), to: monthOf(now) };
}

// ---- data ----------------------------------------------------------------------------------

function organisations() {
  return new Map((state.directory?.organisations ?? []).map((o) => [o.hsa_id, o]));
}

function regions() {
  return (state.directory?.organisations ?? []).filter((o) => o.kind === "region");
}

function filters() {
  const form = document.querySelector("#filters");
  return {
    kind: form.kind.value, county: form.county.value, top: Number(form.top.value),
    from: form.from.value, to: form.to.value,
  };
}

function inFilter(org, { kind, county }) {
  return (!kind || org.kind === kind) && (!county || org.county === county);
}

async function load() {
  const range = filters();
  const [directory, coverage, searches] = await Promise.allSettled([
    api("", "/directory"),
    api("", "/coverage"),
    api("audit", `/audit/statistics/searches?from=${range.from}&to=${range.to}`),
  ]);
  state.problems = {};
  if (directory.status === "fulfilled") {
    state.directory = directory.value.directory;
    state.categories = directory.value.categories;
  } else state.problems.directory = directory.reason;
  if (coverage.status === "fulfilled") state.coverage = coverage.value;
  else state.problems.coverage = coverage.reason;
  if (searches.status === "fulfilled") state.searches = searches.value;
  else state.problems.searches = searches.reason;
}

// ---- coverage ------------------------------------------------------------------------------

function coverageRows(f) {
  const known = organisations();
  return state.coverage
    .map((entry) => {
      const org = known.get(entry.dataController);
      return {
        hsa: entry.dataController, name: org?.name ?? entry.dataController, kind: org?.kind ?? "",
        county: org?.county ?? "", categories: new Set(entry.categories),
        share: entry.shareOfCategories1To11,
      };
    })
    .filter((row) => (!f.kind || row.kind === f.kind) && (!f.county || row.county === f.county))
    .sort((a, b) => b.share - a.share || a.name.localeCompare(b.name, "sv"));
}

function matrix(rows) {
  const head = el("tr", {}, el("th", { scope: "col" }, "Organisation"), el("th", { scope: "col" }, "Kind"),
    state.categories.map((c) => el("th", {
      scope: "col", title: `${c.number} ${c.name}${c.available ? "" : " (coming)"}`,
      class: c.available ? null : "coming",
    }, String(c.number))),
    el("th", { scope: "col" }, "1–11"));
  const body = rows.map((row) => el("tr", { "data-hsa": row.hsa },
    el("th", { scope: "row", title: row.hsa }, row.name), el("td", {}, KINDS[row.kind] ?? "unknown"),
    state.categories.map((c) => {
      const yes = row.categories.has(c.number);
      return el("td", { class: yes ? "yes" : "no", "data-category": c.number },
        el("span", { "aria-hidden": "true" }, yes ? "✓" : "–"),
        el("span", { class: "visually-hidden" }, yes ? "published" : "not published"));
    }),
    el("td", {}, percent(row.share))));
  return el("div", { class: "matrix-wrap", tabindex: "0", role: "region", "aria-labelledby": "matrix-title" },
    el("table", { class: "matrix", "data-testid": "coverage-matrix" },
      el("caption", { id: "matrix-title" },
        "Categories published per organisation (✓ published, – not; italic numbers: coming categories)"),
      el("thead", {}, head), el("tbody", {}, body)));
}

function coverageSection(f) {
  const rows = coverageRows(f);
  const publishing = new Set(state.coverage.map((e) => e.dataController));
  const consumers = (state.directory?.organisations ?? [])
    .filter((o) => inFilter(o, f) && !publishing.has(o.hsa_id)).length;
  const section = el("section", { "aria-labelledby": "coverage-title" },
    el("h2", { id: "coverage-title" }, "Coverage: share of categories 1–11 published"),
    el("p", { class: "figure-note", "data-testid": "coverage-summary" },
      `${rows.length} organisations publish; ${consumers} consume only (publish nothing).`));
  if (state.problems.coverage) section.append(problemNode(state.problems.coverage));
  if (state.problems.directory) section.append(problemNode(state.problems.directory));
  section.append(
    el("div", { "data-testid": "coverage-chart" }, barChart({
      title: "Share of categories 1–11 published, per organisation",
      rows: rows.map((r) => ({ label: r.name, value: r.share })), format: percent, max: 1,
    })),
    el("h3", {}, "Categories per organisation"),
    matrix(rows));
  return section;
}

// ---- searches ------------------------------------------------------------------------------

function monthRows(f) {
  const s = state.searches;
  if (!f.kind && !f.county) return s.months.map((m) => ({ label: m.month, value: m.searches }));
  const known = organisations();
  const totals = new Map(s.months.map((m) => [m.month, 0]));
  for (const row of s.by_month) {
    const org = known.get(row.reader);
    if (org && inFilter(org, f)) totals.set(row.month, (totals.get(row.month) ?? 0) + row.searches);
  }
  return [...totals].map(([label, value]) => ({ label, value }));
}

function ratePerThousand(orgs) {
  const totals = new Map(state.searches.readers.map((r) => [r.reader, r.searches]));
  return orgs
    .filter((o) => o.inhabitants)
    .map((o) => ({ label: o.name, value: ((totals.get(o.hsa_id) ?? 0) * 1000) / o.inhabitants }))
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label, "sv"));
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (!sorted.length) return 0;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function searchSections(f) {
  const span = state.searches ? `${state.searches.from_month} – ${state.searches.to_month}` : "";
  const monthly = el("section", { "aria-labelledby": "months-title" },
    el("h2", { id: "months-title" }, `Searches per month ${span}`));
  const rates = el("section", { "aria-labelledby": "rates-title" },
    el("h2", { id: "rates-title" }, `Searches per 1,000 inhabitants ${span}`));
  if (!state.searches) {
    const problem = problemNode(state.problems.searches ?? new Error("No search statistics."));
    return [monthly, rates].map((s) => { s.append(problem.cloneNode(true)); return s; });
  }
  const rows = monthRows(f);
  monthly.append(el("p", { class: "figure-note", "data-testid": "searches-total" },
    `${count.format(rows.reduce((sum, r) => sum + r.value, 0))} searches (overview reads, allowed or not)`),
  el("div", { "data-testid": "searches-per-month" },
    barChart({ title: "Searches per month", rows, format: (v) => count.format(v) })));
  const all = state.directory?.organisations ?? [];
  if (f.kind !== "municipality" && f.kind !== "private") {
    const regionRows = ratePerThousand(regions());
    rates.append(el("h3", {}, "Regions (searches by the region's own staff)"),
      el("p", { class: "figure-note", "data-testid": "region-median" },
        `National median: ${perThousand.format(median(regionRows.map((r) => r.value)))} per 1,000 inhabitants`),
      el("div", { "data-testid": "per-1000-regions" }, barChart({
        title: "Searches per 1,000 inhabitants, regions", rows: regionRows, format: perThousand.format,
      })));
  }
  if (f.kind !== "region" && f.kind !== "private") {
    const chosen = all.filter((o) => o.kind === "municipality" && (!f.county || o.county === f.county));
    const top = ratePerThousand(chosen).slice(0, f.top || undefined);
    rates.append(el("h3", {}, `Municipalities, top ${top.length} of ${chosen.length}`),
      el("div", { "data-testid": "per-1000-municipalities" }, barChart({
        title: "Searches per 1,000 inhabitants, municipalities", rows: top, format: perThousand.format,
      })));
  }
  return [monthly, rates];
}

// ---- page ----------------------------------------------------------------------------------

function footnote() {
  const basis = state.directory?.inhabitants_basis ?? {};
  return el("footer", { class: "footnote", "data-testid": "footnote" },
    el("p", {}, "Searches are access-log records of overview reads (allowed, partial or denied), ",
      "counted per month (UTC) and per the reader's care giver. Private providers appear in the ",
      "monthly totals, not in the per-inhabitant charts."),
    el("p", {}, `Inhabitants — regions: ${basis.region ?? "unknown"}; municipalities: `,
      `${basis.municipality ?? "unknown"}.`),
    el("p", {}, `Directory: ${state.directory?.source ?? "not configured"}.`));
}

function filterForm() {
  const range = defaultRange();
  const select = (name, label, options) => el("label", {}, label,
    el("select", { name, id: `f-${name}` }, options.map(([value, text]) => el("option", { value }, text))));
  const form = el("form", { id: "filters", class: "inline", "aria-labelledby": "filters-title" },
    select("kind", "Kind", [["", "All kinds"], ...Object.entries(KINDS)]),
    select("county", "Region", [["", "All regions"], ...regions().map((r) => [r.county, r.name])]),
    select("top", "Municipalities shown", [["20", "Top 20"], ["10", "Top 10"], ["50", "Top 50"], ["0", "All"]]),
    el("label", {}, "Searches from", el("input", { type: "month", name: "from", value: range.from, required: true })),
    el("label", {}, "to", el("input", { type: "month", name: "to", value: range.to, required: true })),
    el("button", { type: "submit" }, "Show"));
  return el("section", { "aria-labelledby": "filters-title" },
    el("h2", { id: "filters-title" }, "Filters"), form,
    el("p", { class: "muted", role: "status", "aria-live": "polite", id: "status", "data-testid": "status" }));
}

function render() {
  const f = filters();
  document.querySelector("#views").replaceChildren(coverageSection(f), ...searchSections(f), footnote());
}

async function refresh() {
  const status = document.querySelector("#status");
  say(status, "Loading…");
  await load();
  render();
  say(status, `Shown: ${state.coverage.length} publishing organisations, searches ` +
    `${state.searches?.from_month ?? "?"} – ${state.searches?.to_month ?? "?"}.`);
}

async function start() {
  const main = document.querySelector("main");
  try {
    const first = await api("", "/directory");
    state.directory = first.directory;
    state.categories = first.categories;
  } catch (error) {
    state.problems.directory = error;
  }
  const filterSection = filterForm();
  main.replaceChildren(filterSection, el("div", { id: "views" }));
  const form = filterSection.querySelector("form");
  form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  for (const name of ["kind", "county", "top"]) form[name].addEventListener("change", render);
  await refresh();
}

const ROLES = ["operator", "admin"];
const who = session(ROLES);
if (who && ROLES.some((role) => (who.roles ?? []).includes(role))) start();
else if (who) document.querySelector("main").replaceChildren();
