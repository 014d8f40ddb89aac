import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppendStatus, Code, ConnectError, errorInfoOf, reasonOf, type FactMessage } from "@bsfg/proto";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";
import { prepareBatch } from "./validate.js";

/** The message ids of `batch` that the log holds, in offset order. */
async function storedOf(zone: TestZone, stream: string, batch: readonly FactMessage[]): Promise<string[]> {
  const ids = new Set(batch.map((m) => m.envelope!.messageId));
  const page = await zone.store.read({ stream, skipOrigins: [] }, 0, { limit: 10_000 });
  return page.facts.map((f) => f.message!.envelope!.messageId).filter((id) => ids.has(id));
}

/*
 * Both ways a batch is written: atomic batches per run of one stream (nats.sync
 * always) and per-subject waves of publishes (interval). They cut a failed batch
 * at different places — a whole run, or the refused fact's wave — and both keep
 * each subject's order.
 */
describe.each([
  { durability: "always" as const, cut: "the whole run of the refused fact", refusedAt: 1, storedBefore: [] as number[], otherSubjectsStored: [] as number[], firstUnanswered: 0 },
  // Waves are per fact subject: facts of other subjects go with the refused one, and are stored.
  { durability: "interval" as const, cut: "the refused fact's wave and every wave after it", refusedAt: 2, storedBefore: [1], otherSubjectsStored: [0, 2], firstUnanswered: 1 },
])("a batch cut short (nats.sync $durability): no fact of a subject is stored after an earlier one that was refused", ({ durability, cut, refusedAt, storedBefore, otherSubjectsStored, firstUnanswered }) => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({
      // A tiny operational log that refuses new facts when full (discard: new); nothing refuses earlier.
      streams: { operational: { maxBytes: "16KiB" }, audit: { maxBytes: "1GiB" }, documents: { maxBytes: "1GiB" } },
      routing: [{ predicate: "signature_recorded", stream: "audit" }],
      backpressure: { rejectAtPercent: 100 },
    }, { durability });
  });
  afterAll(() => zone.dispose());

  it(`refuses ${cut} after a fact the store refuses, and stores what came before it`, async () => {
    const subject = "batch:PlantA/T1";
    const batch = [
      factMessage({ subject, predicate: "signature_recorded", object: { by: "qa" } }), // audit: its own run, stored first
      factMessage({ subject, object: { step: 1 } }),
      factMessage({ subject, object: { step: 2, blob: "x".repeat(17_000) } }), // larger than the whole operational log
      factMessage({ subject, object: { step: 3 } }), // would still fit: pipelined publishes stored it after step 2 was refused
    ];
    const error = await zone.store.append(batch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.ResourceExhausted);
    expect(reasonOf(error)).toBe("store_full");
    expect(errorInfoOf(error)?.metadata).toMatchObject({ index: String(refusedAt), message_id: batch[refusedAt]!.envelope!.messageId });

    // Stored: the batch up to the cut, nothing of the subject after the refused fact.
    expect(await storedOf(zone, "audit", batch)).toEqual([batch[0]!.envelope!.messageId]);
    expect(await storedOf(zone, "operational", batch)).toEqual(storedBefore.map((i) => batch[i]!.envelope!.messageId));

    // The tail's claims were released: once the oversized fact is gone, a retry stores the rest in order.
    const retry = [batch[0]!, batch[1]!, batch[3]!];
    const results = await zone.store.append(retry);
    expect(results.map((r) => r.status)).toEqual([AppendStatus.DUPLICATE, storedBefore.includes(1) ? AppendStatus.DUPLICATE : AppendStatus.APPENDED, AppendStatus.APPENDED]);
    expect(await storedOf(zone, "operational", batch)).toEqual([batch[1]!, batch[3]!].map((m) => m.envelope!.messageId));
  });

  it("refuses a fact of one subject with its run (always) or alone, storing the facts of other subjects sent with it (interval)", async () => {
    const batch = [
      factMessage({ subject: "batch:PlantA/X1", object: { n: 1 } }),
      factMessage({ subject: "batch:PlantA/Y1", object: { blob: "y".repeat(17_000) } }), // larger than the whole operational log
      factMessage({ subject: "batch:PlantA/Z1", object: { n: 3 } }),
    ];
    const error = await zone.store.append(batch).catch((e: unknown) => e);
    expect(reasonOf(error)).toBe("store_full");
    expect(errorInfoOf(error)?.metadata).toMatchObject({ index: String(firstUnanswered) });
    expect(await storedOf(zone, "operational", batch)).toEqual(otherSubjectsStored.map((i) => batch[i]!.envelope!.messageId));
  });

  it("stores a whole batch of interleaved subjects with each subject's facts in batch order", async () => {
    const batch = Array.from({ length: 30 }, (_, i) => factMessage({ subject: `batch:PlantA/W${i % 3}`, object: { i } }));
    const results = await zone.store.append(batch);
    expect(results.every((r) => r.status === AppendStatus.APPENDED)).toBe(true);
    for (const subject of ["batch:PlantA/W0", "batch:PlantA/W1", "batch:PlantA/W2"]) {
      const offsets = batch.flatMap((m, i) => (m.fact!.subject === subject ? [Number(results[i]!.offset)] : []));
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }
    expect(new Set(results.map((r) => r.offset)).size).toBe(30);
  });

  it("adopts a late copy of an earlier owner, keeping batch order (an atomic batch refuses it whole, and falls back to one by one)", async () => {
    const subject = "batch:PlantA/T2";
    const batch = [1, 2, 3].map((step) => factMessage({ subject, object: { step } }));
    const [, second] = prepareBatch(zone.store.config, batch);
    // A copy of the second fact that an owner which lost its claim still got into the log (Nats-Msg-Id: the dedupe key).
    const early = await zone.store.substrate.publisher.publish(second!.subject, second!.payload, { msgId: second!.key });

    const results = await zone.store.append(batch);
    expect(results.map((r) => r.status)).toEqual([AppendStatus.APPENDED, AppendStatus.DUPLICATE, AppendStatus.APPENDED]);
    expect(results[1]!.offset).toBe(BigInt(early.seq));
    expect(results[0]!.offset).toBeLessThan(results[2]!.offset);
    expect(await storedOf(zone, "operational", batch)).toEqual([batch[1]!, batch[0]!, batch[2]!].map((m) => m.envelope!.messageId));
  });
});
