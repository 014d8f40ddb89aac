import { describe, expect, it } from "vitest";
import { canonicalize, canonicalizeJsonText } from "./canonical-json.js";
import { identityDocument, payloadIdentity } from "./identity.js";
import { factMessage } from "./test-support.js";

describe("payload identity", () => {
  it("is the RFC 8785 form of the whole envelope and fact", () => {
    const message = factMessage({ object: { b: [1, { d: 2, c: 3 }], a: "x" } });
    message.envelope!.labels = { site: "plant-a", line: "L2" };
    const object = canonicalizeJsonText(message.fact!.objectJson);
    const e = message.envelope!;
    const expected = canonicalize({
      envelope: {
        message_id: e.messageId, from_zone: e.fromZone, to_zone: e.toZone, produced_at_unix_ms: e.producedAtUnixMs.toString(),
        correlation_id: e.correlationId, causation_id: e.causationId, labels: e.labels, object_media_type: e.objectMediaType, object_schema: e.objectSchema,
      },
      fact: { subject: message.fact!.subject, predicate: message.fact!.predicate, object: JSON.parse(object) as unknown },
    });
    expect(identityDocument(message, object)).toBe(expected);
  });

  it("changes with any envelope field", () => {
    const message = factMessage({ id: "same" });
    const object = canonicalizeJsonText(message.fact!.objectJson);
    const base = payloadIdentity(message, object);
    const relabelled = factMessage({ id: "same", object: JSON.parse(message.fact!.objectJson) as unknown });
    relabelled.envelope!.labels = { priority: "high" };
    expect(payloadIdentity(relabelled, object)).not.toBe(base);
    const later = factMessage({ id: "same", producedAt: message.envelope!.producedAtUnixMs + 1n, object: JSON.parse(message.fact!.objectJson) as unknown });
    expect(payloadIdentity(later, object)).not.toBe(base);
  });
});
