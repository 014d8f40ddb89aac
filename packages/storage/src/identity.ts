import * as crypto from "node:crypto";
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
  return sha256(identityDocument(message, canonicalObjectJson));
}

/** The canonical identity document; `canonicalObjectJson` is spliced in as is, already canonical. */
export function identityDocument(message: FactMessage, canonicalObjectJson: string): string {
  const envelope = message.envelope!;
  const fact = message.fact!;
  // The envelope's keys written out in RFC 8785 order (identity.test.ts holds this to the
  // generic canonicalize): sorting them for every fact cost more than hashing it.
  const canonicalEnvelope = `{"causation_id":${canonicalize(envelope.causationId)},"correlation_id":${canonicalize(envelope.correlationId)}`
    + `,"from_zone":${canonicalize(envelope.fromZone)},"labels":${canonicalize(envelope.labels)},"message_id":${canonicalize(envelope.messageId)}`
    + `,"object_media_type":${canonicalize(envelope.objectMediaType)},"object_schema":${canonicalize(envelope.objectSchema)}`
    + `,"produced_at_unix_ms":${canonicalize(envelope.producedAtUnixMs.toString())},"to_zone":${canonicalize(envelope.toZone)}}`;
  // Keys in RFC 8785 order: "envelope" < "fact"; "object" < "predicate" < "subject".
  return `{"envelope":${canonicalEnvelope},"fact":{"object":${canonicalObjectJson},"predicate":${canonicalize(fact.predicate)},"subject":${canonicalize(fact.subject)}}}`;
}

/** A short, subject-safe key for a message_id: 128 bits of its SHA-256. */
export function messageKey(messageId: string): string {
  return sha256(messageId).slice(0, 22);
}

/**
 * SHA-256 as base64url. crypto.hash (Node ≥ 20.12) is about 3× faster than createHash
 * for inputs this short; the fallback keeps Node 20.11 working.
 */
const sha256: (data: string) => string = typeof crypto.hash === "function"
  ? (data) => crypto.hash("sha256", data, "base64url")
  : (data) => crypto.createHash("sha256").update(data).digest("base64url");
