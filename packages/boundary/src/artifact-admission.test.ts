import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { AppendStatus, errorInfoOf, reasonOf } from "@bsfg/proto";
import { producedFact, rejectionOf, startTestZoneServices, type TestZoneServices } from "./test-support.js";

const sha256 = (content: Buffer) => `sha256:${createHash("sha256").update(content).digest("hex")}`;

/** A producer's fact that references an artifact, as the contract spells it. */
function artifactFact(n: number, ref: { bucket?: string; key: string; digest: string; size: number }) {
  const base = producedFact(n);
  const object = { bucket: ref.bucket ?? "batch-files", key: ref.key, digest: ref.digest, size: ref.size, media_type: "application/pdf", file_name: "record.pdf" };
  return {
    envelope: { ...base.envelope, objectMediaType: "application/pdf" },
    fact: { subject: base.fact.subject, predicate: "record_attached", objectJson: JSON.stringify(object) },
  };
}

describe.each(["connect", "grpc"] as const)("AppendFact admits a fact only with its artifact stored (%s)", (protocol) => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
  });
  afterAll(() => zone.dispose());

  const content = Buffer.from(`%PDF-1.7 batch record for ${protocol}`);
  const key = `${protocol}/admission/B1042.pdf`;

  it("refuses a fact whose artifact was never stored with artifact_missing, naming the reference, and writes nothing of the batch", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const plain = producedFact(1);
    const missing = artifactFact(2, { key: `${protocol}/admission/never-stored.pdf`, digest: sha256(content), size: content.byteLength });
    const error = await rejectionOf(producer.appendFacts([plain, missing]));
    expect([error.code, reasonOf(error)]).toEqual([Code.FailedPrecondition, "artifact_missing"]);
    expect(errorInfoOf(error)?.metadata).toMatchObject({
      index: "1", message_id: missing.envelope.messageId,
      bucket: "batch-files", key: `${protocol}/admission/never-stored.pdf`, expected_digest: sha256(content), expected_size: String(content.byteLength),
    });
    expect(error.rawMessage).toMatch(/PutObject before appending/);
    // The whole batch was refused: its other fact was not written.
    expect((await producer.appendFacts([plain]))[0]!.status).toBe(AppendStatus.APPENDED);
    expect(zone.logs).toContainEqual(expect.objectContaining({ event: "rejected", reason: "artifact_missing", message_id: missing.envelope.messageId, key: `${protocol}/admission/never-stored.pdf` }));
  });

  it("refuses a reference into a bucket this zone does not have with artifact_missing", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const error = await rejectionOf(producer.appendFact(artifactFact(3, { bucket: "no-such-bucket", key, digest: sha256(content), size: content.byteLength })));
    expect([error.code, reasonOf(error)]).toEqual([Code.FailedPrecondition, "artifact_missing"]);
    expect(errorInfoOf(error)?.metadata.bucket).toBe("no-such-bucket");
  });

  it("refuses a reference with another digest or size than the stored object's, naming the reference and not what is stored", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const stored = await producer.putObject({ bucket: "batch-files", key, mediaType: "application/pdf", fileName: "record.pdf" }, content);

    const other = sha256(Buffer.from("another record"));
    const wrongDigest = artifactFact(4, { key, digest: other, size: content.byteLength });
    const digestError = await rejectionOf(producer.appendFact(wrongDigest));
    expect([digestError.code, reasonOf(digestError)]).toEqual([Code.FailedPrecondition, "artifact_digest_mismatch"]);
    expect(errorInfoOf(digestError)?.metadata).toMatchObject({
      index: "0", message_id: wrongDigest.envelope.messageId, bucket: "batch-files", key,
      expected_digest: other, expected_size: String(content.byteLength),
    });
    // The stored object's digest and size are not told: the producer may not read the bucket.
    expect(errorInfoOf(digestError)?.metadata).not.toHaveProperty("found_digest");
    expect(digestError.rawMessage).not.toContain(stored.digest);

    const wrongSize = artifactFact(5, { key, digest: stored.digest, size: content.byteLength + 1 });
    const sizeError = await rejectionOf(producer.appendFact(wrongSize));
    expect([sizeError.code, reasonOf(sizeError)]).toEqual([Code.FailedPrecondition, "artifact_size_mismatch"]);
    expect(errorInfoOf(sizeError)?.metadata).toMatchObject({
      message_id: wrongSize.envelope.messageId, expected_digest: stored.digest, expected_size: String(content.byteLength + 1),
    });
    expect(errorInfoOf(sizeError)?.metadata).not.toHaveProperty("found_size");
  });

  it("appends facts that reference an artifact stored first with PutObject, several facts one artifact", async () => {
    const producer = zone.client("mes-producer", { protocol });
    const stored = await producer.putObject({ bucket: "batch-files", key, mediaType: "application/pdf", fileName: "record.pdf" }, content);
    const ref = { key, digest: stored.digest, size: Number(stored.size) };
    const results = await producer.appendFacts([artifactFact(6, ref), producedFact(7), artifactFact(8, ref)]);
    expect(results.map((r) => r.status)).toEqual([AppendStatus.APPENDED, AppendStatus.APPENDED, AppendStatus.APPENDED]);
  });
});
