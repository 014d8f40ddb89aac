import { describe, expect, it } from "vitest";
import { Code, ConnectError, reasonOf, errorInfoOf } from "@bsfg/proto";
import { parseStorageConfig } from "./config.js";
import { factMessage } from "./test-support.js";
import { prepareBatch } from "./validate.js";

const cfg = parseStorageConfig({
  zone: "plant-a",
  zones: ["enterprise"],
  routing: [{ kind: "document", stream: "documents" }, { predicate: "signature_recorded", stream: "audit" }],
  limits: { maxFactBytes: 2048, maxBatchMessages: 10, maxBatchBytes: 8192 },
});

function rejected(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error("expected a rejection");
}

describe("prepareBatch", () => {
  it("routes by kind and predicate, first rule wins, default operational", () => {
    const [doc, audit, op] = prepareBatch(cfg, [
      factMessage({ subject: "document:SOP-7", predicate: "signature_recorded" }),
      factMessage({ subject: "batch:B1", predicate: "signature_recorded" }),
      factMessage({ subject: "batch:PlantA/B1042" }),
    ]);
    expect([doc!.stream, doc!.subject]).toEqual(["documents", "facts.documents.document"]);
    expect([audit!.stream, audit!.subject]).toEqual(["audit", "facts.audit.batch"]);
    expect([op!.stream, op!.subject]).toEqual(["operational", "facts.operational.batch"]);
  });

  it("gives key-order variants the same identity and value changes a different one", () => {
    const [a, b, c] = prepareBatch(cfg, [
      factMessage({ id: "m", objectJson: '{"b":1,"a":2}' }),
      factMessage({ id: "m", objectJson: '{ "a": 2, "b": 1 }' }),
      factMessage({ id: "m", objectJson: '{"a":2,"b":3}' }),
    ]);
    expect(a!.hash).toBe(b!.hash);
    expect(a!.hash).not.toBe(c!.hash);
  });

  it.each([
    ["subject without kind", { subject: "B1042" }, "invalid_subject"],
    ["subject with uppercase kind", { subject: "Batch:B1" }, "invalid_subject"],
    ["subject with two scopes", { subject: "batch:a/b/c" }, "invalid_subject"],
    ["subject with spaces", { subject: "batch:B 1" }, "invalid_subject"],
    ["camelCase predicate", { predicate: "stepCompleted" }, "invalid_predicate"],
    ["predicate with double underscore", { predicate: "step__completed" }, "invalid_predicate"],
    ["broken JSON", { objectJson: '{"a":' }, "invalid_json"],
    ["JSON object with a key twice", { objectJson: '{"result":"ok","result":"scrap"}' }, "inexact_json"],
    ["unknown from_zone", { fromZone: "mars" }, "unknown_zone"],
    ["unknown to_zone", { toZone: "venus" }, "unknown_zone"],
    ["missing message_id", { id: "" }, "missing_field"],
    ["message_id with spaces", { id: "a b" }, "invalid_field"],
    ["missing produced_at", { producedAt: 0n }, "missing_field"],
    ["oversize fact", { object: { blob: "x".repeat(4096) } }, "fact_too_large"],
    ["artifact ref without media type", { object: { bucket: "batch-files", key: "k", digest: `sha256:${"a".repeat(64)}`, size: 1, media_type: "application/pdf" } }, "invalid_artifact_ref"],
    ["artifact ref with a bad digest", { object: { bucket: "batch-files", key: "k", digest: "md5:abc", size: 1, media_type: "application/pdf" } }, "invalid_artifact_ref"],
  ] as const)("rejects a %s with invalid_argument / %s", (_name, overrides, reason) => {
    const err = rejected(() => prepareBatch(cfg, [factMessage(), factMessage(overrides)]));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(reasonOf(err)).toBe(reason);
    expect(errorInfoOf(err)?.metadata.index).toBe("1");
  });

  it.each([
    ["2^53", '{"n":9007199254740992}', "$.n", "integer_out_of_range"],
    ["-2^53-1", '{"n":-9007199254740993}', "$.n", "integer_out_of_range"],
    ["9007199254740993", '{"readings":[{"value":1},{"value":2},{"value":3},{"value":9007199254740993}]}', "$.readings[3].value", "integer_out_of_range"],
    ["1e400", '{"x":1e400}', "$.x", "number_overflow"],
    ["-1e400", '{"a":{"b":[0,-1e400]}}', "$.a.b[1]", "number_overflow"],
    ["an escaped lone surrogate", '{"note":"\\ud800"}', "$.note", "lone_surrogate"],
    ["a key with a lone surrogate", '{"k\\udfff":true}', '$["k\\udfff"]', "lone_surrogate"],
    ["a key twice", '{"result":"ok","step":{"n":1,"n":2}}', "$.step.n", "duplicate_key"],
  ])("refuses a payload holding %s with invalid_argument / inexact_json and its path", (_name, objectJson, path, problem) => {
    const message = factMessage({ id: "exact-1", objectJson });
    const err = rejected(() => prepareBatch(cfg, [factMessage(), message]));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(reasonOf(err)).toBe("inexact_json");
    expect(errorInfoOf(err)?.metadata).toEqual({ index: "1", field: "fact.object_json", message_id: "exact-1", path, problem });
    expect(err.rawMessage).toContain(path);
  });

  it("accepts a well-formed artifact reference", () => {
    const msg = factMessage({ subject: "batch:B1", predicate: "record_attached", object: { bucket: "batch-files", key: "B1/record.pdf", digest: `sha256:${"0".repeat(64)}`, size: 10, media_type: "application/pdf" } });
    msg.envelope!.objectMediaType = "application/pdf";
    expect(prepareBatch(cfg, [msg])).toHaveLength(1);
  });

  it("stores object_json canonicalized", () => {
    const [p] = prepareBatch(cfg, [factMessage({ objectJson: '{ "z": [1, 2.50], "a": "x" }' })]);
    expect(new TextDecoder().decode(p!.payload)).toContain('{"a":"x","z":[1,2.5]}');
  });

  it("rejects empty and oversize batches", () => {
    expect(reasonOf(rejected(() => prepareBatch(cfg, [])))).toBe("empty_batch");
    expect(reasonOf(rejected(() => prepareBatch(cfg, Array.from({ length: 11 }, () => factMessage()))))).toBe("batch_too_large");
    const big = Array.from({ length: 6 }, () => factMessage({ object: { blob: "y".repeat(1500) } }));
    expect(reasonOf(rejected(() => prepareBatch(cfg, big)))).toBe("batch_too_large");
  });
});

describe("parseStorageConfig", () => {
  it("explains every problem with its path", () => {
    expect(() => parseStorageConfig({ zone: "plant a", streams: { operational: { maxAge: "7 days" } } }))
      .toThrow(/zone: a zone name[\s\S]*streams\.operational\.maxAge: write a duration/);
    expect(() => parseStorageConfig({ zone: "plant-a", routing: [{ kind: "batch", stream: "nope" }] }))
      .toThrow(/routing\.0\.stream: stream "nope" is not configured \(streams: operational, audit, documents\)/);
  });

  it("reads human units and adds the zone itself to the known zones", () => {
    const parsed = parseStorageConfig({ zone: "plant-a", streams: { operational: { maxAge: "12h", maxBytes: "512MiB" } } });
    expect(parsed.streams.operational).toEqual({ maxAge: 12 * 3_600_000, maxBytes: 512 * 2 ** 20 });
    expect(parsed.zones).toEqual(["plant-a"]);
  });
});
