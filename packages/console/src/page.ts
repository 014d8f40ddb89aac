/**
 * The console page: one HTML document with its style and script inline — nothing is fetched
 * from anywhere but the zone (plants are offline). It asks for `console/snapshot` every 2 s,
 * relative to itself, and — only when the snapshot says its viewer may operate — posts the
 * actions an operator confirmed to `console/actions/<verb>`. Values are put in with
 * textContent, never parsed as HTML. Light and dark follow the operator's system setting.
 */
export function consolePage(zone: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:">
<title>${escapeHtml(zone)} · BSFG console</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1><span id="zone">${escapeHtml(zone)}</span> <small>BSFG zone console</small></h1>
  <p id="facts" aria-live="polite">loading…</p>
  <p id="viewer"></p>
  <p id="action-result" role="status" aria-live="polite"></p>
</header>
<main>
  <section aria-labelledby="links-title"><h2 id="links-title">Peer links</h2>
    <table id="links"><caption>Each link this zone pulls from a peer: is it moving, how far behind, what failed last.</caption>
      <thead><tr><th scope="col">Link (replica holding it)</th><th scope="col">State</th><th scope="col">Peer cursor / high water</th><th scope="col">Lag</th><th scope="col">Facts/s (15 min)</th><th scope="col">Crossing p50 / p99 (5 min)</th><th scope="col">No progress for</th><th scope="col">Last error</th><th scope="col" class="operate" hidden>Actions</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="streams-title"><h2 id="streams-title">Streams</h2>
    <table id="streams"><caption>Fill against the backpressure threshold (appends are refused from it on), capacity and retention.</caption>
      <thead><tr><th scope="col">Stream</th><th scope="col">Fill</th><th scope="col">Last offset</th><th scope="col">Oldest unconfirmed</th><th scope="col">Capacity</th><th scope="col">Retention</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="consumers-title"><h2 id="consumers-title">Consumers</h2>
    <table id="consumers"><caption>What peers pull from this zone: each consumer's confirmed cursor.</caption>
      <thead><tr><th scope="col">Consumer</th><th scope="col">Stream</th><th scope="col">Cursor</th><th scope="col">Behind</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="quarantine-title"><h2 id="quarantine-title">Quarantine</h2>
    <table id="quarantine"><caption>Relayed facts set aside because they can never be admitted as they are, by link and reason.</caption>
      <thead><tr><th scope="col">Link</th><th scope="col">Reason</th><th scope="col">Facts</th></tr></thead><tbody></tbody></table>
    <table id="quarantined"><caption>The newest entries (or act on them with <code>bsfg quarantine</code>; its <code>show</code> gives the whole record).</caption>
      <thead><tr><th scope="col">Entry</th><th scope="col">Link</th><th scope="col">Reason</th><th scope="col">Message id</th><th scope="col">Peer offset</th><th scope="col">State</th><th scope="col">Set aside</th><th scope="col" class="detail" hidden>Detail</th><th scope="col" class="operate" hidden>Actions</th></tr></thead><tbody></tbody></table></section>
  <section id="problems-section" hidden aria-labelledby="problems-title"><h2 id="problems-title">Could not read</h2><ul id="problems"></ul></section>
</main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title"></h2>
    <p id="confirm-text"></p>
    <label for="confirm-note" id="confirm-note-label"></label>
    <textarea id="confirm-note" rows="3" maxlength="1000"></textarea>
    <p class="buttons"><button type="submit" value="cancel" formnovalidate>Cancel</button> <button type="submit" id="confirm-go" value="confirm" class="primary">Confirm</button></p>
  </form>
</dialog>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

/**
 * Headers the page is served with. The CSP repeats the document's own and adds what a meta tag
 * cannot carry: `frame-ancestors 'none'` (with X-Frame-Options for older browsers), so no other
 * site can frame the console and trick an operator, whose browser presents the certificate to
 * a framed page too, into clicking Pause or Release.
 */
export const CONSOLE_PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fbfbfc; --muted: #57606a; --line: #d0d7de; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --bar: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #30363d; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --bar: #4493f8; } }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0 auto; padding: 1rem 1.5rem; max-width: 72rem; }
h1 { font-size: 1.5rem; margin: 0; } h1 small { font-weight: normal; color: var(--muted); font-size: 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .4rem; }
#facts { color: var(--muted); margin: .2rem 0 0; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; color: var(--muted); padding-bottom: .3rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.state-active, .ok { color: var(--ok); font-weight: 600; } .state-standby, .state-starting { color: var(--muted); }
.state-backing_off, .state-stopped, .bad { color: var(--bad); font-weight: 600; } .warn { color: var(--warn); font-weight: 600; }
meter { width: 8rem; vertical-align: middle; }
svg { vertical-align: middle; } svg polyline { fill: none; stroke: var(--bar); stroke-width: 1.5; }
.empty { color: var(--muted); font-style: italic; }
small.holder { display: block; color: var(--muted); }
#viewer { color: var(--muted); margin: .2rem 0 0; } #action-result { margin: .4rem 0 0; min-height: 1.4em; }
button { font: inherit; padding: .15rem .6rem; border: 1px solid var(--line); border-radius: 4px; background: transparent; color: var(--fg); cursor: pointer; margin-right: .3rem; }
button.danger { color: var(--bad); border-color: var(--bad); } button.primary { background: var(--bar); border-color: var(--bar); color: var(--bg); }
button:focus-visible, textarea:focus-visible { outline: 3px solid var(--bar); outline-offset: 2px; }
dialog { color: var(--fg); background: var(--bg); border: 1px solid var(--line); border-radius: 6px; max-width: 32rem; }
dialog h2 { margin-top: 0; } dialog label { display: block; margin-bottom: .2rem; } dialog textarea { width: 100%; box-sizing: border-box; font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line); }
.buttons { text-align: right; margin-bottom: 0; }
`;

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; };
const seconds = (s) => s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
const ms = (s) => s < 10 ? Math.round(s * 1000) + " ms" : seconds(Math.round(s));
const bytes = (b) => b >= 2 ** 30 ? (b / 2 ** 30).toFixed(1) + " GiB" : Math.round(b / 2 ** 20) + " MiB";
const ago = (iso, now) => seconds(Math.max(0, Math.round((Date.parse(now) - Date.parse(iso)) / 1000))) + " ago";
function fill(tbody, rows, empty, columns) {
  const next = rows.map((r) => { const tr = document.createElement("tr"); for (const td of r) tr.append(td); return tr; });
  if (next.length === 0) { const tr = document.createElement("tr"); tr.append(cell(empty, "empty")); tr.firstChild.colSpan = columns; next.push(tr); }
  tbody.replaceChildren(...next);
}
function spark(points, label) {
  const td = document.createElement("td");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", "120"); svg.setAttribute("height", "24"); svg.setAttribute("role", "img");
  const max = Math.max(1, ...points);
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = label + ": " + (points.length ? Math.round(points[points.length - 1]) + " facts/s now, at most " + Math.round(max) : "no samples yet");
  svg.append(title);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((p, i) => (points.length === 1 ? 0 : i * 118 / (points.length - 1)) + 1 + "," + (22 - p / max * 20)).join(" "));
  svg.append(line); td.append(svg);
  const now = document.createElement("span"); now.textContent = " " + (points.length ? Math.round(points[points.length - 1]) : 0); td.append(now);
  return td;
}
function button(label, danger, onClick) {
  const b = document.createElement("button"); b.type = "button"; b.textContent = label;
  if (danger) b.className = "danger";
  b.addEventListener("click", onClick); return b;
}
function actions(buttons) { const td = document.createElement("td"); td.append(...buttons); return td; }
/** Asks the operator to confirm (with a note, required for a drop), then posts the action. */
function confirmAction(verb, target, title, text, noteLabel, noteRequired) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title; $("confirm-text").textContent = text;
  $("confirm-note-label").textContent = noteLabel; $("confirm-note").value = ""; $("confirm-note").required = noteRequired;
  $("confirm-go").textContent = title.split(" ")[0];
  dialog.onclose = () => {
    if (dialog.returnValue !== "confirm") return;
    const note = $("confirm-note").value.trim();
    send(verb, Object.assign({}, target, note ? { note } : {}));
  };
  dialog.returnValue = ""; dialog.showModal();
}
async function send(verb, body) {
  const result = $("action-result");
  result.className = ""; result.textContent = verb + "…";
  try {
    const answer = await fetch("console/actions/" + verb, { method: "POST", cache: "no-store", headers: { "content-type": "application/json", "x-bsfg-console": "1" }, body: JSON.stringify(body) });
    const outcome = await answer.json();
    if (!answer.ok) { result.className = "bad"; result.textContent = "refused: " + outcome.code + (outcome.reason ? " / " + outcome.reason : "") + ": " + outcome.message; }
    else { result.className = "ok"; result.textContent = outcome.message; }
  } catch (err) {
    result.className = "bad"; result.textContent = "cannot reach the zone: " + err.message;
  }
  refresh();
}
function render(s) {
  document.title = s.zone + " · BSFG console";
  const viewer = s.viewer, operate = !!(viewer && viewer.operate);
  const may = (verb) => operate && viewer.quarantine.includes(verb);
  const detail = s.quarantine.entries.some((q) => q.detail !== undefined);
  for (const th of document.querySelectorAll("th.operate")) th.hidden = !operate;
  for (const th of document.querySelectorAll("th.detail")) th.hidden = !detail;
  $("viewer").textContent = viewer ? "signed in as " + viewer.identity + (operate ? " · may operate" + (viewer.quarantine.length ? " (quarantine: " + viewer.quarantine.join(", ") + ")" : "") : " · read-only") : "read-only view (the probe port); operators act over the mTLS console";
  $("facts").textContent = "version " + s.version + " · up " + seconds(s.uptimeSeconds) +
    (s.certificate ? " · certificate valid " + s.certificate.daysLeft + " more days (until " + s.certificate.notAfter.slice(0, 10) + ")" : "") +
    " · updated " + new Date(s.takenAt).toLocaleTimeString();
  fill($("links").tBodies[0], s.links.map((l) => {
    const stalled = l.sinceProgressSeconds >= 30;
    const state = cell(l.state.replace("_", " "), "state-" + l.state);
    if (l.paused) { const by = document.createElement("small"); by.textContent = " by " + l.paused.by + ", " + ago(l.paused.at, s.takenAt) + (l.paused.note ? ": " + l.paused.note : ""); state.append(by); }
    const name = cell(l.link);
    const held = document.createElement("small"); held.className = "holder";
    held.textContent = l.holder ? "held by " + l.holder : l.paused ? "" : "no replica holds it";
    name.append(held);
    const row = [name, state, cell(l.cursor + " / " + l.highWater, "num"),
      // A paused link fetches nothing, so it does not learn how much waits in the peer zone.
      l.paused ? cell("unknown while paused", "warn") : cell(l.lagFacts === 0 ? "0 facts" : l.lagFacts + " facts · " + seconds(Math.round(l.lagSeconds)), "num" + (l.lagFacts > 0 ? " warn" : "")),
      spark(l.ratePerSecond, l.link),
      cell(l.crossing ? ms(l.crossing.p50Seconds) + " / " + ms(l.crossing.p99Seconds) : "—", "num"),
      cell(l.lagFacts === 0 ? "—" : seconds(l.sinceProgressSeconds), stalled ? "bad" : ""),
      cell(l.lastError ? l.lastError.code + (l.lastError.reason ? " / " + l.lastError.reason : "") + (l.lastError.message ? ": " + l.lastError.message : "") + ", " + ago(l.lastError.at, s.takenAt) : "—", l.lastError ? "warn" : "")];
    if (operate) row.push(actions([l.paused
      ? button("Resume", false, () => confirmAction("resume", { link: l.link }, "Resume " + l.link, "Every sync replica of this zone may pull the link again.", "Note for the audit record (optional)", false))
      : button("Pause", false, () => confirmAction("pause", { link: l.link }, "Pause " + l.link, "No sync replica of this zone will pull this link until it is resumed; facts wait in the peer zone.", "Why (recorded in the audit stream; optional)", false))]));
    return row;
  }), "this zone pulls from no peer", operate ? 9 : 8);
  fill($("streams").tBodies[0], s.streams.map((st) => {
    const td = document.createElement("td"); const meter = document.createElement("meter");
    meter.min = 0; meter.max = 100; meter.value = st.fillPercent; meter.high = st.rejectAtPercent; meter.optimum = 0;
    meter.setAttribute("aria-label", st.name + " fill"); td.append(meter, " " + st.fillPercent.toFixed(1) + " % (refuses at " + st.rejectAtPercent + " %)");
    if (st.fillPercent >= st.rejectAtPercent) td.className = "bad";
    return [cell(st.name), td, cell(String(st.highWater), "num"), cell(st.oldestUnconfirmedSeconds > 0 ? seconds(st.oldestUnconfirmedSeconds) : "—", "num"),
      cell(bytes(st.maxBytes), "num"), cell(st.maxAgeDays + " days", "num")];
  }), "no streams", 6);
  fill($("consumers").tBodies[0], s.consumers.map((c) => [cell(c.name), cell(c.stream), cell(String(c.cursor), "num"), cell(String(c.behind), "num" + (c.behind > 0 ? " warn" : ""))]), "no consumers", 4);
  fill($("quarantine").tBodies[0], s.quarantine.counts.map((q) => [cell(q.link), cell(q.reason, "bad"), cell(String(q.count), "num")]), "nothing set aside", 3);
  fill($("quarantined").tBodies[0], s.quarantine.entries.map((q) => {
    const row = [cell(String(q.id), "num"), cell(q.link), cell(q.reason, "bad"), cell(q.messageId || "(not a readable fact)"),
      cell(String(q.peerOffset), "num"), cell(q.state), cell(seconds(q.ageSeconds) + " ago")];
    if (detail) row.push(cell(q.detail || ""));
    if (operate) {
      const what = "entry " + q.id + " (" + (q.messageId || "offset " + q.peerOffset) + ", " + q.reason + ")";
      row.push(actions([
        ...(may("release") ? [button("Release", false, () => confirmAction("release", { id: q.id }, "Release " + what, "The fact is admitted into this zone's log once, if what set it aside no longer holds; otherwise the zone refuses and says why.", "Note for the audit record (optional)", false))] : []),
        ...(may("drop") ? [button("Drop", true, () => confirmAction("drop", { id: q.id }, "Drop " + what, "The fact is never admitted here. This cannot be undone.", "Why (required, recorded with the entry and in the audit stream)", true))] : []),
      ]));
    }
    return row;
  }), "nothing set aside", 7 + (detail ? 1 : 0) + (operate ? 1 : 0));
  $("problems-section").hidden = s.problems.length === 0;
  $("problems").replaceChildren(...s.problems.map((p) => { const li = document.createElement("li"); li.textContent = p; return li; }));
}
async function refresh() {
  try {
    const answer = await fetch("console/snapshot", { cache: "no-store" });
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    render(await answer.json());
  } catch (err) {
    $("facts").textContent = "cannot reach the zone: " + err.message + " (retrying)";
  }
}
refresh();
setInterval(refresh, 2000);
`;
