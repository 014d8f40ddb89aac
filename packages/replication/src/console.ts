import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { CONSOLE_PAGE_HEADERS, consolePage, linkRates, takeSnapshot, viewedBy, type ConsoleLink, type ConsoleSnapshot, type ConsoleViewer } from "@bsfg/console";
import type { Policy, ZoneConfig } from "@bsfg/config";
import { Reason, reasonOf, rejection } from "@bsfg/proto";
import { authorize, viewerOf, type FastifyInstance, type FastifyReply, type FastifyRequest } from "@bsfg/service-kit";
import { listQuarantine, type ZoneStore } from "@bsfg/storage";
import type { Logger } from "./logger.js";
import type { OperatorActions } from "./operator-actions.js";

/** How long one snapshot serves every viewer: the page polls every 2 s, so many tabs cost one read. */
const SNAPSHOT_TTL_MS = 1_000;

const version = (() => {
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
})();

/** The zone console's data, read from the sync deployable's store and worker, cached briefly; whole (viewedBy trims it per viewer). */
export function consoleSnapshots(config: ZoneConfig, store: ZoneStore, links: () => readonly ConsoleLink[]): () => Promise<ConsoleSnapshot> {
  const rates = linkRates();
  const storage = store.config;
  const source = {
    zone: config.zone,
    version: `bsfg ${version} · node ${process.versions.node} · nats-server ${store.connection.info?.version ?? "?"}`,
    certificatePem: config.tls.cert,
    streams: Object.entries(storage.streams).map(([name, s]) => ({ name, maxBytes: s.maxBytes, maxAgeMs: s.maxAge })),
    rejectAtPercent: storage.backpressure.rejectAtPercent,
    fillPercent: (stream: string) => store.fillPercent(stream),
    highWater: (stream: string) => store.highWater(stream),
    consumers: storage.consumers.map((c) => ({ name: c.name, stream: c.stream })),
    cursor: (name: string) => store.cursor(name),
    links,
    leaseHolder: (link: string) => store.leases.holder(link),
    async storedAfter(stream: string, offset: number) {
      const page = await store.read({ stream, skipOrigins: [] }, offset, { limit: 1 });
      const first = page.facts[0];
      return first ? Number(first.storedAtUnixMs) : undefined;
    },
    quarantine: async () => (await listQuarantine(store.substrate)).map((q) => ({
      id: q.id, link: q.link, reason: q.reason, messageId: q.messageId, peerOffset: q.peerOffset, state: q.state, quarantinedAtMs: q.quarantinedAtMs, detail: q.detail,
    })),
  };
  let cached: { at: number; snapshot: Promise<ConsoleSnapshot> } | undefined;
  return () => {
    const now = performance.now();
    if (!cached || now - cached.at > SNAPSHOT_TTL_MS) cached = { at: now, snapshot: takeSnapshot(source, rates) };
    return cached.snapshot;
  };
}

const page = (zone: string) => async (_request: FastifyRequest, reply: FastifyReply) =>
  reply.type("text/html; charset=utf-8").headers(CONSOLE_PAGE_HEADERS).send(consolePage(zone));

/** The probe port's console: read-only for whoever reaches the port (loopback, or the observability network). */
export function readOnlyConsole(app: FastifyInstance, zone: string, snapshot: () => Promise<ConsoleSnapshot>, log: Logger): void {
  app.get("/console", page(zone));
  app.get("/console/snapshot", async (_request, reply) => reply.header("cache-control", "no-store").send(viewedBy(await snapshot(), undefined)));
  app.post("/console/actions/:verb", async (request, reply) => refuse(reply, log, request, undefined,
    rejection(Code.PermissionDenied, Reason.OperatorNotAllowed, "the probe port's console is read-only: act from the mTLS console (listen.console) with an identity whose policy has console: operate")));
}

export interface OperatorConsoleDeps {
  readonly zone: string;
  readonly policy: Policy;
  readonly snapshot: () => Promise<ConsoleSnapshot>;
  readonly actions: OperatorActions;
  readonly log: Logger;
}

type Verb = "pause" | "resume" | "release" | "drop";
const VERBS: readonly Verb[] = ["pause", "resume", "release", "drop"];
const NOTE_MAX_CHARS = 1_000;

/**
 * The console over mTLS (listen.console): every request's client certificate is looked up
 * in the zone's policy. `console: view` sees the page; `console: operate` sees error text
 * and may act — pause and resume links, and release and drop quarantined facts with the
 * quarantine verbs its policy grants, exactly as the CLI may.
 */
export function operatorConsole(app: FastifyInstance, deps: OperatorConsoleDeps): void {
  const { policy, log } = deps;
  const viewers = new WeakMap<FastifyRequest, ConsoleViewer>();
  app.addHook("onRequest", async (request, reply) => {
    const names = viewerOf(request.raw.socket)?.names ?? [];
    let identity: string;
    try {
      identity = authorize(policy.mayUseConsole(names, "view"));
    } catch (err) {
      return refuse(reply, log, request, names[0], ConnectError.from(err));
    }
    viewers.set(request, {
      identity,
      operate: policy.mayUseConsole(names, "operate").allowed,
      quarantine: (["read", "release", "drop"] as const).filter((verb) => policy.mayOperateQuarantine(names, verb).allowed),
    });
    return undefined;
  });
  app.get("/console", page(deps.zone));
  app.get("/console/snapshot", async (request, reply) => reply.header("cache-control", "no-store").send(viewedBy(await deps.snapshot(), viewers.get(request))));
  app.post("/console/actions/:verb", async (request, reply) => {
    const viewer = viewers.get(request)!;
    try {
      const verb = (request.params as { verb: string }).verb as Verb;
      if (!VERBS.includes(verb)) throw rejection(Code.NotFound, Reason.InvalidField, `no console action "${String(verb).slice(0, 40)}": ${VERBS.join(", ")}`, { field: "verb" });
      // A page of another origin cannot send this header without a CORS preflight, which this server never grants.
      if (request.headers["x-bsfg-console"] !== "1") throw rejection(Code.PermissionDenied, Reason.OperatorNotAllowed, "console actions come from the console page (header x-bsfg-console: 1)");
      const origin = request.headers.origin;
      if (origin !== undefined && origin !== `https://${request.headers.host}`) throw rejection(Code.PermissionDenied, Reason.OperatorNotAllowed, `console actions come from the console's own origin, not ${origin.slice(0, 200)}`);
      authorize(policy.mayUseConsole(viewerOf(request.raw.socket)?.names ?? [], "operate"));
      return reply.send(await act(deps, viewer, verb, request.body));
    } catch (err) {
      return refuse(reply, log, request, viewer.identity, ConnectError.from(err));
    }
  });
}

async function act(deps: OperatorConsoleDeps, viewer: ConsoleViewer, verb: Verb, body: unknown): Promise<{ message: string } & Record<string, unknown>> {
  const fields = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const note = typeof fields.note === "string" && fields.note.trim() !== "" ? fields.note.trim() : undefined;
  if (note !== undefined && note.length > NOTE_MAX_CHARS) throw rejection(Code.InvalidArgument, Reason.InvalidField, `a note is at most ${NOTE_MAX_CHARS} characters`, { field: "note" });
  const by = viewer.identity;
  if (verb === "pause" || verb === "resume") {
    const link = fields.link;
    if (typeof link !== "string" || link === "") throw rejection(Code.InvalidArgument, Reason.MissingField, "name the link to pause or resume (link)", { field: "link" });
    await (verb === "pause" ? deps.actions.pauseLink(link, by, note) : deps.actions.resumeLink(link, by, note));
    return { message: `link ${link} ${verb === "pause" ? "paused: no replica pulls it until it is resumed" : "resumed"}`, link };
  }
  const id = typeof fields.id === "number" ? fields.id : typeof fields.id === "string" && /^\d+$/.test(fields.id) ? Number(fields.id) : undefined;
  if (id === undefined || !Number.isSafeInteger(id)) throw rejection(Code.InvalidArgument, Reason.MissingField, "name the quarantine entry (id)", { field: "id" });
  authorize(deps.policy.mayOperateQuarantine([by], verb), { id: String(id) });
  if (verb === "release") {
    const released = await deps.actions.releaseQuarantined(id, by, note);
    return { message: released.already ? `entry ${id} was released already, at offset ${released.offset}` : `entry ${id} released: offset ${released.offset} of ${released.entry.stream}`, id, offset: released.offset };
  }
  if (note === undefined) throw rejection(Code.InvalidArgument, Reason.MissingField, "a drop needs a reason (note): it is recorded with the entry and in the audit stream", { field: "note" });
  const dropped = await deps.actions.dropQuarantined(id, by, note);
  return { message: dropped.already ? `entry ${id} was dropped already` : `entry ${id} dropped`, id };
}

/** A refusal as the console's script reads it (Connect's JSON error, with the bsfg.v1 reason), and its log line. */
function refuse(reply: FastifyReply, log: Logger, request: FastifyRequest, identity: string | undefined, error: ConnectError): FastifyReply {
  const code = codeToString(error.code);
  const reason = reasonOf(error);
  log.warn({ event: "console_refused", method: request.method, path: request.url.slice(0, 200), identity, code, reason, error: error.rawMessage }, `console: ${request.method} ${request.url.slice(0, 200)} refused (${code}${reason ? ` / ${reason}` : ""})`);
  if (request.method === "GET" && request.url === "/console") {
    return reply.code(codeToHttpStatus(error.code)).type("text/plain; charset=utf-8").send(`${code}${reason ? ` / ${reason}` : ""}: ${error.rawMessage}\n`);
  }
  return reply.code(codeToHttpStatus(error.code)).header("cache-control", "no-store").send({ code, reason, message: error.rawMessage });
}
