import { toBinary } from "@bufbuild/protobuf";
import { headers } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, FactMessageSchema, reasonOf } from "@bsfg/proto";
import { dropQuarantined, releaseQuarantined, RELEASED_FROM_HEADER } from "./quarantine-actions.js";
import { getQuarantined, historyOf, listQuarantine, park, QUARANTINE_STREAM, summarizeQuarantine, transition, type SetAsideRecord } from "./quarantine.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";

/*
 * The quarantine stream against a real nats-server: parking is idempotent per
 * (link, peer offset), operator actions are conditional transitions, and a
 * release appends the fact exactly once, also when it resumes a crashed one.
 */
const record = (peerOffset: number, reason = "to_zone_not_allowed"): SetAsideRecord => ({
  link: "idmz/enterprise-from-idmz-operational", peer: "idmz", stream: "operational", peerOffset, messageId: `m-${peerOffset}`,
  reason, detail: "idmz-bsfg may not target to_zone \"plant-a\"\nsecond line", peerStoredAtMs: 1_764_000_000_000, servedDigest: "ab".repeat(32),
});
const bytes = () => toBinary(FactMessageSchema, factMessage({ fromZone: "idmz", toZone: "enterprise" }));

describe("quarantine: set-aside facts and what operators do with them", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({ quarantine: { maxBytes: "64KiB" } });
  });
  afterAll(() => zone.dispose());

  it("parks a fact once per link and peer offset, with its bytes and why, however often it is parked again", async () => {
    const { substrate } = zone.store;
    const fact = bytes();
    const first = await park(substrate, record(11), fact);
    const again = await park(substrate, record(11), fact);
    expect(first.already).toBe(false);
    expect(again).toEqual({ id: first.id, already: true });
    const found = await getQuarantined(substrate, first.id);
    expect(found!.fact).toEqual(fact);
    expect(found!.entry).toMatchObject({ id: first.id, state: "parked", peerOffset: 11, messageId: "m-11", reason: "to_zone_not_allowed", detail: "idmz-bsfg may not target to_zone \"plant-a\" second line" });
    const summary = await summarizeQuarantine(substrate);
    expect(summary.byLinkAndReason).toContainEqual({ link: record(11).link, reason: "to_zone_not_allowed", count: 1 });
  });

  it("releases a fact into the log once: a repeated release answers where it is, a drop after it is refused", async () => {
    const { substrate } = zone.store;
    const fact = bytes();
    const { id } = await park(substrate, record(12), fact);
    const released = await releaseQuarantined(substrate, id, "operator-1", "batch", { note: "policy fixed" });
    expect(released.already).toBe(false);
    const stored = await substrate.jsm.streams.getMessage("facts-operational", { seq: released.offset });
    expect(stored!.data).toEqual(fact);
    expect(stored!.subject).toBe("facts.operational.batch");
    expect(stored!.header?.get(RELEASED_FROM_HEADER)).toBe(String(id));
    expect(stored!.header?.get("Bsfg-Origin")).toBe("idmz/operational/12");
    const repeated = await releaseQuarantined(substrate, id, "operator-2", "batch");
    expect(repeated).toMatchObject({ already: true, offset: released.offset });
    const drop = await dropQuarantined(substrate, id, "operator-2", { note: "too late" }).catch((err: unknown) => ConnectError.from(err));
    expect(reasonOf(drop)).toBe("quarantine_entry_settled");
    expect((await historyOf(substrate, released.entry)).map((r) => [r.state, r.by ?? "", r.releasedOffset])).toEqual([
      ["parked", "", undefined], ["releasing", "operator-1", undefined], ["released", "operator-1", released.offset],
    ]);
    expect((await listQuarantine(substrate)).map((e) => e.id)).not.toContain(id);
  });

  it("resumes a release that crashed after appending, however often: it finds the copy and appends nothing more", async () => {
    const { substrate } = zone.store;
    const fact = bytes();
    const { id } = await park(substrate, record(13), fact);
    const { entry } = (await getQuarantined(substrate, id))!;
    // The crashed release: marked releasing, appended the fact with its origin, never marked it released.
    await transition(substrate, entry, { state: "releasing", by: "operator-1" });
    const h = headers();
    h.set("Bsfg-Origin", "idmz/operational/13");
    const crashed = await substrate.js.publish("facts.operational.batch", fact, { headers: h });
    // Within the resume window the entry is busy.
    expect(reasonOf(await releaseQuarantined(substrate, id, "operator-2", "batch").catch((err: unknown) => ConnectError.from(err)))).toBe("quarantine_entry_busy");
    // A second resumer that fails after its mark (its audit record cannot be written) …
    const failing = await releaseQuarantined(substrate, id, "operator-2", "batch", { resumeAfterMs: 0, beforeSettle: () => Promise.reject(new Error("audit stream unavailable")) }).then(() => new Error("released"), (err: unknown) => err as Error);
    expect(failing.message).toBe("audit stream unavailable");
    await substrate.js.publish("facts.operational.batch", bytes());
    const lastBefore = (await substrate.jsm.streams.info("facts-operational")).state.last_seq;
    // … and a third still finds the first's copy: the scan starts where the fact was set aside, not at the latest mark.
    const audited: number[] = [];
    const resumed = await releaseQuarantined(substrate, id, "operator-3", "batch", { resumeAfterMs: 0, beforeSettle: async (_, offset) => void audited.push(offset!) });
    expect(resumed).toMatchObject({ already: false, found: true, offset: crashed.seq });
    expect(audited).toEqual([crashed.seq]);
    expect((await substrate.jsm.streams.info("facts-operational")).state.last_seq).toBe(lastBefore);
  });

  it("does not append a fact a link shipped after it was set aside (a replica with another policy): release settles it where it is", async () => {
    const { substrate } = zone.store;
    const fact = bytes();
    const { id } = await park(substrate, record(15), fact);
    const h = headers();
    h.set("Bsfg-Origin", "idmz/operational/15");
    const shipped = await substrate.js.publish("facts.operational.batch", fact, { headers: h });
    const released = await releaseQuarantined(substrate, id, "operator-1", "batch");
    expect(released).toMatchObject({ found: true, offset: shipped.seq });
    expect(released.entry.state).toBe("released");
  });

  it("drops only with the entry as read: another operator's action in between makes it busy", async () => {
    const { substrate } = zone.store;
    const { id } = await park(substrate, record(14), bytes());
    const { entry } = (await getQuarantined(substrate, id))!;
    const dropped = await dropQuarantined(substrate, id, "operator-1", { note: "duplicate of a fact re-sent by the producer" });
    expect(dropped.entry).toMatchObject({ state: "dropped", by: "operator-1", note: "duplicate of a fact re-sent by the producer" });
    expect((await dropQuarantined(substrate, id, "operator-1", { note: "again" })).already).toBe(true);
    // A transition from the stale read (before the drop) is refused by the subject's sequence.
    await expect(transition(substrate, entry, { state: "releasing", by: "operator-2" })).rejects.toThrow(/changed while/);
    const missing = await dropQuarantined(substrate, 999_999, "operator-1", { note: "x" }).then(() => undefined, (err: unknown) => ConnectError.from(err));
    expect([missing?.code, reasonOf(missing)]).toEqual([Code.NotFound, "quarantine_entry_not_found"]);
  });

  it("refuses to park when full (store_full), and never drops an entry to make room", async () => {
    const { substrate } = zone.store;
    const before = (await substrate.jsm.streams.info(QUARANTINE_STREAM)).state.messages;
    const big = new Uint8Array(20 * 1024);
    let refusal: ConnectError | undefined;
    for (let offset = 100; offset < 110 && !refusal; offset++) {
      refusal = await park(substrate, record(offset), big).then(() => undefined, (err: unknown) => ConnectError.from(err));
    }
    expect([refusal?.code, reasonOf(refusal)]).toEqual([Code.ResourceExhausted, "store_full"]);
    const after = await substrate.jsm.streams.info(QUARANTINE_STREAM);
    expect(after.state.messages).toBeGreaterThan(before);
    expect(after.state.first_seq).toBe(1);
  });
});
