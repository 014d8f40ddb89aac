import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import { loadZoneConfig, type ZoneConfig } from "@bsfg/config";
import { AppendStatus, reasonOf } from "@bsfg/proto";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { freePort, pollUntil, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { startDeployable, type RunningDeployable } from "./run.js";
import { createTestPki, logCollector, producedFact, writeTestZoneFiles, type TestPki } from "./test-support.js";

const ingestMain = resolve(dirname(fileURLToPath(import.meta.url)), "../../../apps/ingest/dist/main.js");

const LOOPS = 8;
/** Acknowledged appends to see before the signal. */
const ACKED_BEFORE_SIGTERM = 200;
/** Beyond the configured shutdown grace, for process start-up costs and exit. */
const EXIT_MARGIN_MS = 5_000;

interface Sent {
  readonly loop: number;
  readonly n: number;
  readonly id: string;
  /** performance.now() when the call was made and when it settled. */
  readonly startedAt: number;
  readonly settledAt: number;
}
interface Acked extends Sent {
  readonly answeredFor: string;
  readonly offset: bigint;
  readonly status: AppendStatus;
}
interface Failed extends Sent {
  readonly error: ConnectError;
}

/** The same message for the same (loop, n): a retry must carry an identical payload. */
const messageOf = (loop: number, n: number) => producedFact(loop * 1_000_000 + n, { id: `sigterm-${process.pid}-${loop}-${n}` });

/** The service refused the call while draining: retry-safe, nothing was done. */
const refusedWhileDraining = (error: ConnectError) => error.code === Code.Unavailable && reasonOf(error) === "shutting_down";

/**
 * The call failed below the RPC layer (no ErrorInfo from the service): the connection was
 * refused or reset, the session went away, or the HTTP server answered 503 while closing.
 * connect-node 2.1.2 reports a stream the server refused after its GOAWAY (RST_STREAM
 * REFUSED_STREAM: never processed) as `internal` rather than `unavailable`, because the
 * stream's "error" event wins over its "close" event, which carries the rstCode mapping.
 */
const transportFailure = (error: ConnectError) => reasonOf(error) === undefined && (
  [Code.Unavailable, Code.Aborted, Code.Canceled].includes(error.code)
  || (error.code === Code.Internal && error.rawMessage.includes("NGHTTP2_REFUSED_STREAM"))
);

/** The child's JSON log lines on stdout (anything else is kept out). */
function jsonLines(text: string): Array<Record<string, unknown>> {
  return text.split("\n").flatMap((line) => {
    try {
      return line.trim() === "" ? [] : [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

describe("SIGTERM to the ingest deployable during a stream of appends", () => {
  let nats: NatsServerHandle;
  let pki: TestPki;
  let dir: string;
  let child: ChildProcess | undefined;
  let fresh: RunningDeployable | undefined;
  let store: ZoneStore | undefined;
  const clients: BsfgClient[] = [];

  beforeAll(async () => {
    nats = await startNatsServer({ domain: "plant-a" });
    pki = await createTestPki();
    dir = await mkdtemp(join(tmpdir(), "bsfg-sigterm-"));
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await fresh?.stop();
    await store?.close();
    await nats?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("stores every acknowledged append exactly once at its offset, and a retry of an unacknowledged one is idempotent", async () => {
    expect(existsSync(ingestMain), `${ingestMain} is missing: build apps/ingest first (pnpm exec turbo run build)`).toBe(true);
    const port = await freePort();
    const healthPort = await freePort();
    const configPath = await writeTestZoneFiles(pki, dir, nats, {
      listen: { ingest: `127.0.0.1:${port}` },
      health: { ingest: `127.0.0.1:${healthPort}` },
    });
    const config: ZoneConfig = loadZoneConfig(configPath);

    // The real deployable, as an operator runs it.
    let stdout = "";
    let stderr = "";
    const ingest = spawn(process.execPath, [ingestMain, "--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
    child = ingest;
    ingest.stdout!.setEncoding("utf8").on("data", (chunk: string) => { stdout += chunk; });
    ingest.stderr!.setEncoding("utf8").on("data", (chunk: string) => { stderr += chunk; });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((done) => {
      ingest.once("exit", (code, signal) => done({ code, signal, at: performance.now() }));
    });
    const diagnostics = () => `ingest stdout:\n${stdout.slice(-4_000)}\ningest stderr:\n${stderr.slice(-4_000)}`;

    await Promise.race([
      pollUntil(async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).status === 200, { timeoutMs: 15_000, what: "the ingest child's /readyz to answer 200" }),
      exited.then((e) => { throw new Error(`ingest exited (code ${e.code}, signal ${e.signal}) before it was ready\n${diagnostics()}`); }),
    ]);

    // A continuous stream of single-message appends; no client-side retry, so every outcome is seen as it happened.
    const acked: Acked[] = [];
    const failed: Failed[] = [];
    let sigtermAt: number | undefined;
    let abandon = false;
    const loop = async (loop: number) => {
      const client = createBsfgClient({
        url: `https://127.0.0.1:${port}`,
        tls: { ca: pki.ca.certPem, cert: pki.certs["mes-producer"].certPem, key: pki.certs["mes-producer"].keyPem },
        protocol: loop % 2 === 0 ? "connect" : "grpc",
        retry: { attempts: 1 },
        timeoutMs: 10_000,
      });
      clients.push(client);
      // Until this loop sees a failure (the service going away), or the test gives up.
      for (let n = 0; !abandon; n++) {
        const message = messageOf(loop, n);
        const id = message.envelope.messageId;
        const startedAt = performance.now();
        try {
          const result = await client.appendFact(message);
          acked.push({ loop, n, id, startedAt, settledAt: performance.now(), answeredFor: result.messageId, offset: result.offset, status: result.status });
        } catch (err) {
          failed.push({ loop, n, id, startedAt, settledAt: performance.now(), error: ConnectError.from(err) });
          return;
        }
      }
    };
    const loops = Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i)));

    let exit: Awaited<typeof exited> | undefined;
    try {
      await pollUntil(() => acked.length >= ACKED_BEFORE_SIGTERM || failed.length > 0, { timeoutMs: 15_000, what: `${ACKED_BEFORE_SIGTERM} acknowledged appends` });
      expect(failed.map((f) => `${f.id}: ${f.error.message}`), "no append may fail before the signal").toEqual([]);
      sigtermAt = performance.now();
      expect(ingest.kill("SIGTERM")).toBe(true);
      let timer: NodeJS.Timeout | undefined;
      exit = await Promise.race([exited, new Promise<undefined>((done) => { timer = setTimeout(() => done(undefined), config.shutdownGrace + EXIT_MARGIN_MS); })]);
      clearTimeout(timer);
    } finally {
      // Every loop stops at its first failure; these only matter if the child never went away.
      if (exit === undefined) abandon = true;
    }
    const signalledAt = sigtermAt!;
    expect(exit, `ingest did not exit within ${config.shutdownGrace + EXIT_MARGIN_MS} ms of SIGTERM\n${diagnostics()}`).toBeDefined();
    expect({ code: exit!.code, signal: exit!.signal }, diagnostics()).toEqual({ code: 0, signal: null });
    await loops;

    // The child's own account of its shutdown.
    const logs = jsonLines(stdout);
    const events = logs.map((l) => l.event);
    expect(logs.find((l) => l.event === "signal")).toMatchObject({ signal: "SIGTERM" });
    expect(events).toContain("draining");
    expect(events.indexOf("draining")).toBeGreaterThan(events.indexOf("signal"));
    expect(events.at(-1), diagnostics()).toBe("stopped");
    // In-flight appends finished inside the grace period; nothing failed inside the service.
    expect(events).not.toContain("shutdown_forced");
    expect(logs.filter((l) => l.event === "failed" || l.event === "stop_failed"), diagnostics()).toEqual([]);

    // Every loop ended on a failure, and every failure came after the signal: a refusal
    // while draining (unavailable, shutting_down) or the connection going away, nothing else.
    expect(failed).toHaveLength(LOOPS);
    expect(acked.length).toBeGreaterThanOrEqual(ACKED_BEFORE_SIGTERM);
    for (const f of failed) {
      expect(f.settledAt).toBeGreaterThan(signalledAt);
      const shape = { code: Code[f.error.code], reason: reasonOf(f.error), message: f.error.rawMessage };
      expect(refusedWhileDraining(f.error) || transportFailure(f.error), `a failure while draining: ${JSON.stringify(shape)}`).toBe(true);
    }
    const refusalsLogged = logs.filter((l) => l.event === "rejected" && l.reason === "shutting_down").length;
    expect(refusalsLogged).toBeGreaterThanOrEqual(failed.filter((f) => refusedWhileDraining(f.error)).length);
    expect(acked.filter((a) => a.status !== AppendStatus.APPENDED || a.answeredFor !== a.id)).toEqual([]);

    // What the log holds now that nothing writes to it.
    store = await openZoneStore(config.storage, { servers: config.nats.servers, name: "sigterm-test-reader" });
    const readLog = async () => {
      const page = await store!.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 100_000, maxBytes: 64 * 2 ** 20 });
      expect(page.lastOffset, "the whole log fits in one read").toBe(page.highWater);
      const offsets = new Map<string, bigint[]>();
      for (const fact of page.facts) {
        const id = fact.message!.envelope!.messageId;
        offsets.set(id, [...offsets.get(id) ?? [], fact.offset]);
      }
      return { offsets, count: page.facts.length };
    };
    const before = await readLog();
    for (const a of acked) expect(before.offsets.get(a.id), `acknowledged ${a.id}`).toEqual([a.offset]);
    const sent = new Set([...acked, ...failed].map((s) => s.id));
    expect([...before.offsets.keys()].filter((id) => !sent.has(id)), "nothing in the log that was not sent").toEqual([]);
    expect(before.count).toBe(before.offsets.size);

    // A fresh ingest on the same NATS answers the retries of everything unacknowledged.
    const freshLogs = logCollector();
    fresh = await startDeployable("ingest", config, { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: freshLogs.stream });
    const retrier = createBsfgClient({
      url: fresh.server.url,
      tls: { ca: pki.ca.certPem, cert: pki.certs["mes-producer"].certPem, key: pki.certs["mes-producer"].keyPem },
      retry: { attempts: 1 },
    });
    clients.push(retrier);
    const retried = await Promise.all(failed.map(async (f) => ({ f, result: await retrier.appendFact(messageOf(f.loop, f.n)) })));
    for (const { f, result } of retried) {
      const stored = before.offsets.get(f.id);
      // Stored but unacknowledged: the original comes back. Never stored: stored now.
      if (stored) expect({ id: f.id, status: AppendStatus[result.status], offset: result.offset }).toEqual({ id: f.id, status: "DUPLICATE", offset: stored[0] });
      else expect({ id: f.id, status: AppendStatus[result.status] }).toEqual({ id: f.id, status: "APPENDED" });
    }

    // And once more: the same answer, nothing new written.
    for (const { f, result } of retried) {
      const again = await retrier.appendFact(messageOf(f.loop, f.n));
      expect({ id: f.id, status: AppendStatus[again.status], offset: again.offset }).toEqual({ id: f.id, status: "DUPLICATE", offset: result.offset });
    }

    const after = await readLog();
    for (const a of acked) expect(after.offsets.get(a.id), `acknowledged ${a.id}`).toEqual([a.offset]);
    for (const { f, result } of retried) expect(after.offsets.get(f.id), `retried ${f.id}`).toEqual([result.offset]);
    expect(after.count).toBe(acked.length + failed.length);

    console.info(`SIGTERM after ${acked.filter((a) => a.startedAt < signalledAt).length} acks; exit after ${Math.round(exit!.at - signalledAt)} ms; `
      + `${acked.filter((a) => a.settledAt > signalledAt).length} acked after the signal; failures: `
      + JSON.stringify(failed.map((f) => ({ code: Code[f.error.code], reason: reasonOf(f.error), message: f.error.rawMessage, stored: before.offsets.has(f.id) }))));
  }, 30_000);
});
