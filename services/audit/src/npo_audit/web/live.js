// The live stream: POST /audit/stream (server-sent events), newest first, bounded, pausable.
import { el, formatTime, named, problemNode, say, stream } from "./assets/npo.js";
import { BASES, OUTCOMES, flagPills, label } from "./labels.js";

const KEEP = 50;  // entries shown; older ones drop off the end
const RETRY_MS = 3000;

function entry(item) {
  return el("li", { "data-testid": "live-entry", "data-event-id": item.event_id, class: item.flags.length ? "flagged" : "" },
    el("time", { datetime: item.event_time }, formatTime(item.event_time)), " ",
    el("strong", {}, named("people", item.user_hsa_id, item.user_name)),
    item.care_unit ? [" (", named("care_units", item.care_unit), ") · "] : " · ",
    item.kind === "access" ? `${label(BASES, item.basis)}, ${label(OUTCOMES, item.outcome)}` : item.kind,
    ` · patient ${item.patient_id || "–"} `, flagPills(item.flags));
}

export function liveSection() {
  const list = el("ol", { class: "live", reversed: true, "aria-live": "polite", "aria-relevant": "additions",
    "data-testid": "live-list", "aria-label": "Newest records first" });
  const status = el("p", { role: "status", "data-testid": "live-status" }, "Connecting…");
  const flagsOnly = el("input", { type: "checkbox", id: "live-flags-only" });
  const pause = el("button", { type: "button", class: "secondary", "aria-pressed": "false", "data-testid": "live-pause" }, "Pause");
  const held = [];
  let paused = false, received = 0, controller = null;

  const show = (items) => {
    list.prepend(...items.map(entry).reverse());
    while (list.children.length > KEEP) list.lastElementChild.remove();
  };
  const report = () => say(status, paused
    ? `Paused: ${held.length} new record(s) waiting.`
    : `Live: ${received} record(s) received since the page opened.`);

  function onEvent({ event, data }) {
    if (event === "ready") return report();
    if (event !== "record" && event !== "flag") return;
    received += 1;
    if (paused) {
      held.push(data);
      if (held.length > KEEP) held.shift();
    } else {
      show([data]);
    }
    report();
  }

  async function connect() {
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    try {
      await stream("", "/audit/stream", { body: { flags_only: flagsOnly.checked }, signal: mine.signal }, onEvent);
      if (!mine.signal.aborted) say(status, "The stream ended; reconnecting…");
    } catch (error) {
      if (mine.signal.aborted) return;
      status.replaceChildren(problemNode(error), " Retrying shortly…");
    }
    if (!mine.signal.aborted) setTimeout(() => controller === mine && connect(), RETRY_MS);
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) show(held.splice(0));
    report();
  });
  flagsOnly.addEventListener("change", () => { list.replaceChildren(); connect(); });
  connect();
  return el("section", { id: "live", "aria-labelledby": "live-title" },
    el("h2", { id: "live-title" }, "Live stream"),
    el("div", { class: "controls" }, el("label", { for: "live-flags-only", class: "check" }, flagsOnly, "Flagged records only"), pause),
    status, list);
}
