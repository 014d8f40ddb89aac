import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AppendStatus, Code, ConnectError, type AppendResult, type FactMessage } from "@bsfg/proto";
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
    const acknowledged = new Map<string, bigint>();
    const record = (results: AppendResult[]) => {
      for (const r of results) {
        const earlier = acknowledged.get(r.messageId);
        if (earlier !== undefined) expect(r.offset).toBe(earlier);
        acknowledged.set(r.messageId, r.offset);
      }
    };

    // Producers append batches back to back; the server dies under them.
    let killed = false;
    const failed: FactMessage[][] = [];
    const producing = (async () => {
      for (const batch of batches) {
        try {
          record(await zone.store.append(batch));
        } catch (err) {
          if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) throw err;
          failed.push(batch);
          return; // the rest were never sent; the retry below covers them too
        }
      }
    })();
    await expect.poll(() => acknowledged.size, { timeout: 30_000, interval: 5 }).toBeGreaterThanOrEqual(1_500);
    await zone.server.kill();
    killed = true;
    await producing;
    expect(killed).toBe(true);
    expect(failed.length).toBeGreaterThan(0);
    const acknowledgedBeforeCrash = new Map(acknowledged);

    await zone.server.restart();
    // Retry every batch, as a producer that saw no acknowledgement must.
    for (const batch of batches) {
      for (;;) {
        try {
          record(await zone.store.append(batch));
          break;
        } catch (err) {
          if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) throw err;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }

    const page = await zone.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 100_000, maxBytes: 64 * 2 ** 20 });
    const stored = page.facts.map((f) => f.message!.envelope!.messageId);
    expect(stored.length).toBe(new Set(stored).size);
    expect(new Set(stored)).toEqual(new Set(batches.flat().map((m) => m.envelope!.messageId)));
    const offsetOf = new Map(page.facts.map((f) => [f.message!.envelope!.messageId, f.offset]));
    for (const [id, offset] of acknowledgedBeforeCrash) expect(offsetOf.get(id)).toBe(offset);
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
    const offsets = results.map((r) => Number(r.offset));
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
  });
});
