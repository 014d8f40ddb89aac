import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AppendStatus, Code, ConnectError, type AppendResult, type FactMessage } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { dedupeIndex } from "./dedupe-index.js";
import { publisher } from "./publisher.js";
import { prepareBatch } from "./validate.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";

describe("nats-server killed with SIGKILL mid-batch", () => {
  let zone: TestZone;
  beforeAll(async () => {
    // Abandoned claims are resolved after the pending timeout; keep it short so the retries finish quickly.
    zone = await startTestZone({ dedupe: { pendingTimeout: 2_000 } }, { pendingWaitMs: 500 });
  });
  afterAll(() => zone.dispose());

  it("keeps every acknowledged fact exactly once, and retries of everything land exactly once", async () => {
    const batches: FactMessage[][] = Array.from({ length: 60 }, () => Array.from({ length: 100 }, () => factMessage()));
    const total = batches.flat().length;
    const acknowledged = new Map<string, bigint>();

    // Producers append batches back to back; the server dies under them.
    const failed: FactMessage[][] = [];
    const producing = (async () => {
      for (const batch of batches) {
        try {
          for (const r of await zone.store.append(batch)) acknowledged.set(r.messageId, r.offset);
        } catch (err) {
          if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) throw err;
          failed.push(batch);
          return; // the rest were never sent; the retry below covers them too
        }
      }
    })();
    await expect.poll(() => acknowledged.size, { timeout: 30_000, interval: 5 }).toBeGreaterThanOrEqual(1_500);
    await zone.server.kill();
    await producing;
    // The crash landed mid-production: the call in flight was cut short by it (the loop stops there).
    expect(failed).toHaveLength(1);
    const acknowledgedBeforeCrash = new Map(acknowledged);

    await zone.server.restart();
    // Retry every batch, as a producer that saw no acknowledgement must.
    const retried = new Map<string, AppendResult>();
    for (const batch of batches) {
      for (const r of await whileUnavailable(() => zone.store.append(batch), "a retried batch acknowledged after the restart")) retried.set(r.messageId, r);
    }
    expect(retried.size).toBe(total);
    // What was acknowledged before the crash comes back DUPLICATE at its acknowledged offset.
    const answeredOtherwise = [...acknowledgedBeforeCrash]
      .map(([id, offset]) => ({ id, offset, retry: retried.get(id) }))
      .filter(({ offset, retry }) => retry?.status !== AppendStatus.DUPLICATE || retry.offset !== offset);
    expect(answeredOtherwise.slice(0, 5), `${answeredOtherwise.length} acknowledged facts answered otherwise on retry`).toEqual([]);

    const page = await zone.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 100_000, maxBytes: 64 * 2 ** 20 });
    const stored = page.facts.map((f) => f.message!.envelope!.messageId);
    expect(stored.length).toBe(new Set(stored).size);
    expect(new Set(stored)).toEqual(new Set(batches.flat().map((m) => m.envelope!.messageId)));
    const offsetOf = new Map(page.facts.map((f) => [f.message!.envelope!.messageId, f.offset]));
    // Every retry's answer names where the fact is stored.
    const misplaced = [...retried.values()].filter((r) => offsetOf.get(r.messageId) !== r.offset).map((r) => r.messageId);
    expect(misplaced).toEqual([]);
  });
});

describe("a batch partly claimed by a writer that crashed", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({ dedupe: { pendingTimeout: 1_000 } }, { pendingWaitMs: 5_000 });
  });
  afterAll(() => zone.dispose());

  it("is stored in batch order when retried, so order within a subject holds", async () => {
    const batch = Array.from({ length: 8 }, (_, i) => factMessage({ subject: "batch:PlantA/B9", object: { step: i } }));
    // The crashed writer claimed messages 2, 3 and 4 and died before publishing them.
    const nc = await connect({ servers: zone.server.url });
    const jsm = await jetstreamManager(nc, { domain: "plant-a" });
    const substrate = { nc, js: jetstream(nc, { domain: "plant-a" }), jsm, apiPrefix: "$JS.plant-a.API", publisher: publisher(nc, 5_000) };
    const index = dedupeIndex(substrate);
    for (const p of prepareBatch(zone.store.config, batch).slice(2, 5)) {
      expect(await index.claim(p.key, { m: p.messageId, h: p.hash, s: p.stream, j: p.subject, b: "crashed-batch" }, 1_000)).toBeDefined();
    }
    substrate.publisher.close();
    await nc.close();

    const results = await zone.store.append(batch);
    expect(results.map((r) => r.status)).toEqual(batch.map(() => AppendStatus.APPENDED));
    // The subject's facts are in the log in batch order, each at the offset its answer names.
    const page = await zone.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 1_000 });
    const onSubject = page.facts.filter((f) => f.message!.fact!.subject === "batch:PlantA/B9");
    expect(onSubject.map((f) => f.message!.envelope!.messageId)).toEqual(batch.map((m) => m.envelope!.messageId));
    expect(onSubject.map((f) => f.offset)).toEqual(results.map((r) => r.offset));
  });
});

/**
 * Calls `fn` until it stops failing with `unavailable` (the store reconnecting after its
 * server restarted), for at most `timeoutMs`; any other error fails at once.
 */
async function whileUnavailable<T>(fn: () => Promise<T>, what: string, timeoutMs = 30_000): Promise<T> {
  const outcome = await pollUntil(
    () => fn().then((value) => ({ value }), (error: unknown) => (error instanceof ConnectError && error.code === Code.Unavailable ? undefined : { error })),
    { timeoutMs, intervalMs: 100, what },
  );
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}
