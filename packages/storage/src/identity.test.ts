import { describe, expect, it } from "vitest";
import { canonicalize, canonicalizeJsonText } from "./canonical-json.js";
import { identityDocument, legacyPayloadIdentity, payloadIdentities, payloadIdentity } from "./identity.js";
import { factMessage } from "./test-support.js";

describe("payload identity", () => {
  it("is the RFC 8785 form of the whole envelope but its clock, and the fact", () => {
    const message = factMessage({ object: { b: [1, { d: 2, c: 3 }], a: "x" } });
    message.envelope!.labels = { site: "plant-a", line: "L2" };
    message.envelope!.causationId = "cause-\u00e9";
    const object = canonicalizeJsonText(message.fact!.objectJson);
    const e = message.envelope!;
    const envelope = {
      message_id: e.messageId, from_zone: e.fromZone, to_zone: e.toZone,
      correlation_id: e.correlationId, causation_id: e.causationId, labels: e.labels, object_media_type: e.objectMediaType, object_schema: e.objectSchema,
    };
    const fact = { subject: message.fact!.subject, predicate: message.fact!.predicate, object: JSON.parse(object) as unknown };
    expect(identityDocument(message, object)).toBe(canonicalize({ envelope, fact }));
    // What gateways before the clock was left out hashed (and still find in their claims).
    expect(identityDocument(message, object, true)).toBe(canonicalize({ envelope: { ...envelope, produced_at_unix_ms: e.producedAtUnixMs.toString() }, fact }));
    expect(payloadIdentities(message, object)).toEqual({ hash: payloadIdentity(message, object), legacyHash: legacyPayloadIdentity(message, object) });
  });

  it("changes with every envelope field but produced_at_unix_ms", () => {
    const message = factMessage({ id: "same" });
    const object = canonicalizeJsonText(message.fact!.objectJson);
    const base = payloadIdentity(message, object);
    const copy = () => factMessage({ id: "same", object: JSON.parse(message.fact!.objectJson) as unknown });
    const later = factMessage({ id: "same", producedAt: message.envelope!.producedAtUnixMs + 1n, object: JSON.parse(message.fact!.objectJson) as unknown });
    expect(payloadIdentity(later, object)).toBe(base);
    expect(legacyPayloadIdentity(later, object)).not.toBe(legacyPayloadIdentity(message, object));
    const changes: Array<[string, (m: ReturnType<typeof factMessage>) => void]> = [
      ["labels", (m) => { m.envelope!.labels = { priority: "high" }; }],
      ["correlation_id", (m) => { m.envelope!.correlationId = "corr-2"; }],
      ["causation_id", (m) => { m.envelope!.causationId = "cause-2"; }],
      ["to_zone", (m) => { m.envelope!.toZone = "idmz"; }],
      ["from_zone", (m) => { m.envelope!.fromZone = "idmz"; }],
      ["object_media_type", (m) => { m.envelope!.objectMediaType = "application/pdf"; }],
      ["object_schema", (m) => { m.envelope!.objectSchema = "urn:bsfg:schema:x:v2"; }],
      ["subject", (m) => { m.fact!.subject = "batch:PlantA/B1043"; }],
      ["predicate", (m) => { m.fact!.predicate = "step_started"; }],
    ];
    for (const [field, change] of changes) {
      const changed = copy();
      change(changed);
      expect(payloadIdentity(changed, object), field).not.toBe(base);
    }
  });
});
