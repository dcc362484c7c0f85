// Chain verification: POST /audit/verify recomputes every chain against the signed checkpoints.
import { api, el, formatTime, problemNode, say } from "./assets/npo.js";
import { row, table } from "./labels.js";

function chainRow(chain) {
  return row({ "data-testid": "chain-row", "data-chain": chain.chain }, chain.chain, String(chain.records),
    el("span", { class: chain.ok ? "status ok" : "status bad" }, chain.ok ? "✓ Intact" : "✗ Broken"),
    chain.findings.length ? el("ul", {}, chain.findings.map((f) => el("li", {}, f))) : "");
}

export function chainsSection() {
  const status = el("p", { role: "status", "aria-live": "polite", "data-testid": "verify-status" },
    "Not checked yet in this session.");
  const result = el("div");
  const button = el("button", { type: "button", "data-testid": "verify" }, "Verify all chains now");
  button.addEventListener("click", async () => {
    button.disabled = true;
    say(status, "Verifying… (every record is recomputed; slow on a large log)");
    try {
      const report = await api("", "/audit/verify", { method: "POST" });
      const broken = report.chains.filter((c) => !c.ok).length;
      status.replaceChildren(el("span", { class: report.ok ? "status ok" : "status bad" },
        report.ok ? `All ${report.chains.length} chains intact` : `${broken} chain(s) broken`),
        ` — checked ${formatTime(report.checked_at)}.`);
      result.replaceChildren(table("Chains", ["Chain", "Records", "Status", "Findings"],
        report.chains.map(chainRow), { "data-testid": "chains" }));
    } catch (error) {
      say(status, "");
      result.replaceChildren(problemNode(error));
    } finally {
      button.disabled = false;
    }
  });
  return el("section", { id: "chains", "aria-labelledby": "chains-title" },
    el("h2", { id: "chains-title" }, "Chain verification"),
    el("p", { class: "muted" }, "Each chain's records are linked by hashes and sealed by signed checkpoints. "
      + "Verification names the first altered, deleted, inserted or rewritten record of a chain."),
    button, status, result);
}
