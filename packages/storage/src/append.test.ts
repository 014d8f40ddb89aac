import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AppendStatus, Code, ConnectError, reasonOf } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";
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
