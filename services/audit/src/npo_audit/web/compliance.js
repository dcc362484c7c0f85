// The compliance officer's page: search, live stream, sample-check queue, chain verification.
import { el, loadNames, session } from "./assets/npo.js";
import { chainsSection } from "./chains.js";
import { liveSection } from "./live.js";
import { queueSection } from "./queue.js";
import { searchSection } from "./search.js";

const ROLE = "compliance_officer";
const who = session([ROLE]);
const main = document.querySelector("main");
if (who && (who.roles ?? []).includes(ROLE)) {
  await loadNames();
  main.replaceChildren(searchSection(), liveSection(), queueSection(), chainsSection());
} else if (who) {
  main.replaceChildren(el("p", { class: "notice", "data-testid": "refused" },
    "The access log is for compliance officers. Sign out and sign in with a compliance officer's token."));
}
