export { consolePage, escapeHtml, CONSOLE_PAGE_HEADERS } from "./page.js";
export { linkRates, type LinkRates } from "./rates.js";
export { takeSnapshot, viewedBy, withoutOperatorText, type ConsoleLink, type ConsoleSnapshot, type ConsoleSource, type ConsoleViewer, type QuarantinedFact } from "./snapshot.js";
