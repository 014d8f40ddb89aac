import { createHash } from "node:crypto";
import type { FactMessage } from "@bsfg/proto";
import { canonicalize } from "./canonical-json.js";

/**
 * The payload identity of a message: SHA-256 over the RFC 8785 form of
 *
 *   { "envelope": { every envelope field, produced_at_unix_ms as a decimal string },
 *     "fact": { "object": <object_json as JSON>, "predicate": …, "subject": … } }
 *
 * so key order and whitespace in object_json never matter and the int64
 * timestamp survives JSON's double precision. See docs/storage.md.
 */
export function payloadIdentity(message: FactMessage, canonicalObjectJson: string): string {
  return createHash("sha256").update(identityDocument(message, canonicalObjectJson)).digest("base64url");
}

/** The canonical identity document; `canonicalObjectJson` is spliced in as is, already canonical. */
export function identityDocument(message: FactMessage, canonicalObjectJson: string): string {
  const envelope = message.envelope!;
  const fact = message.fact!;
  const canonicalEnvelope = canonicalize({
    message_id: envelope.messageId,
    from_zone: envelope.fromZone,
    to_zone: envelope.toZone,
    produced_at_unix_ms: envelope.producedAtUnixMs.toString(),
    correlation_id: envelope.correlationId,
    causation_id: envelope.causationId,
    labels: envelope.labels,
    object_media_type: envelope.objectMediaType,
    object_schema: envelope.objectSchema,
  });
  // Keys in RFC 8785 order: "envelope" < "fact"; "object" < "predicate" < "subject".
  return `{"envelope":${canonicalEnvelope},"fact":{"object":${canonicalObjectJson},"predicate":${canonicalize(fact.predicate)},"subject":${canonicalize(fact.subject)}}}`;
}

/** A short, subject-safe key for a message_id: 128 bits of its SHA-256. */
export function messageKey(messageId: string): string {
  return createHash("sha256").update(messageId).digest("base64url").slice(0, 22);
}
