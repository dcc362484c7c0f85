import { el, session } from "./assets/npo.js";

const who = session(["operator"]);
if (who) document.querySelector("main").replaceChildren(el("p", {}, "placeholder"));
