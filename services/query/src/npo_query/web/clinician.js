// The clinician's view: find a patient, see and register the standing (relation, consent,
// emergency access), read the overview as producers answer, hear of new information.
// The personnummer stays in this page's memory and in request bodies, never in a URL.
import { el, loadNames, named, problemNode, say, session } from "./assets/npo.js";
import { createStanding } from "./standing.js";
import { createOverview } from "./overview.js";
import { createLive } from "./live.js";

/** "YYYYMMDD-NNNN" or 12 digits → 12 digits, or an error text for the clinician. */
export function checkPersonnummer(raw) {
  const value = raw.replace(/[\s-]/g, "");
  if (!/^\d{12}$/.test(value)) {
    return { error: "Enter 12 digits with the century: YYYYMMDDNNNN (a hyphen is fine)." };
  }
  const [year, month, day] = [value.slice(0, 4), value.slice(4, 6), value.slice(6, 8)].map(Number);
  const realDay = day > 60 ? day - 60 : day; // a samordningsnummer adds 60 to the day
  const date = new Date(Date.UTC(year, month - 1, realDay));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== realDay) {
    return { error: "The first eight digits are not a date (YYYYMMDD)." };
  }
  if (!luhnValid(value.slice(2))) {
    return { error: "The check digit does not match: please check the number." };
  }
  return { value };
}

function luhnValid(digits) {
  let total = 0;
  for (let i = 0; i < digits.length; i += 1) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    total += d;
  }
  return total % 10 === 0;
}

function display(pnr) {
  return `${pnr.slice(0, 8)}-${pnr.slice(8)}`;
}

function searchSection(onFound) {
  const input = el("input", {
    id: "pnr", name: "patientId", inputmode: "numeric", autocomplete: "off", required: true,
    "aria-describedby": "pnr-hint", "data-testid": "pnr", maxlength: "13",
  });
  const message = el("div", { "aria-live": "polite", "data-testid": "find-message" });
  const form = el("form", { class: "inline", "data-testid": "find-form", novalidate: true },
    el("label", { for: "pnr" }, "Personnummer or samordningsnummer", input),
    el("button", { type: "submit" }, "Find patient"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checked = checkPersonnummer(input.value);
    if (checked.error) {
      input.setAttribute("aria-invalid", "true");
      message.replaceChildren(el("p", { role: "alert", class: "problem", "data-testid": "pnr-error" },
        checked.error));
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    say(message, "Looking up the patient…");
    try {
      await onFound(checked.value);
      message.replaceChildren();
    } catch (error) {
      message.replaceChildren(problemNode(error));
    }
  });
  return el("section", { "aria-labelledby": "find-title" },
    el("h2", { id: "find-title" }, "Find a patient"),
    form,
    el("p", { id: "pnr-hint", class: "muted" },
      "12 digits with the century, e.g. 19121212-1212. The number is sent only in request bodies."),
    message);
}

function start(claims) {
  const main = document.querySelector("#main");
  const patientArea = el("div", { "data-testid": "patient-area" });
  const overview = createOverview();
  const live = createLive({ onRefresh: () => overview.run() });
  const standing = createStanding(claims, {
    onChange: (current) => live.follow(current),
  });

  async function choose(pnr) {
    live.stop();
    const current = await standing.load(pnr); // throws a Problem on refusal: shown by the search
    overview.open(pnr);
    patientArea.replaceChildren(
      el("h2", { class: "patient", "data-testid": "patient-heading", tabindex: "-1" },
        `Patient ${display(pnr)}`),
      live.node, standing.node, overview.node);
    patientArea.querySelector("[data-testid=patient-heading]").focus();
    live.follow(current);
  }

  main.replaceChildren(
    el("p", { class: "muted", "data-testid": "reading-as" },
      "Reading as ", named("people", claims.sub, claims.name), " at ", named("care_units", claims.care_unit),
      " (", named("care_givers", claims.care_giver), `), purpose ${claims.purpose ?? "?"}.`),
    searchSection(choose), patientArea);
  document.querySelector("#pnr").focus();
}

const claims = session(["clinician"]);
if (claims) {
  await loadNames();
  start(claims);
}
