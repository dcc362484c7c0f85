import { el, session } from "./assets/npo.js";

const who = session(["clinician"]);
if (who) document.querySelector("main").replaceChildren(el("p", {}, "placeholder"));
