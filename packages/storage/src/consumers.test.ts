import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, FetchFactsResponseSchema, reasonOf } from "@bsfg/proto";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";
import { openZoneStore } from "./zone-store.js";
import { parseStorageConfig } from "./config.js";

describe("consumers: pages after the confirmed cursor, monotonic confirms", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({
      consumers: [
        { name: "enterprise-from-plant-a", stream: "operational", identities: ["enterprise-bsfg"] },
        { name: "batches-only", stream: "operational", subjectFilter: "facts.operational.batch" },
        { name: "racing", stream: "operational" },
      ],
    });
  });
  afterAll(() => zone.dispose());

  it("returns the same page until it is confirmed, then the next one", async () => {
    const results = await zone.store.append(Array.from({ length: 7 }, () => factMessage()));
    const offsets = results.map((r) => r.offset);
    const first = await zone.store.readNext("enterprise-from-plant-a", { limit: 5 });
    const again = await zone.store.readNext("enterprise-from-plant-a", { limit: 5 });
    expect(first.cursor).toBe(0);
    expect(first.facts.map((f) => f.offset)).toEqual(offsets.slice(0, 5));
    expect(again.facts.map((f) => f.offset)).toEqual(offsets.slice(0, 5));
    expect(first.lastOffset).toBe(Number(offsets[4]));
    expect(first.highWater).toBe(Number(offsets[6]));

    expect(await zone.store.confirm("enterprise-from-plant-a", first.lastOffset)).toBe(first.lastOffset);
    const next = await zone.store.readNext("enterprise-from-plant-a", { limit: 5 });
    expect(next.cursor).toBe(first.lastOffset);
    expect(next.facts.map((f) => f.offset)).toEqual(offsets.slice(5));
    expect(next.facts[0]!.message!.envelope!.messageId).toBe(results[5]!.messageId);
    expect(next.facts[0]!.storedAtUnixMs).toBeGreaterThan(0n);
  });

  it("treats a confirm at or below the cursor as a no-op and one beyond the log as failed_precondition", async () => {
    const cursor = await zone.store.cursor("enterprise-from-plant-a");
    expect(await zone.store.confirm("enterprise-from-plant-a", cursor - 1)).toBe(cursor);
    const error = await zone.store.confirm("enterprise-from-plant-a", 1_000_000).catch((e: unknown) => e);
    expect((error as ConnectError).code).toBe(Code.FailedPrecondition);
    expect(reasonOf(error)).toBe("cursor_beyond_log");
    expect(await zone.store.cursor("enterprise-from-plant-a")).toBe(cursor);
  });

  it("serves encoded pages that decode to the same facts as decoded pages", async () => {
    await zone.store.append([factMessage({ subject: "batch:B70" }), factMessage({ subject: "batch:B71", object: { nested: { list: [1, 2] } } })]);
    const decoded = await zone.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 1000 });
    const encoded = await zone.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 1000, messages: "encoded" });
    expect(encoded.facts).toEqual([]);
    expect(encoded.count).toBe(decoded.count);
    expect(decoded.count).toBeGreaterThanOrEqual(2);
    const response = create(FetchFactsResponseSchema, { cursor: 7n });
    response.$unknown = encoded.encodedFacts.map((data) => ({ no: 1, wireType: WireType.LengthDelimited, data }));
    const received = fromBinary(FetchFactsResponseSchema, toBinary(FetchFactsResponseSchema, response));
    expect(received.facts).toEqual(decoded.facts);
    expect(received.cursor).toBe(7n);
    // Each fact carries the SHA-256 of its stored bytes, for the receiving zone to check.
    const stored = await Promise.all(received.facts.map(async (f) => (await zone.store.substrate.jsm.streams.getMessage("facts-operational", { seq: Number(f.offset) }))!.data));
    expect(received.facts.map((f) => Buffer.from(f.messageSha256).toString("hex"))).toEqual(stored.map((data) => createHash("sha256").update(data).digest("hex")));
  });

  it("stores a trace context with each fact and serves it, decoded and encoded, when asked", async () => {
    const traceparent = (n: number) => `00-${String(n).padStart(32, "0")}-${String(n).padStart(16, "0")}-01`;
    const results = await zone.store.append([factMessage({ subject: "batch:T1" }), factMessage({ subject: "batch:T2" }), factMessage({ subject: "batch:T3" })],
      { traceContext: (i) => (i === 1 ? undefined : { traceparent: traceparent(i + 1), ...(i === 2 ? { tracestate: "bsfg=relay" } : {}) }) });
    const after = Number(results[0]!.offset) - 1;
    const view = { stream: "operational", skipOrigins: [] };
    const decoded = await zone.store.read(view, after, { limit: 3, traceContext: true });
    expect(decoded.facts.map((f) => f.traceContext)).toEqual([{ traceparent: traceparent(1) }, {}, { traceparent: traceparent(3), tracestate: "bsfg=relay" }]);
    const encoded = await zone.store.read(view, after, { limit: 3, traceContext: true, messages: "encoded" });
    const response = create(FetchFactsResponseSchema, {});
    response.$unknown = encoded.encodedFacts.map((data) => ({ no: 1, wireType: WireType.LengthDelimited, data }));
    expect(fromBinary(FetchFactsResponseSchema, toBinary(FetchFactsResponseSchema, response)).facts).toEqual(decoded.facts);
    // Not asked: not served (reading headers costs CPU on every fact).
    expect((await zone.store.read(view, after, { limit: 3 })).facts.map((f) => f.traceContext)).toEqual([{}, {}, {}]);
  });

  it("answers not_found for an unknown consumer", async () => {
    const error = await zone.store.readNext("nobody").catch((e: unknown) => e);
    expect((error as ConnectError).code).toBe(Code.NotFound);
    expect(reasonOf(error)).toBe("unknown_consumer");
  });

  it("filters by subject and skips origins, while last_offset still covers what was skipped", async () => {
    const [own, echo, doc] = await zone.store.append([
      factMessage({ subject: "batch:B7" }),
      factMessage({ subject: "batch:B8", fromZone: "enterprise", toZone: "plant-a" }),
      factMessage({ subject: "recipe:R1", predicate: "released" }),
    ]);
    const noEcho = await zone.store.read({ stream: "operational", skipOrigins: ["enterprise"] }, Number(own!.offset) - 1);
    expect(noEcho.facts.map((f) => f.offset)).toEqual([own!.offset, doc!.offset]);
    const onlyEcho = await zone.store.read({ stream: "operational", skipOrigins: ["plant-a"] }, Number(echo!.offset) - 1);
    expect(onlyEcho.facts.map((f) => f.offset)).toEqual([echo!.offset]);
    expect(onlyEcho.lastOffset).toBe(Number(doc!.offset));

    const batches = await zone.store.read({ stream: "operational", subjectFilter: "facts.operational.batch", skipOrigins: [] }, Number(echo!.offset));
    expect(batches.facts).toEqual([]);
    expect(batches.lastOffset).toBe(Number(doc!.offset));
  });

  it("with targets, serves only facts addressed to those zones, in both encodings, while last_offset covers the rest", async () => {
    const [toEnterprise, toIdmz, toPlantA] = await zone.store.append([
      factMessage({ toZone: "enterprise" }),
      factMessage({ toZone: "idmz" }),
      factMessage({ toZone: "plant-a" }),
    ]);
    const after = Number(toEnterprise!.offset) - 1;
    const view = { stream: "operational", skipOrigins: [], targets: ["idmz", "enterprise"] };
    const decoded = await zone.store.read(view, after);
    expect(decoded.facts.map((f) => f.message!.envelope!.toZone)).toEqual(["enterprise", "idmz"]);
    expect(decoded.lastOffset).toBe(Number(toPlantA!.offset));
    const encoded = await zone.store.read(view, after, { messages: "encoded" });
    expect(encoded.count).toBe(2);
    const onlyPlant = await zone.store.read({ ...view, targets: ["plant-a"] }, after);
    expect(onlyPlant.facts.map((f) => f.offset)).toEqual([toPlantA!.offset]);
    expect(toIdmz!.offset).toBeGreaterThan(toEnterprise!.offset);
  });

  it("refuses a consumer whose targets or skipOrigins name a zone the estate does not have", () => {
    const consumers = [{ name: "typo", stream: "operational", skipOrigins: ["idmz"], targets: ["enterprize"] }];
    expect(() => parseStorageConfig({ zone: "plant-a", zones: ["idmz", "enterprise"], consumers })).toThrow(/consumers\.0\.targets\.0: "enterprize" is not a zone of this estate \(plant-a, idmz, enterprise\)/);
  });

  it("never moves a cursor backwards under concurrent confirms from separate connections", async () => {
    const results = await zone.store.append(Array.from({ length: 40 }, () => factMessage()));
    const offsets = results.map((r) => Number(r.offset));
    const stores = await Promise.all(Array.from({ length: 8 }, () => zone.open()));

    // Record every value the cursor takes, as the KV bucket sees it.
    const nc = await connect({ servers: zone.server.url });
    const kv = await new Kvm(jetstream(nc, { domain: "plant-a" })).open("bsfg-cursors");
    const seen: number[] = [];
    const watch = await kv.watch({ key: "racing" });
    const watching = (async () => {
      for await (const entry of watch) {
        if (entry.operation === "PUT") seen.push(Number(entry.string()));
      }
    })();

    const shuffled = [...offsets].sort(() => Math.random() - 0.5);
    const answers = await Promise.all(shuffled.map((offset, i) => stores[i % stores.length]!.confirm("racing", offset)));
    answers.forEach((answer, i) => expect(answer).toBeGreaterThanOrEqual(shuffled[i]!));
    const max = Math.max(...offsets);
    expect(await zone.store.cursor("racing")).toBe(max);
    await expect.poll(() => seen.at(-1), { timeout: 5_000 }).toBe(max);
    watch.stop();
    await watching;
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
    await nc.close();
    await Promise.all(stores.map((s) => s.close()));
  });

  it("starts a consumer registered with policy 'new' at the end of the log, and keeps its cursor on restart", async () => {
    const [last] = await zone.store.append([factMessage()]);
    const cfg = { ...zone.store.config, consumers: [{ name: "from-now", stream: "operational", identities: [], skipOrigins: [], start: { policy: "new" as const } }] };
    const store = await openZoneStore(cfg, { servers: zone.server.url });
    try {
      const page = await store.readNext("from-now");
      expect(page.cursor).toBe(Number(last!.offset));
      expect(page.facts).toEqual([]);
      const [next] = await store.append([factMessage()]);
      expect((await store.readNext("from-now")).facts.map((f) => f.offset)).toEqual([next!.offset]);
    } finally {
      await store.close();
    }
    const again = await openZoneStore(cfg, { servers: zone.server.url });
    expect(await again.cursor("from-now")).toBe(Number(last!.offset));
    await again.close();
  });
});
