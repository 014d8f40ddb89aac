export { consolePage, escapeHtml } from "./page.js";
export { linkRates, type LinkRates } from "./rates.js";
export { takeSnapshot, type ConsoleLink, type ConsoleSnapshot, type ConsoleSource, type QuarantinedFact } from "./snapshot.js";
