import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { createBsfgClient } from "@bsfg/client";
import { legitFact, type IdSource } from "./hostile-inputs.js";
import { GroupTally, type GroupContext, type HostileGroupResult } from "./hostile-tally.js";
import type { LogExpectations } from "./hostile-verify.js";
import { forEachLimited, openConnection, type Connection, type Outcome } from "./hostile-wire.js";
import type { HostileZone } from "./hostile-zone.js";

/*
 * Connection load: thousands of idle mTLS connections and a slowloris (requests and
 * headers that trickle in a byte at a time) held against ingest while a producer
 * appends, one fact per call, as it would any day. What matters is the producer's
 * latency against the same measurement without the load, and that the server neither
 * falls over nor stops answering.
 */

export interface LatencySummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly calls: number;
  readonly failures: number;
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

/**
 * `count` AppendFact calls, one fact each, through the typed client on a fresh connection,
 * after `warmup` unmeasured ones (connection, JIT and the zone's caches).
 */
export async function measureAppends(zone: HostileZone, expectations: LogExpectations, ids: IdSource, count: number, log: (line: string) => void, warmup = 0): Promise<LatencySummary> {
  const { ca, cert, key } = zone.credentials("producer");
  const client = createBsfgClient({ url: zone.urls.ingest, tls: { ca, cert: cert!, key: key! }, retry: { attempts: 1 }, timeoutMs: 10_000 });
  const latencies: number[] = [];
  let failures = 0;
  try {
    for (let i = 0; i < warmup + count; i++) {
      const message = legitFact(ids.nextId());
      const started = performance.now();
      try {
        const result = await client.appendFact(message);
        if (i >= warmup) latencies.push(performance.now() - started);
        expectations.acknowledged([message], [result]);
      } catch (err) {
        failures++;
        // It may have landed: the log check allows it, as sent.
        expectations.unknownOutcome([message]);
        if (failures <= 3) log(`hostile: a legitimate AppendFact failed: ${String(err)}`);
      }
    }
  } finally {
    client.close();
  }
  latencies.sort((a, b) => a - b);
  return { p50Ms: round(percentile(latencies, 50)), p99Ms: round(percentile(latencies, 99)), calls: count, failures };
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** A connection the campaign holds open; `outcome` says what became of it. */
interface Held {
  outcome(): Outcome;
  close(): void;
  /** Whether our side still has it open (for the "all closed" check). */
  open(): boolean;
}

const state = (code: string, detail = "", internal = false): Outcome => ({ code, reason: undefined, internal, messages: [], detail });

/** A TLS connection with a valid client certificate that, once established, sends nothing. */
function idleTls(port: number, credentials: ReturnType<HostileZone["credentials"]>, alpn: string): Promise<{ socket: TLSSocket; held: Held }> {
  return new Promise((resolve) => {
    let closedByUs = false;
    let established = false;
    let closed = false;
    const socket = tlsConnect({ host: "127.0.0.1", port, ...credentials, servername: "localhost", ALPNProtocols: [alpn] });
    const held: Held = {
      outcome: () => (!established ? state("tls_refused") : closed && !closedByUs ? state("closed_by_server") : state("held")),
      close: () => {
        closedByUs = true;
        socket.destroy();
      },
      open: () => !socket.destroyed,
    };
    socket.setTimeout(15_000, () => socket.destroy());
    socket.on("error", () => undefined);
    socket.once("secureConnect", () => {
      established = true;
      socket.setTimeout(0);
      resolve({ socket, held });
    });
    socket.once("close", () => {
      closed = true;
      if (!established) resolve({ socket, held });
    });
  });
}

/** An HTTP/2 session (preface and SETTINGS exchanged) that then sends nothing. */
function idleH2(url: string, credentials: ReturnType<HostileZone["credentials"]>): Promise<Held> {
  const connection = openConnection(url, credentials);
  let closedByUs = false;
  const held: Held = {
    outcome: () => (!connection.established() ? state("tls_refused") : connection.closed() && !closedByUs ? state("closed_by_server") : state("held")),
    close: () => {
      closedByUs = true;
      connection.close();
    },
    open: () => !connection.session.destroyed,
  };
  return new Promise((resolve) => {
    const done = () => resolve(held);
    const timer = setTimeout(done, 15_000);
    connection.session.once("remoteSettings", () => (clearTimeout(timer), done()));
    connection.session.once("close", () => (clearTimeout(timer), done()));
  });
}

/** An HTTP/2 AppendFact whose body arrives one byte per tick, never finishing. */
function slowH2Request(connection: Connection, tickMs: number): Held {
  let status: number | undefined;
  let closed = false;
  let closedByUs = false;
  const stream = connection.session.request({ ":method": "POST", ":path": "/bsfg.v1.BoundaryService/AppendFact", "content-type": "application/proto", "connect-protocol-version": "1", "content-length": "100000" });
  stream.on("response", (h) => (status = Number(h[":status"])));
  stream.on("data", () => undefined);
  stream.on("error", () => undefined);
  stream.on("close", () => (closed = true));
  const timer = setInterval(() => {
    if (!stream.destroyed && stream.writable) stream.write(Uint8Array.of(0x0a));
  }, tickMs);
  return {
    outcome: () => (status !== undefined ? state(`http_${status}`, "", status >= 500) : closed && !closedByUs ? state("closed_by_server") : state("held")),
    close: () => {
      closedByUs = true;
      clearInterval(timer);
      stream.close();
    },
    open: () => !stream.destroyed,
  };
}

/** An HTTP/1.1 request (the server also speaks it) whose headers arrive one byte per tick. */
async function slowH1Headers(port: number, credentials: ReturnType<HostileZone["credentials"]>, tickMs: number): Promise<Held> {
  const { socket, held: tls } = await idleTls(port, credentials, "http/1.1");
  let status: number | undefined;
  socket.on("data", (chunk: Buffer) => {
    const match = /^HTTP\/1\.1 (\d{3})/.exec(chunk.toString("latin1"));
    if (match && status === undefined) status = Number(match[1]);
  });
  if (!socket.destroyed) socket.write("POST /bsfg.v1.BoundaryService/AppendFact HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write("a");
  }, tickMs);
  return {
    outcome: () => (status !== undefined ? state(`http_${status}`, "", status >= 500) : tls.outcome()),
    close: () => {
      clearInterval(timer);
      tls.close();
    },
    open: tls.open,
  };
}

export interface LoadResult {
  readonly groups: HostileGroupResult[];
  readonly underLoad: LatencySummary;
  /** Connections of ours still open after closing them all: must be 0. */
  readonly leftOpen: number;
}

/**
 * Opens `idle` idle connections (half bare TLS, half HTTP/2 sessions) and a slowloris
 * (HTTP/2 bodies and HTTP/1.1 headers a byte at a time) to ingest, measures the
 * producer's appends meanwhile, then closes everything and reports what became of
 * each connection.
 */
export async function connectionLoad(ctx: GroupContext, measure: () => Promise<LatencySummary>): Promise<LoadResult> {
  const idleCount = ctx.quick ? 200 : 2_000;
  const slowCount = ctx.quick ? 20 : 100;
  const url = ctx.zone.urls.ingest;
  const port = Number(new URL(url).port);
  // Another producer than the one whose latency is measured: connections are capped per identity,
  // so a flooding identity may lock itself out, never the others.
  const credentials = ctx.zone.credentials("flooder");
  const idle: Held[] = [];
  const slow: Held[] = [];
  const slowSessions: Connection[] = [];
  let measured: Omit<LoadResult, "leftOpen">;
  try {
    const started = Date.now();
    await forEachLimited(idleCount, 50, async (i) => {
      idle.push(i % 2 === 0 ? (await idleTls(port, credentials, "h2")).held : await idleH2(url, credentials));
    });
    ctx.log(`hostile: ${idle.length} idle connections open in ${Date.now() - started} ms`);
    for (let i = 0; i < slowCount; i++) {
      if (i % 2 === 0) {
        // Five slow requests per HTTP/2 connection: streams, not connections, are the unit there.
        if (i % 10 === 0) slowSessions.push(openConnection(url, credentials));
        slow.push(slowH2Request(slowSessions.at(-1)!, 200));
      } else {
        slow.push(await slowH1Headers(port, credentials, 200));
      }
    }
    const underLoad = await measure();
    measured = { groups: [tallyHeld(ctx, `${idleCount} idle TLS connections`, idle), tallyHeld(ctx, `slowloris (${slowCount} trickling requests)`, slow)], underLoad };
  } finally {
    for (const held of [...idle, ...slow]) held.close();
    for (const connection of slowSessions) connection.close();
  }
  // Destroyed sockets report closed on the next turn of the event loop.
  await new Promise((resolve) => setImmediate(resolve));
  const leftOpen = [...idle, ...slow].filter((h) => h.open()).length;
  if (leftOpen > 0) ctx.log(`hostile: ${leftOpen} load connections still open after closing them`);
  return { ...measured, leftOpen };
}

function tallyHeld(ctx: GroupContext, name: string, held: readonly Held[]): HostileGroupResult {
  const tally = new GroupTally(name, ctx.log);
  for (const h of held) tally.record(h.outcome(), name);
  return tally.result();
}
