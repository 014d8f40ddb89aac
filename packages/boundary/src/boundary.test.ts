import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { AppendStatus, reasonOf } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { producedFact, rejectionOf, startTestZoneServices, type TestZoneServices } from "./test-support.js";

describe.each(["connect", "grpc"] as const)("the zone's boundary over %s, HTTP/2 and mutual TLS", (protocol) => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
  });
  afterAll(() => zone.dispose());

  it("appends, fetches the page after the cursor until it is confirmed, and confirms monotonically", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const peer = zone.client("enterprise-bsfg", { protocol });
    const results = await producer.appendFacts([producedFact(1), producedFact(2), producedFact(3)]);
    expect(results.map((r) => r.status)).toEqual([AppendStatus.APPENDED, AppendStatus.APPENDED, AppendStatus.APPENDED]);
    const again = await producer.appendFact(producedFact(1, { id: results[0]!.messageId }));
    expect(again.status).toBe(AppendStatus.DUPLICATE);

    const page = await peer.fetchFacts("enterprise-from-plant-a", { limit: 2 });
    const same = await peer.fetchFacts("enterprise-from-plant-a", { limit: 2 });
    expect(page.facts.map((f) => f.offset)).toEqual(results.slice(0, 2).map((r) => r.offset));
    expect(same.facts.map((f) => f.offset)).toEqual(page.facts.map((f) => f.offset));
    expect(page.facts[0]!.message!.envelope!.messageId).toBe(results[0]!.messageId);

    expect(await peer.confirmReceipt("enterprise-from-plant-a", page.lastOffset)).toBe(page.lastOffset);
    expect(await peer.confirmReceipt("enterprise-from-plant-a", page.lastOffset - 1n)).toBe(page.lastOffset);
    const next = await peer.fetchFacts("enterprise-from-plant-a", { limit: 10 });
    expect(next.cursor).toBe(page.lastOffset);
    expect(next.facts.map((f) => f.offset)).toContain(results[2]!.offset);

    const beyond = await rejectionOf(peer.confirmReceipt("enterprise-from-plant-a", next.highWater + 100n));
    expect([beyond.code, reasonOf(beyond)]).toEqual([Code.FailedPrecondition, "cursor_beyond_log"]);
    await peer.confirmReceipt("enterprise-from-plant-a", next.lastOffset);
  });

  it("reads ahead of the cursor with after_offset, never behind it, and not past the log", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const peer = zone.client("enterprise-bsfg", { protocol });
    const results = await producer.appendFacts([producedFact(11), producedFact(12), producedFact(13)]);
    const cursor = (await peer.fetchFacts("enterprise-from-plant-a", { limit: 1 })).cursor;
    // The next page while the first is still unconfirmed: a puller's prefetch.
    const ahead = await peer.fetchFacts("enterprise-from-plant-a", { limit: 10, afterOffset: results[0]!.offset });
    expect(ahead.cursor).toBe(cursor);
    expect(ahead.facts.map((f) => f.offset)).toEqual([results[1]!.offset, results[2]!.offset]);
    // Below the cursor means "after the cursor": nothing confirmed is served again.
    await peer.confirmReceipt("enterprise-from-plant-a", results[1]!.offset);
    const behind = await peer.fetchFacts("enterprise-from-plant-a", { limit: 10, afterOffset: 1 });
    expect(behind.facts.map((f) => f.offset)).toEqual([results[2]!.offset]);
    const beyond = await rejectionOf(peer.fetchFacts("enterprise-from-plant-a", { afterOffset: ahead.highWater + 100n }));
    expect([beyond.code, reasonOf(beyond)]).toEqual([Code.FailedPrecondition, "cursor_beyond_log"]);
    await peer.confirmReceipt("enterprise-from-plant-a", results[2]!.offset);
  });

  it("throws already_exists for a conflicting duplicate from appendFact", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const original = await producer.appendFact(producedFact(10));
    const conflict = await rejectionOf(producer.appendFact(producedFact(10, { id: original.messageId, object: { changed: true } })));
    expect([conflict.code, reasonOf(conflict)]).toEqual([Code.AlreadyExists, "conflicting_duplicate"]);
  });

  it("scopes message ids by from_zone: an identity that appends another zone's id first does not suppress that zone's fact", async () => {
    const squatter = zone.client("enterprise-bsfg", { protocol });
    const producer = zone.client("mes-producer", { protocol });
    const id = `guessed-${protocol}-${Date.now()}`;
    // enterprise-bsfg may assert from_zone enterprise only; it guesses plant-a's next id.
    const first = await squatter.appendFact(producedFact(20, { id, fromZone: "enterprise", toZone: "plant-a", object: { squatted: true } }));
    const real = await producer.appendFact(producedFact(21, { id }));
    expect([first.status, real.status]).toEqual([AppendStatus.APPENDED, AppendStatus.APPENDED]);
    expect(real.offset).toBeGreaterThan(first.offset);
    expect((await producer.appendFact(producedFact(21, { id }))).status).toBe(AppendStatus.DUPLICATE);
    // And it crosses: the receiving zone's consumer is served plant-a's fact under its id.
    const page = await squatter.fetchFacts("enterprise-from-plant-a", { afterOffset: real.offset - 1n, limit: 1 });
    expect(page.facts.map((f) => [f.offset, f.message!.envelope!.messageId, f.message!.envelope!.fromZone])).toEqual([[real.offset, id, "plant-a"]]);
  });

  it("rejects a malformed batch whole with invalid_argument", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const bad = { ...producedFact(20), fact: { subject: "no kind here", predicate: "step_completed", objectJson: "{}" } };
    const error = await rejectionOf(producer.appendFacts([producedFact(21), bad]));
    expect([error.code, reasonOf(error)]).toEqual([Code.InvalidArgument, "invalid_subject"]);
  });

  it("denies what the policy does not allow, with the reason", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const wrongOrigin = await rejectionOf(producer.appendFacts([producedFact(30, { fromZone: "enterprise" })]));
    expect([wrongOrigin.code, reasonOf(wrongOrigin)]).toEqual([Code.PermissionDenied, "from_zone_not_allowed"]);
    const wrongTarget = await rejectionOf(producer.appendFacts([producedFact(31, { toZone: "plant-a" })]));
    expect(reasonOf(wrongTarget)).toBe("to_zone_not_allowed");
    const notBound = await rejectionOf(producer.fetchFacts("enterprise-from-plant-a"));
    expect([notBound.code, reasonOf(notBound)]).toEqual([Code.PermissionDenied, "consumer_not_allowed"]);
    // Policy before lookup: a name the caller is not bound to is refused whether it exists or not (consumer-authorization.test.ts).
    const unknown = await rejectionOf(zone.client("enterprise-bsfg", { protocol }).fetchFacts("nobody"));
    expect([unknown.code, reasonOf(unknown)]).toEqual([Code.PermissionDenied, "consumer_not_allowed"]);
    const stranger = await rejectionOf(zone.client("stranger", { protocol }).appendFacts([producedFact(32)]));
    expect([stranger.code, reasonOf(stranger)]).toEqual([Code.PermissionDenied, "unknown_identity"]);
  });

  it("streams artifacts in and out, resumable, by bucket policy", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const peer = zone.client("enterprise-bsfg", { protocol });
    const content = Buffer.alloc(700 * 1024, 7);
    content.write("%PDF-1.7 batch record", 0);
    const ref = await producer.putObject({ bucket: "batch-files", key: `${protocol}/B1042.pdf`, mediaType: "application/pdf", fileName: "B1042.pdf" }, content);
    expect(ref.size).toBe(BigInt(content.byteLength));
    expect(ref.digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const sink = new PassThrough();
    const received: Buffer[] = [];
    sink.on("data", (chunk: Buffer) => received.push(chunk));
    const fetched = await peer.fetchObject("batch-files", `${protocol}/B1042.pdf`, sink);
    expect(fetched.digest).toBe(ref.digest);
    expect(Buffer.concat(received).equals(content)).toBe(true);
    expect((await peer.statObject("batch-files", `${protocol}/B1042.pdf`)).digest).toBe(ref.digest);

    const missing = await rejectionOf(peer.statObject("batch-files", "nope"));
    expect([missing.code, reasonOf(missing)]).toEqual([Code.NotFound, "object_not_found"]);
    const noRead = await rejectionOf(producer.statObject("batch-files", `${protocol}/B1042.pdf`));
    expect([noRead.code, reasonOf(noRead)]).toEqual([Code.PermissionDenied, "bucket_not_allowed"]);
    const noWrite = await rejectionOf(producer.putObject({ bucket: "document-files", key: "x", mediaType: "text/plain" }, Buffer.from("x")));
    expect(reasonOf(noWrite)).toBe("bucket_not_allowed");
    const wrongDigest = await rejectionOf(producer.putObject({ bucket: "batch-files", key: `${protocol}/bad`, mediaType: "text/plain", expectedDigest: `sha256:${"0".repeat(64)}` }, Buffer.from("x")));
    expect([wrongDigest.code, reasonOf(wrongDigest)]).toEqual([Code.InvalidArgument, "digest_mismatch"]);
  });
});

describe("long polls, skipped facts and limits", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
  });
  afterAll(() => zone.dispose());

  it("returns a waiting fetch within ~50 ms of an append", async () => {
    const peer = zone.client("enterprise-bsfg");
    const producer = zone.client("mes-producer");
    const drained = await peer.fetchFacts("enterprise-from-plant-a", { limit: 50 });
    if (drained.lastOffset > drained.cursor) await peer.confirmReceipt("enterprise-from-plant-a", drained.lastOffset);

    // While a fetch waits, the zone listens for appends to the stream: a core NATS subscription
    // of its own connection, held only then (the nats-server's /connz lists it).
    const appendWatchers = async () => {
      const connz = (await (await fetch(`${zone.nats.monitorUrl}/connz?subs=1`)).json()) as { connections: Array<{ name?: string; subscriptions_list?: string[] }> };
      return connz.connections.filter((c) => c.name === "bsfg-zone").flatMap((c) => c.subscriptions_list ?? []).filter((subject) => subject === "facts.operational.>").length;
    };
    expect(await appendWatchers()).toBe(0);
    let returnedAt = 0;
    const waiting = peer.fetchFacts("enterprise-from-plant-a", { maxWaitMs: 5_000 }).then((page) => {
      returnedAt = performance.now();
      return page;
    });
    // The fetch reached its wait: it must come back empty-handed first if the append were not seen.
    await pollUntil(async () => (await appendWatchers()) === 1, { intervalMs: 10, what: "the fetch waiting for an append" });
    expect(returnedAt).toBe(0);
    const [appended] = await producer.appendFacts([producedFact(40)]);
    const ackedAt = performance.now();
    const page = await waiting;
    expect(page.facts.map((f) => f.offset)).toEqual([appended!.offset]);
    expect(returnedAt - ackedAt).toBeLessThan(100);
  });

  it("advances last_offset over skipped origins and caps the page at the server's limit", async () => {
    const peer = zone.client("enterprise-bsfg");
    const start = await peer.fetchFacts("enterprise-from-plant-a", { limit: 50 });
    if (start.lastOffset > start.cursor) await peer.confirmReceipt("enterprise-from-plant-a", start.lastOffset);
    // enterprise-bsfg may assert from_zone enterprise: an echo the consumer skips.
    const [echo] = await peer.appendFacts([producedFact(50, { fromZone: "enterprise", toZone: "plant-a" })]);
    const page = await peer.fetchFacts("enterprise-from-plant-a", { limit: 50 });
    expect(page.facts).toEqual([]);
    expect(page.lastOffset).toBe(echo!.offset);
    await peer.confirmReceipt("enterprise-from-plant-a", page.lastOffset);

    await zone.client("mes-producer").appendFacts(Array.from({ length: 60 }, (_, i) => producedFact(100 + i)));
    const capped = await peer.fetchFacts("enterprise-from-plant-a", { limit: 500 });
    expect(capped.facts).toHaveLength(50);
  });
});
