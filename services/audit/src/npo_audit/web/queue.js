// The sample-check queue: flagged accesses not yet followed up (POST /audit/flags/search),
// one opened at a time with its record, a review note and a conclusion (POST /audit/reviews).
import { api, el, named, problemNode, say } from "./assets/npo.js";
import { BASES, CONCLUSIONS, OUTCOMES, RULES, field, label, options, row, table, when } from "./labels.js";

const PAGE = 50;

function recordFacts(item) {
  const facts = [["Time", when(item.event_time)], ["Patient", item.patient_id],
    ["User", named("people", item.user_hsa_id, item.user_name)], ["Care unit", named("care_units", item.care_unit)],
    ["Care giver", named("care_givers", item.care_giver)], ["Basis", label(BASES, item.basis)],
    ["Outcome", label(OUTCOMES, item.outcome)], ["Emergency reason", item.emergency_reason],
    ["Categories", item.categories.join(", ")], ["Flags", item.flags.map((f) => label(RULES, f)).join(", ")]];
  return el("dl", { class: "facts" }, facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function reviewForm(flag, onSaved) {
  const note = el("textarea", { id: "review-note", name: "note", rows: "3", required: true, maxlength: "4000" });
  const conclusion = el("select", { id: "review-conclusion", name: "conclusion", required: true },
    options(CONCLUSIONS, "Choose…"));
  const problem = el("div", { "aria-live": "assertive" });
  const form = el("form", { class: "review", "data-testid": "review-form" },
    field("Review note", note), field("Conclusion", conclusion),
    el("button", { type: "submit", "data-testid": "save-review" }, "Save review"), problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const saved = await api("", "/audit/reviews", { method: "POST",
        body: { flag_id: flag.flag_id, note: note.value.trim(), conclusion: conclusion.value } });
      onSaved(saved);
    } catch (error) {
      problem.replaceChildren(problemNode(error));
    }
  });
  return form;
}

function reviewsTable(items) {
  return table("Latest reviews (from the log's review chain)", ["Time", "Reviewer", "Subject", "Conclusion", "Note"],
    items.map((r) => row({ "data-testid": "review-row" }, when(r.event_time),
      named("people", r.user_hsa_id, r.review?.reviewer_name),
      r.subject, label(CONCLUSIONS, r.review?.conclusion), r.review?.note ?? "")));
}

export function queueSection() {
  const rule = el("select", { id: "q-rule" }, options(RULES));
  const showReviewed = el("input", { type: "checkbox", id: "q-reviewed" });
  const status = el("p", { role: "status", "aria-live": "polite", "data-testid": "queue-status" });
  const list = el("div", { class: "scroll" });
  const panel = el("div", { class: "panel", "data-testid": "review-panel", hidden: true });
  const reviews = el("div", { "data-testid": "reviews" });

  async function loadReviews() {
    try {
      const found = await api("", "/audit/search", { method: "POST", body: { kind: "review", limit: 10 } });
      reviews.replaceChildren(found.items.length ? reviewsTable(found.items) : el("p", { class: "muted" }, "No reviews yet."));
    } catch (error) {
      reviews.replaceChildren(problemNode(error));
    }
  }

  async function open(flag) {
    const heading = el("h3", { tabindex: "-1" }, `Flag ${flag.flag_id}: ${label(RULES, flag.rule)}`);
    panel.replaceChildren(heading, el("p", {}, flag.detail));
    panel.hidden = false;
    heading.focus();
    try {
      const found = await api("", "/audit/search", { method: "POST", body: { event_id: flag.event_id, limit: 1 } });
      if (found.items[0]) panel.append(recordFacts(found.items[0]));
    } catch (error) {
      panel.append(problemNode(error));
    }
    panel.append(reviewForm(flag, async (saved) => {
      panel.hidden = true;
      say(status, `Review of flag ${flag.flag_id} saved in the log (${saved.chain} #${saved.seq}).`);
      await Promise.all([load(), loadReviews()]);
    }), el("button", { type: "button", class: "link", onclick: () => { panel.hidden = true; } }, "Close"));
  }

  function flagRow(flag) {
    return row({ "data-testid": "queue-row", "data-rule": flag.rule, "data-event-id": flag.event_id },
      label(RULES, flag.rule), when(flag.event_time), flag.patient_id, named("people", flag.user_hsa_id),
      named("care_units", flag.care_unit), flag.detail,
      el("span", { class: flag.reviewed ? "status ok" : "status warn" }, flag.reviewed ? "Reviewed" : "To review"),
      flag.reviewed ? "" : el("button", { type: "button", class: "secondary", "data-testid": "open-flag",
        "aria-label": `Open flag ${flag.flag_id}`, onclick: () => open(flag) }, "Open"));
  }

  async function load(after = 0) {
    const body = { after_flag_id: after, limit: PAGE, ...(rule.value ? { rule: rule.value } : {}),
      ...(showReviewed.checked ? {} : { reviewed: false }) };
    try {
      const found = await api("", "/audit/flags/search", { method: "POST", body });
      const rows = found.items.map(flagRow);
      const more = found.items.length === PAGE
        ? el("button", { type: "button", class: "secondary", onclick: () => load(found.items[PAGE - 1].flag_id) }, "Next flags")
        : "";
      list.replaceChildren(rows.length
        ? table("Flagged accesses", ["Rule", "Time", "Patient", "User", "Care unit", "Why", "Status", ""], rows,
          { "data-testid": "queue" })
        : el("p", { class: "muted", "data-testid": "queue-empty" }, "Nothing waiting for review."), more);
    } catch (error) {
      list.replaceChildren(problemNode(error));
    }
  }

  rule.addEventListener("change", () => load());
  showReviewed.addEventListener("change", () => load());
  load();
  loadReviews();
  return el("section", { id: "queue", "aria-labelledby": "queue-title" },
    el("h2", { id: "queue-title" }, "Sample-check queue"),
    el("div", { class: "controls" }, field("Rule", rule),
      el("label", { for: "q-reviewed", class: "check" }, showReviewed, "Show reviewed flags too"),
      el("button", { type: "button", class: "secondary", "data-testid": "queue-refresh", onclick: () => load() }, "Refresh")),
    status, list, panel, el("h3", {}, "Reviews"), reviews);
}
