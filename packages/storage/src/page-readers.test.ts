import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";

/** Reads a consumer to the end of the log, confirming each page; returns the offsets seen. */
async function drain(zone: TestZone, consumer: string, limit: number, maxBytes?: number): Promise<number[]> {
  const seen: number[] = [];
  for (;;) {
    const page = await zone.store.readNext(consumer, { limit, ...(maxBytes ? { maxBytes } : {}) });
    seen.push(...page.facts.map((f) => Number(f.offset)));
    if (page.lastOffset === page.cursor) return seen;
    await zone.store.confirm(consumer, page.lastOffset);
  }
}

describe("page readers: one JetStream reader per consumer, reused only where the next page starts", () => {
  let zone: TestZone;
  let nc: NatsConnection;
  const readersOn = async (stream: string) => {
    const jsm = await jetstreamManager(nc, { domain: "plant-a" });
    const names: string[] = [];
    for await (const c of jsm.consumers.list(stream)) if (c.name.startsWith("bsfg_read_")) names.push(c.name);
    return names;
  };

  beforeAll(async () => {
    zone = await startTestZone({
      consumers: [
        { name: "loop", stream: "operational" },
        { name: "filtered", stream: "operational", subjectFilter: "facts.operational.batch" },
        { name: "moved-elsewhere", stream: "audit" },
        { name: "gone", stream: "audit" },
        { name: "budget", stream: "documents" },
      ],
      routing: [{ predicate: "audit_entry", stream: "audit" }, { kind: "document", stream: "documents" }],
      limits: { maxFactBytes: 8192, maxBatchMessages: 1000, maxBatchBytes: 4 * 2 ** 20 },
    });
    nc = await connect({ servers: zone.server.url });
  });
  afterAll(async () => {
    await nc.close();
    await zone.dispose();
  });

  it("reads every fact once across pages and appends in between, keeping one reader", async () => {
    const appended: number[] = [];
    const seen: number[] = [];
    for (let round = 0; round < 10; round++) {
      appended.push(...(await zone.store.append(Array.from({ length: 7 }, () => factMessage()))).map((r) => Number(r.offset)));
      seen.push(...await drain(zone, "loop", 3));
    }
    expect(seen).toEqual(appended);
    expect(await readersOn("facts-operational")).toHaveLength(1);
  });

  it("a filtered consumer moves past non-matching facts and still sees every match after more appends", async () => {
    const matching: number[] = [];
    const seen: number[] = [];
    for (let round = 0; round < 5; round++) {
      const results = await zone.store.append([
        factMessage({ subject: "batch:F1" }),
        factMessage({ subject: "recipe:R9", predicate: "released" }),
        factMessage({ subject: "recipe:R9", predicate: "released" }),
      ]);
      matching.push(Number(results[0]!.offset));
      seen.push(...await drain(zone, "filtered", 2));
      expect(await zone.store.cursor("filtered")).toBe(Number(results[2]!.offset));
    }
    expect(seen.filter((o) => matching.includes(o))).toEqual(matching);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("serves the right page when another process confirmed meanwhile", async () => {
    const offsets = (await zone.store.append(Array.from({ length: 6 }, () => factMessage({ predicate: "audit_entry" })))).map((r) => Number(r.offset));
    const other = await zone.open();
    try {
      const first = await zone.store.readNext("moved-elsewhere", { limit: 2 });
      expect(first.facts.map((f) => Number(f.offset))).toEqual(offsets.slice(0, 2));
      // Another ledger confirms further than this reader has read.
      await other.confirm("moved-elsewhere", offsets[3]!);
      const next = await zone.store.readNext("moved-elsewhere", { limit: 2 });
      expect(next.facts.map((f) => Number(f.offset))).toEqual(offsets.slice(4, 6));
    } finally {
      await other.close();
    }
  });

  it("recovers when its reader disappears from the server", async () => {
    const offsets = (await zone.store.append(Array.from({ length: 4 }, () => factMessage({ predicate: "audit_entry" })))).map((r) => Number(r.offset));
    const cursor = await zone.store.cursor("gone");
    await zone.store.confirm("gone", offsets[0]! - 1 > cursor ? offsets[0]! - 1 : cursor);
    const first = await zone.store.readNext("gone", { limit: 2 });
    await zone.store.confirm("gone", first.lastOffset);
    const jsm = await jetstreamManager(nc, { domain: "plant-a" });
    for (const name of await readersOn("facts-audit")) await jsm.consumers.delete("facts-audit", name);
    const next = await zone.store.readNext("gone", { limit: 2 });
    expect(next.facts.map((f) => Number(f.offset))).toEqual(offsets.slice(2, 4));
  });

  it("pages cut by the byte budget lose and repeat nothing", async () => {
    const big = "x".repeat(3000);
    const offsets = (await zone.store.append(Array.from({ length: 12 }, (_, i) => factMessage({ subject: `document:D${i}`, predicate: "document_linked", object: { pad: big } }))))
      .map((r) => Number(r.offset));
    // A budget is raised to one maximal fact plus headroom (12 KiB here); these facts are ~3 KB, so pages hold a few.
    const seen = await drain(zone, "budget", 100, 1);
    expect(seen.filter((o) => offsets.includes(o))).toEqual(offsets);
  });
});
