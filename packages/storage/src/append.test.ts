import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { toBinary } from "@bufbuild/protobuf";
import { AppendStatus, Code, ConnectError, errorInfoOf, FactMessageSchema, reasonOf, type FactMessage } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { dedupeIndex } from "./dedupe-index.js";
import { unscopedMessageKey } from "./identity.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";
import { prepareBatch } from "./validate.js";
import { openZoneStore } from "./zone-store.js";

describe("append: idempotency beyond JetStream's duplicate window", () => {
  let zone: TestZone;
  beforeAll(async () => {
    // A short JetStream duplicate window (the in-flight window), so the test can wait it out.
    zone = await startTestZone({ dedupe: { pendingTimeout: "1s", inflightWindow: "2s" } });
  });
  afterAll(() => zone.dispose());

  const storedCount = async (stream = "facts-operational") => {
    const nc = await connect({ servers: zone.server.url });
    try {
      return (await (await jetstreamManager(nc, { domain: "plant-a" })).streams.info(stream)).state.messages;
    } finally {
      await nc.close();
    }
  };

  it("acknowledges a new fact with its offset and stream", async () => {
    const [result] = await zone.store.append([factMessage()]);
    expect(result!.status).toBe(AppendStatus.APPENDED);
    expect(result!.stream).toBe("operational");
    expect(result!.offset).toBeGreaterThan(0n);
  });

  it("answers an identical retry with DUPLICATE and the original offset, also after the duplicate window and a server restart", async () => {
    const message = factMessage();
    const [first] = await zone.store.append([message]);
    const before = await storedCount();

    // The window the server itself would dedupe in; wait it out for real.
    const nc = await connect({ servers: zone.server.url });
    const windowNanos = (await (await jetstreamManager(nc, { domain: "plant-a" })).streams.info("facts-operational")).config.duplicate_window;
    await nc.close();
    await new Promise((resolve) => setTimeout(resolve, windowNanos / 1e6 + 500));

    const [afterWindow] = await zone.store.append([message]);
    expect(afterWindow!.status).toBe(AppendStatus.DUPLICATE);
    expect(afterWindow!.offset).toBe(first!.offset);

    await zone.server.restart();
    const [afterRestart] = await appendWithRetry(() => zone.store.append([message]));
    expect(afterRestart!.status).toBe(AppendStatus.DUPLICATE);
    expect(afterRestart!.offset).toBe(first!.offset);
    expect(await storedCount()).toBe(before);
  });

  it("treats a key-order-only difference as DUPLICATE and a changed value as CONFLICTING_DUPLICATE", async () => {
    const id = `order-${Date.now()}`;
    const [original] = await zone.store.append([factMessage({ id, objectJson: '{"b":1,"a":2}' })]);
    const [reordered] = await zone.store.append([factMessage({ id, objectJson: '{"a":2,"b":1}' })]);
    const [changed] = await zone.store.append([factMessage({ id, objectJson: '{"a":2,"b":9}' })]);
    expect(reordered!.status).toBe(AppendStatus.DUPLICATE);
    expect(changed!.status).toBe(AppendStatus.CONFLICTING_DUPLICATE);
    expect(reordered!.offset).toBe(original!.offset);
    expect(changed!.offset).toBe(original!.offset);
  });

  it("stores exactly one fact for 50 concurrent appends of one message_id over separate connections", async () => {
    const stores = await Promise.all(Array.from({ length: 50 }, (_, i) => zone.open({ name: `writer-${i}` })));
    const before = await storedCount();
    const message = factMessage();
    const results = (await Promise.all(stores.map((s) => s.append([message])))).map(([r]) => r!);
    expect(results.filter((r) => r.status === AppendStatus.APPENDED)).toHaveLength(1);
    expect(results.filter((r) => r.status === AppendStatus.DUPLICATE)).toHaveLength(49);
    expect(new Set(results.map((r) => r.offset)).size).toBe(1);
    expect(await storedCount()).toBe(before + 1);
    await Promise.all(stores.map((s) => s.close()));
  });

  it("gives each message of a mixed batch its own status, in request order", async () => {
    const existing = factMessage();
    const conflicting = factMessage({ id: existing.envelope!.messageId, object: { changed: true } });
    const [stored] = await zone.store.append([existing]);
    const fresh = factMessage();
    const repeatedInBatch = factMessage();
    const results = await zone.store.append([fresh, existing, conflicting, repeatedInBatch, repeatedInBatch]);
    expect(results.map((r) => r.status)).toEqual([
      AppendStatus.APPENDED,
      AppendStatus.DUPLICATE,
      AppendStatus.CONFLICTING_DUPLICATE,
      AppendStatus.APPENDED,
      AppendStatus.DUPLICATE,
    ]);
    expect(results.map((r) => r.messageId)).toEqual([fresh, existing, conflicting, repeatedInBatch, repeatedInBatch].map((m) => m.envelope!.messageId));
    expect(results[1]!.offset).toBe(stored!.offset);
    expect(results[2]!.offset).toBe(stored!.offset);
    expect(results[4]!.offset).toBe(results[3]!.offset);
  });

  it("compares a message_id repeated inside a batch with what is stored, not with its first occurrence", async () => {
    const stored = factMessage({ object: { v: 0 } });
    const id = stored.envelope!.messageId;
    const [original] = await zone.store.append([stored]);
    const changed = factMessage({ id, object: { v: 1 } });
    const results = await zone.store.append([changed, changed, stored]);
    expect(results.map((r) => r.status)).toEqual([
      AppendStatus.CONFLICTING_DUPLICATE,
      AppendStatus.CONFLICTING_DUPLICATE,
      AppendStatus.DUPLICATE,
    ]);
    expect(results.every((r) => r.offset === original!.offset)).toBe(true);
  });

  it("rejects a malformed batch whole and writes nothing", async () => {
    const before = await storedCount();
    const error = await zone.store.append([factMessage(), factMessage({ predicate: "NotSnake" })]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    expect(reasonOf(error)).toBe("invalid_predicate");
    expect(await storedCount()).toBe(before);
  });

  it("routes facts to their stream category", async () => {
    const zone2 = await startTestZone({ routing: [{ predicate: "signature_recorded", stream: "audit" }] });
    try {
      const [result] = await zone2.store.append([factMessage({ predicate: "signature_recorded" })]);
      expect(result!.stream).toBe("audit");
      const page = await zone2.store.read({ stream: "audit", skipOrigins: [] }, 0);
      expect(page.facts.map((f) => f.message!.fact!.predicate)).toEqual(["signature_recorded"]);
    } finally {
      await zone2.dispose();
    }
  });

  it("refuses to start against a stream whose retention differs, unless told to reconcile", async () => {
    const cfg = { ...zone.store.config, streams: { ...zone.store.config.streams, operational: { ...zone.store.config.streams.operational!, maxAge: 3_600_000 } } };
    const error = await openZoneStore(cfg, { servers: zone.server.url }).catch((e: unknown) => e);
    expect(reasonOf(error)).toBe("topology_mismatch");
    expect((error as Error).message).toMatch(/facts-operational: max_age/);
    const reconciled = await openZoneStore({ ...cfg, reconcileTopology: true }, { servers: zone.server.url });
    expect(reconciled.topologyReport).toContain("stream facts-operational: updated");
    await reconciled.close();
    const back = await openZoneStore({ ...zone.store.config, reconcileTopology: true }, { servers: zone.server.url });
    await back.close();
  });

  it("runs on streams whose info carries every option the store relies on, as the server reports them", async () => {
    // A server drops options it does not know; what counts is what it reports back.
    const jsm = await jetstreamManager(zone.store.connection, { domain: "plant-a" });
    for (const name of ["facts-operational", "facts-audit", "facts-documents"]) {
      const { config } = await jsm.streams.info(name);
      expect({ name, discard: config.discard, allow_atomic: config.allow_atomic, allow_direct: config.allow_direct, storage: config.storage })
        .toEqual({ name, discard: "new", allow_atomic: true, allow_direct: true, storage: "file" });
      expect(config.duplicate_window).toBe(zone.store.config.dedupe.inflightWindow * 1_000_000);
    }
    const dedupe = (await jsm.streams.info("bsfg-dedupe")).config;
    expect({ discard: dedupe.discard, max_msgs_per_subject: dedupe.max_msgs_per_subject, allow_direct: dedupe.allow_direct })
      .toEqual({ discard: "old", max_msgs_per_subject: 1, allow_direct: true });
  });

  it("turns atomic batch publish on for a fact stream an older gateway created without it, without reconcileTopology", async () => {
    const jsm = await jetstreamManager(zone.store.connection, { domain: "plant-a" });
    const { config } = await jsm.streams.info("facts-audit");
    await jsm.streams.update("facts-audit", { ...config, allow_atomic: false });
    expect((await jsm.streams.info("facts-audit")).config.allow_atomic).toBeFalsy();
    const reopened = await openZoneStore(zone.store.config, { servers: zone.server.url });
    try {
      expect(reopened.topologyReport).toContain("stream facts-audit: updated");
      expect((await jsm.streams.info("facts-audit")).config.allow_atomic).toBe(true);
    } finally {
      await reopened.close();
    }
  });

  it("moves an index created with a 30-day horizon to the configured one at start, without reconcileTopology (an upgrade)", async () => {
    const jsm = await jetstreamManager(zone.store.connection, { domain: "plant-a" });
    const { config } = await jsm.streams.info("bsfg-dedupe");
    expect(config.max_age).toBe(24 * 3_600_000 * 1_000_000);
    await jsm.streams.update("bsfg-dedupe", { ...config, max_age: 30 * 86_400_000 * 1_000_000 });
    const reopened = await openZoneStore(zone.store.config, { servers: zone.server.url });
    try {
      expect(reopened.topologyReport).toContain("stream bsfg-dedupe: updated");
      expect((await jsm.streams.info("bsfg-dedupe")).config.max_age).toBe(24 * 3_600_000 * 1_000_000);
    } finally {
      await reopened.close();
    }
  });
});

describe("append: identity without the clock, exact payloads", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone();
  });
  afterAll(() => zone.dispose());

  const retryOf = (message: FactMessage, changes: { producedAt?: bigint; objectJson?: string } = {}) => factMessage({
    id: message.envelope!.messageId,
    fromZone: message.envelope!.fromZone,
    subject: message.fact!.subject,
    objectJson: changes.objectJson ?? message.fact!.objectJson,
    producedAt: changes.producedAt ?? message.envelope!.producedAtUnixMs,
  });

  it("answers a retry with a new produced_at DUPLICATE, with the original offset and produced_at", async () => {
    const original = factMessage({ producedAt: 1_764_000_000_000n });
    const [first] = await zone.store.append([original]);
    expect([first!.status, first!.producedAtUnixMs]).toEqual([AppendStatus.APPENDED, 1_764_000_000_000n]);

    const [later] = await zone.store.append([retryOf(original, { producedAt: 1_764_000_009_999n })]);
    expect([later!.status, later!.offset, later!.producedAtUnixMs]).toEqual([AppendStatus.DUPLICATE, first!.offset, 1_764_000_000_000n]);
    // In one batch too: the second occurrence is compared with what is stored.
    const fresh = factMessage({ producedAt: 1_764_000_000_001n });
    const results = await zone.store.append([fresh, retryOf(fresh, { producedAt: 1_764_000_000_002n })]);
    expect(results.map((r) => [r.status, r.offset, r.producedAtUnixMs])).toEqual([
      [AppendStatus.APPENDED, results[0]!.offset, 1_764_000_000_001n],
      [AppendStatus.DUPLICATE, results[0]!.offset, 1_764_000_000_001n],
    ]);
    // A changed fact is still a conflict, whatever its clock.
    const [changed] = await zone.store.append([retryOf(original, { producedAt: 1_764_000_000_000n, objectJson: '{"result":"scrap"}' })]);
    expect([changed!.status, changed!.offset, changed!.producedAtUnixMs]).toEqual([AppendStatus.CONFLICTING_DUPLICATE, first!.offset, 1_764_000_000_000n]);
  });

  it("answers retries of a fact an older gateway claimed (zone-wide key, identity with the clock) as before the upgrade, and a new clock as a duplicate", async () => {
    // What a gateway before this version left in the index: a claim under the bare message_id's
    // key naming only the identity with the clock, its fact published with Nats-Msg-Id = message_id.
    const original = factMessage({ producedAt: 1_700_000_000_000n });
    const [p] = prepareBatch(zone.store.config, [original]);
    const { substrate } = zone.store;
    const stored = await substrate.publisher.publish(p!.subject, p!.payload, { msgId: p!.messageId });
    const index = dedupeIndex(substrate);
    const oldKey = unscopedMessageKey(p!.messageId);
    expect(await index.claim(oldKey, { m: p!.messageId, h: p!.legacyHash, s: p!.stream, j: p!.subject, b: "older-gateway" }, 5_000)).toBeGreaterThan(0);
    await index.commit("older-gateway", { [oldKey]: stored.seq });
    const before = await storedCount(zone);

    // A gateway started after the older one wrote claims (a rolling upgrade): it honours them.
    const upgraded = await openZoneStore(zone.store.config, { servers: zone.server.url });
    try {
      const [same] = await upgraded.append([retryOf(original)]);
      const [newClock] = await upgraded.append([retryOf(original, { producedAt: 1_764_000_000_000n })]);
      const [changed] = await upgraded.append([retryOf(original, { objectJson: '{"result":"scrap"}' })]);
      expect([same!.status, same!.offset, same!.producedAtUnixMs]).toEqual([AppendStatus.DUPLICATE, BigInt(stored.seq), 1_700_000_000_000n]);
      expect([newClock!.status, newClock!.offset, newClock!.producedAtUnixMs]).toEqual([AppendStatus.DUPLICATE, BigInt(stored.seq), 1_700_000_000_000n]);
      expect([changed!.status, changed!.offset]).toEqual([AppendStatus.CONFLICTING_DUPLICATE, BigInt(stored.seq)]);
      expect(await storedCount(zone)).toBe(before);
      // No scoped claim was made for it: the old claim stays the one answer until it ages out.
      expect(await index.read(p!.key)).toBeUndefined();
    } finally {
      await upgraded.close();
    }
  });

  it("scopes a message_id by from_zone: another zone's fact with the same id is its own fact, with its own retries", async () => {
    const id = `shared-id-${Date.now()}`;
    const first = factMessage({ id, fromZone: "plant-a", objectJson: '{"result":"pass"}' });
    const other = factMessage({ id, fromZone: "idmz", objectJson: '{"result":"scrap"}' });
    const [a] = await zone.store.append([first]);
    // Inside JetStream's duplicate window too: the Nats-Msg-Id is scoped alike.
    const [b] = await zone.store.append([other]);
    expect([a!.status, b!.status]).toEqual([AppendStatus.APPENDED, AppendStatus.APPENDED]);
    expect(b!.offset).not.toBe(a!.offset);
    // Both in one batch: two facts, each answered from its own scope.
    const [aAgain, bAgain] = await zone.store.append([retryOf(first), retryOf(other)]);
    expect([aAgain!.status, aAgain!.offset, bAgain!.status, bAgain!.offset]).toEqual([AppendStatus.DUPLICATE, a!.offset, AppendStatus.DUPLICATE, b!.offset]);
    // A conflict is still a conflict within one scope.
    const [changed] = await zone.store.append([factMessage({ id, fromZone: "idmz", objectJson: '{"result":"rework"}' })]);
    expect([changed!.status, changed!.offset]).toEqual([AppendStatus.CONFLICTING_DUPLICATE, b!.offset]);
  });

  it("keeps both identities in a new claim, so an older gateway still recognizes a plain retry", async () => {
    const message = factMessage();
    const [p] = prepareBatch(zone.store.config, [message]);
    await zone.store.append([message]);
    const claim = await dedupeIndex(zone.store.substrate).read(p!.key);
    expect({ h: claim!.h, i: claim!.i, t: claim!.t }).toEqual({ h: p!.legacyHash, i: p!.hash, t: String(message.envelope!.producedAtUnixMs) });
  });

  it("reads a payload back byte for byte through the store: canonical text as sent, other spellings as their canonical form", async () => {
    // Canonical (RFC 8785) text at the edges of what JSON carries exactly.
    const exact = '{"ctl":"\\u0000\\u001f\\n","emoji":"😀","huge":1e+308,"ids":[9007199254740991,-9007199254740991],"ls":"\u2028\u2029","tiny":5e-324,"x":0.1}';
    const respelt = '{ "x": 1.0, "a": [1E3, -0.0, 4.50], "\\u00e9": "\\u00e9" }';
    const messages = [factMessage({ objectJson: exact }), factMessage({ objectJson: respelt })];
    const results = await zone.store.append(messages);
    const page = await zone.store.read({ stream: "operational", skipOrigins: [] }, Number(results[0]!.offset) - 1, { limit: 2 });
    expect(page.facts.map((f) => f.message!.fact!.objectJson)).toEqual([exact, '{"a":[1000,0,4.5],"x":1,"é":"é"}']);
    expect(Buffer.from(toBinary(FactMessageSchema, page.facts[0]!.message!))).toEqual(Buffer.from(toBinary(FactMessageSchema, messages[0]!)));
  });

  it("refuses a payload JSON cannot carry exactly and writes nothing", async () => {
    const before = await storedCount(zone);
    const error = await zone.store.append([factMessage(), factMessage({ objectJson: '{"readings":[{"value":1},{"value":9007199254740993}]}' })]).catch((e: unknown) => e);
    expect(reasonOf(error)).toBe("inexact_json");
    expect(errorInfoOf(error)?.metadata).toMatchObject({ index: "1", path: "$.readings[1].value", problem: "integer_out_of_range" });
    expect(await storedCount(zone)).toBe(before);
  });
});

async function storedCount(zone: TestZone, stream = "facts-operational"): Promise<number> {
  return (await zone.store.substrate.jsm.streams.info(stream)).state.messages;
}

describe("append: the producer dedupe horizon", () => {
  it("answers a retry DUPLICATE inside the horizon, appends it again past it, and the server drops the index entries", async () => {
    const zone = await startTestZone({ dedupe: { horizon: "3s", pendingTimeout: "1s", inflightWindow: "2s" } });
    try {
      const jsm = await jetstreamManager(zone.store.connection, { domain: "plant-a" });
      const messages = Array.from({ length: 20 }, (_, i) => factMessage({ id: `horizon-${process.pid}-${i}` }));
      const first = await zone.store.append(messages);
      const retried = await zone.store.append(messages);
      expect(retried.map((r) => r.status)).toEqual(messages.map(() => AppendStatus.DUPLICATE));
      expect(retried.map((r) => r.offset)).toEqual(first.map((r) => r.offset));
      // The server holds one claim subject per id (plus the batch's commit), and drops them at the horizon.
      expect((await jsm.streams.info("bsfg-dedupe")).state.num_subjects).toBeGreaterThanOrEqual(20);
      await pollUntil(async () => {
        const state = (await jsm.streams.info("bsfg-dedupe")).state;
        return state.messages === 0 && (state.num_subjects ?? 0) === 0;
      }, { timeoutMs: 15_000, intervalMs: 250, what: "the dedupe index empty past the horizon" });
      const again = await zone.store.append(messages);
      // Past the horizon a retry is a new fact: documented in docs/protocol.md.
      expect(again.map((r) => r.status)).toEqual(messages.map(() => AppendStatus.APPENDED));
      expect(again.every((r, i) => r.offset > first[i]!.offset)).toBe(true);
    } finally {
      await zone.dispose();
    }
  });
});

/** Retries while the client reconnects after a server restart (the store answers `unavailable`, which is retry-safe). */
export async function appendWithRetry<T>(fn: () => Promise<T>, deadlineMs = 30_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
