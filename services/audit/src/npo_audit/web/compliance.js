import { el, session } from "./assets/npo.js";

const who = session(["compliance_officer"]);
if (who) document.querySelector("main").replaceChildren(el("p", {}, "placeholder"));
