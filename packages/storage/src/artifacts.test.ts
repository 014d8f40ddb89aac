import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager, type MsgRequest } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Code, ConnectError, reasonOf } from "@bsfg/proto";
import { startTestZone, type TestZone } from "./test-support.js";
import { openZoneStore } from "./zone-store.js";

const MiB = 2 ** 20;

/** Deterministic pseudo-random content, generated chunk by chunk so the test holds none of it. */
async function* content(totalBytes: number, seed: number, chunkBytes = MiB): AsyncGenerator<Uint8Array> {
  let state = seed >>> 0;
  for (let sent = 0; sent < totalBytes; sent += chunkBytes) {
    const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, totalBytes - sent));
    for (let i = 0; i < chunk.length; i += 4) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      chunk.writeUInt32LE(state, Math.min(i, chunk.length - 4));
    }
    yield chunk;
  }
}

async function digestOf(chunks: AsyncIterable<Uint8Array>): Promise<{ digest: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const c of chunks) {
    hash.update(c);
    size += c.byteLength;
  }
  return { digest: `sha256:${hash.digest("hex")}`, size };
}

const bytes = (text: string) => (async function* () { yield Buffer.from(text); })();

describe("artifacts: streamed, verified, immutable", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({ buckets: { "batch-files": {} } });
  });
  afterAll(() => zone.dispose());

  it("round-trips a 100 MiB artifact with RSS growth under 64 MiB", async () => {
    const size = 100 * MiB;
    const expected = await digestOf(content(size, 7));
    global.gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
    try {
      const ref = await zone.store.putObject({ bucket: "batch-files", key: "B1042/record.bin", mediaType: "application/octet-stream", expectedDigest: expected.digest, size }, content(size, 7));
      expect(ref.digest).toBe(expected.digest);
      expect(ref.size).toBe(BigInt(size));
      const reader = await zone.store.getObject("batch-files", "B1042/record.bin");
      expect(await digestOf(reader.chunks)).toEqual(expected);
    } finally {
      clearInterval(sampler);
    }
    expect((peak - baseline) / MiB).toBeLessThan(64);
  });

  it("resumes a read from a byte offset", async () => {
    await zone.store.putObject({ bucket: "batch-files", key: "resume.txt", mediaType: "text/plain" }, bytes("0123456789".repeat(30_000)));
    const reader = await zone.store.getObject("batch-files", "resume.txt", 299_990);
    const rest: Buffer[] = [];
    for await (const c of reader.chunks) rest.push(Buffer.from(c));
    expect(Buffer.concat(rest).toString()).toBe("0123456789");
  });

  it("treats the same key with the same content as idempotent and different content as already_exists", async () => {
    const first = await zone.store.putObject({ bucket: "batch-files", key: "sop.pdf", mediaType: "application/pdf", fileName: "SOP-7.pdf" }, bytes("%PDF-1.7 one"));
    const again = await zone.store.putObject({ bucket: "batch-files", key: "sop.pdf", mediaType: "application/pdf" }, bytes("%PDF-1.7 one"));
    expect(again).toEqual(first);
    expect(first.fileName).toBe("SOP-7.pdf");
    const error = await zone.store.putObject({ bucket: "batch-files", key: "sop.pdf", mediaType: "application/pdf" }, bytes("%PDF-1.7 two")).catch((e: unknown) => e);
    expect((error as ConnectError).code).toBe(Code.AlreadyExists);
    expect(reasonOf(error)).toBe("conflicting_object");
    expect((await zone.store.statObject("batch-files", "sop.pdf"))?.digest).toBe(first.digest);
  });

  it("rejects content that does not match the declared digest or size, and stores nothing", async () => {
    const wrongDigest = await zone.store.putObject({ bucket: "batch-files", key: "bad-digest", mediaType: "text/plain", expectedDigest: `sha256:${"0".repeat(64)}` }, bytes("hello")).catch((e: unknown) => e);
    expect(reasonOf(wrongDigest)).toBe("digest_mismatch");
    const wrongSize = await zone.store.putObject({ bucket: "batch-files", key: "bad-size", mediaType: "text/plain", size: 6 }, bytes("hello")).catch((e: unknown) => e);
    expect(reasonOf(wrongSize)).toBe("size_mismatch");
    expect(await zone.store.statObject("batch-files", "bad-digest")).toBeUndefined();
    expect(await zone.store.statObject("batch-files", "bad-size")).toBeUndefined();
  });

  it("answers not_found for unknown buckets and objects", async () => {
    const noBucket = await zone.store.putObject({ bucket: "nope", key: "k", mediaType: "text/plain" }, bytes("x")).catch((e: unknown) => e);
    expect(reasonOf(noBucket)).toBe("unknown_bucket");
    const noObject = await zone.store.getObject("batch-files", "missing").catch((e: unknown) => e);
    expect((noObject as ConnectError).code).toBe(Code.NotFound);
    expect(reasonOf(noObject)).toBe("object_not_found");
  });

  it("answers a 1 MB key, media type or file name, or a line break in one, as what it is (the hostile campaign)", async () => {
    // A huge one went to JetStream in one message beyond its max_payload: unavailable / store_unavailable,
    // "retry"; a line break threw in the NATS client's header check: internal.
    const huge = "m".repeat(MiB);
    expect(await zone.store.statObject("batch-files", huge)).toBeUndefined();
    expect(reasonOf(await zone.store.getObject("batch-files", huge).catch((e: unknown) => e))).toBe("object_not_found");
    for (const header of [{ mediaType: huge }, { mediaType: "text/plain", fileName: huge }, { mediaType: "text/plain\r\nX-Injected: 1" }, { mediaType: "text/plain", fileName: "a\nb.pdf" }]) {
      const refused = await zone.store.putObject({ bucket: "batch-files", key: "huge-meta", ...header }, bytes("x")).catch((e: unknown) => e);
      expect((refused as ConnectError).code).toBe(Code.InvalidArgument);
      expect(reasonOf(refused)).toBe("invalid_field");
    }
    expect(await zone.store.statObject("batch-files", "huge-meta")).toBeUndefined();
  });

  it("detects a corrupted stored chunk on read", async () => {
    const ref = await zone.store.putObject({ bucket: "batch-files", key: "tampered.bin", mediaType: "application/octet-stream" }, content(600 * 1024, 3, 64 * 1024));
    // Rewrite the object's second chunk in place on the server: same subject, different bytes.
    const nc = await connect({ servers: zone.server.url });
    const jsm = await jetstreamManager(nc, { domain: "plant-a" });
    const js = jetstream(nc, { domain: "plant-a" });
    // 12 bytes of name encode to base64url without padding, as Object Store names them.
    const meta = await jsm.streams.getMessage("OBJ_batch-files", { last_by_subj: `$O.batch-files.M.${Buffer.from("tampered.bin").toString("base64url")}` });
    const { nuid } = meta!.json<{ nuid: string }>();
    const chunkSubject = `$O.batch-files.C.${nuid}`;
    const chunks = await jsm.streams.info("OBJ_batch-files", { subjects_filter: chunkSubject });
    expect(chunks.state.subjects?.[chunkSubject]).toBe(5);
    // The server answers "next message on subject from seq"; nats.js v3 only types it for direct get.
    const nextOnSubject = (seq: number) => jsm.streams.getMessage("OBJ_batch-files", { next_by_subj: chunkSubject, seq } as unknown as MsgRequest);
    const first = await nextOnSubject(1);
    const second = await nextOnSubject(first!.seq + 1);
    await jsm.streams.deleteMessage("OBJ_batch-files", second!.seq);
    const flipped = Buffer.from(second!.data);
    flipped[100] = flipped[100]! ^ 0xff;
    await js.publish(chunkSubject, flipped);
    await nc.close();

    const reader = await zone.store.getObject("batch-files", "tampered.bin");
    expect(reader.object.digest).toBe(ref.digest);
    const error = await digestOf(reader.chunks).catch((e: unknown) => e);
    expect((error as ConnectError).code).toBe(Code.DataLoss);
    expect(reasonOf(error)).toBe("object_corrupted");
  });
});

describe("artifacts: bounded per object and per bucket", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({ buckets: { "batch-files": { maxBytes: "4MiB" } }, limits: { maxObjectBytes: "2MiB" } });
  });
  afterAll(() => zone.dispose());

  const put = (key: string, size: number, declared: boolean) =>
    zone.store.putObject({ bucket: "batch-files", key, mediaType: "application/octet-stream", ...(declared ? { size } : {}) }, content(size, size, 256 * 1024));
  const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as ConnectError);

  it("refuses an object larger than storage.limits.maxObjectBytes, declared or not, and stores none of it", async () => {
    const kept = await put("kept.bin", MiB, true);
    for (const declared of [true, false]) {
      const err = await refusal(put(`too-large-${declared}.bin`, 2 * MiB + 1024, declared));
      expect(err).toBeInstanceOf(ConnectError);
      expect([err!.code, reasonOf(err)], err!.rawMessage).toEqual([Code.InvalidArgument, "object_too_large"]);
      expect(await zone.store.statObject("batch-files", `too-large-${declared}.bin`)).toBeUndefined();
    }
    // Up to the limit is fine; what was stored before is untouched.
    expect(await zone.store.statObject("batch-files", "kept.bin")).toEqual(kept);
  });

  it("answers a full bucket resource_exhausted, and loses nothing already stored", async () => {
    const first = await put("first.bin", 2 * MiB - 1, true);
    // 1 MiB (above) + 2 MiB now in a bucket of 4 MiB (chunk headers included): the next one cannot fit,
    // so the refused uploads above left nothing behind.
    const err = await refusal(put("second.bin", 2 * MiB - 1, true));
    expect([err?.code, reasonOf(err)]).toEqual([Code.ResourceExhausted, "store_full"]);
    expect(await zone.store.statObject("batch-files", "second.bin")).toBeUndefined();
    const reader = await zone.store.getObject("batch-files", "first.bin");
    expect((await digestOf(reader.chunks)).digest).toBe(first.digest);
  });
});

describe("artifacts: every bucket has a capacity", () => {
  it("gives a bucket the default capacity, and one made without a capacity gets it only when reconciling", async () => {
    const zone = await startTestZone({ buckets: { "batch-files": {}, "legacy-files": { maxBytes: "8MiB" } } });
    try {
      const jsm = await jetstreamManager(zone.store.connection, { domain: "plant-a" });
      expect((await jsm.streams.info("OBJ_batch-files")).config.max_bytes).toBe(2 ** 30);
      // What a gateway before the default left behind: a bucket without max_bytes.
      await jsm.streams.update("OBJ_legacy-files", { ...(await jsm.streams.info("OBJ_legacy-files")).config, max_bytes: -1 });
      const refused = await zone.open().then(() => undefined, (e: unknown) => e as ConnectError);
      expect([refused?.code, reasonOf(refused)]).toEqual([Code.FailedPrecondition, "topology_mismatch"]);
      expect(refused!.rawMessage).toMatch(/OBJ_legacy-files.*max_bytes.*reconcileTopology/);
      const reconciled = await openZoneStore({ ...zone.store.config, reconcileTopology: true }, { servers: zone.server.url });
      await reconciled.close();
      expect((await jsm.streams.info("OBJ_legacy-files")).config.max_bytes).toBe(8 * MiB);
    } finally {
      await zone.dispose();
    }
  });
});
