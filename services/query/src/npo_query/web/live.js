// Live notice: while the reader has a patient relation, POST /v1/subscriptions (server-sent
// events) and, when new information is announced, say so with a button that re-runs the
// overview. A notice tells *that* there is something new, never its content.
import { el, problemNode, stream } from "./assets/npo.js";

export function createLive({ onRefresh }) {
  const state = el("p", { class: "muted", "data-testid": "live-state" });
  const notice = el("div", { role: "status", "aria-live": "polite", "data-testid": "live-region" });
  const node = el("div", { class: "live" }, notice, state);
  let controller = null, following = null;

  function stop() {
    controller?.abort();
    controller = null;
    following = null;
    notice.replaceChildren();
    state.textContent = "";
  }

  function announce(count) {
    const refresh = el("button", { type: "button", "data-testid": "live-refresh", onclick: () => {
      notice.replaceChildren();
      onRefresh();
    } }, "Refresh overview");
    notice.replaceChildren(el("p", { class: "notice info", "data-testid": "live-notice" },
      `New information for this patient — refresh (${count} change${count === 1 ? "" : "s"}). `,
      refresh));
  }

  async function subscribe(pnr) {
    controller = new AbortController();
    following = pnr;
    let changes = 0;
    state.textContent = "Connecting for live notices…";
    try {
      await stream("", "/v1/subscriptions", { body: { patientId: pnr }, signal: controller.signal },
        ({ event }) => {
          if (event === "subscribed") {
            state.textContent = "Live: you will be told when new information arrives.";
            state.dataset.state = "subscribed";
          } else if (event === "change") {
            changes += 1;
            announce(changes);
          } else if (event === "expired") {
            state.textContent = "Live notices ended; find the patient again to resume.";
          }
        });
      if (following === pnr) state.textContent = "Live notices ended.";
    } catch (error) {
      if (error.name === "AbortError") return;
      state.replaceChildren(problemNode(error));
    } finally {
      if (following === pnr) { following = null; delete state.dataset.state; }
    }
  }

  /** Follow the patient when the standing has a relation (and not already following them). */
  function follow(standing) {
    if (!standing.relation) {
      if (!following) state.textContent = "Live notices need a patient relation.";
      return;
    }
    if (following === standing.pnr) return;
    controller?.abort();
    subscribe(standing.pnr);
  }

  // Leaving the page ends the subscription at once (the server then frees it).
  window.addEventListener("pagehide", stop);
  return { node, follow, stop };
}
