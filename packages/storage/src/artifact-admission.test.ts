import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppendStatus, Code, ConnectError, errorInfoOf, reasonOf, type FactMessage, type ObjectRef } from "@bsfg/proto";
import { admitArtifacts } from "./artifact-admission.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";

const bytes = (text: string) => (async function* () { yield Buffer.from(text); })();

function referencing(ref: Pick<ObjectRef, "bucket" | "key" | "digest"> & { size: number }): FactMessage {
  const message = factMessage({ subject: "batch:B1", predicate: "record_attached", object: { ...ref, media_type: "application/pdf" } });
  message.envelope!.objectMediaType = "application/pdf";
  return message;
}

describe("artifact admission: a fact's artifact is stored as referenced before the fact", () => {
  let zone: TestZone;
  let stored: ObjectRef;
  beforeAll(async () => {
    zone = await startTestZone({ buckets: { "batch-files": {} } });
    stored = await zone.store.putObject({ bucket: "batch-files", key: "B1/record.pdf", mediaType: "application/pdf" }, bytes("%PDF-1.7 record"));
  });
  afterAll(() => zone.dispose());

  it("reads each distinct bucket/key of a batch once, and lets facts without a reference through unread", async () => {
    const seen: string[] = [];
    const stat = (bucket: string, key: string) => {
      seen.push(`${bucket}/${key}`);
      return zone.store.statObject(bucket, key);
    };
    const ref = { bucket: "batch-files", key: "B1/record.pdf", digest: stored.digest, size: Number(stored.size) };
    await admitArtifacts("plant-a", [referencing(ref), factMessage(), referencing(ref), referencing(ref)], stat);
    expect(seen).toEqual(["batch-files/B1/record.pdf"]);
    await admitArtifacts("plant-a", [factMessage(), factMessage()], stat);
    expect(seen).toHaveLength(1);
  });

  it("refuses the batch at its first unresolved fact, counting the others", async () => {
    const ok = { bucket: "batch-files", key: "B1/record.pdf", digest: stored.digest, size: Number(stored.size) };
    const batch = [referencing(ok), referencing({ ...ok, key: "B1/missing.pdf" }), referencing({ ...ok, size: 1 })];
    const error = await admitArtifacts("plant-a", batch, (bucket, key) => zone.store.statObject(bucket, key)).then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(ConnectError);
    expect([(error as ConnectError).code, reasonOf(error)]).toEqual([Code.FailedPrecondition, "artifact_missing"]);
    expect(errorInfoOf(error)?.metadata).toMatchObject({ index: "1", key: "B1/missing.pdf" });
    expect((error as ConnectError).rawMessage).toMatch(/1 more fact/);
  });

  it("appends nothing through the store when a reference does not resolve", async () => {
    const missing = referencing({ bucket: "batch-files", key: "B1/never.pdf", digest: stored.digest, size: Number(stored.size) });
    const plain = factMessage();
    const error = await zone.store.append([plain, missing]).then(() => undefined, (err: unknown) => err);
    expect(reasonOf(error)).toBe("artifact_missing");
    const [result] = await zone.store.append([plain]);
    expect(result!.status).toBe(AppendStatus.APPENDED);
  });
});
