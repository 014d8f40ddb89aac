import * as crypto from "node:crypto";
import type { FactMessage } from "@bsfg/proto";
import { canonicalize } from "./canonical-json.js";

/**
 * The payload identity of a message: SHA-256 over the RFC 8785 form of
 *
 *   { "envelope": { every envelope field but produced_at_unix_ms },
 *     "fact": { "object": <object_json as JSON>, "predicate": …, "subject": … } }
 *
 * so key order and whitespace in object_json never matter, and a retry that
 * stamps the producer's clock anew is the same fact. See docs/protocol.md, "Identity".
 */
export function payloadIdentity(message: FactMessage, canonicalObjectJson: string): string {
  return sha256(identityDocument(message, canonicalObjectJson));
}

/**
 * The identity gateways before the clock was left out stored in their claims (`h`):
 * the same document with produced_at_unix_ms as a decimal string. Still written
 * into every claim, so a gateway of that version answers a retry of a fact claimed
 * here during a rolling upgrade, and compared with their claims (dedupe-index.ts).
 */
export function legacyPayloadIdentity(message: FactMessage, canonicalObjectJson: string): string {
  return sha256(identityDocument(message, canonicalObjectJson, true));
}

/** Both identities of a message at once (validation needs both for every fact). */
export function payloadIdentities(message: FactMessage, canonicalObjectJson: string): { hash: string; legacyHash: string } {
  const [head, clock, tail] = documentParts(message, canonicalObjectJson);
  return { hash: sha256(head + tail), legacyHash: sha256(head + clock + tail) };
}

/** The canonical identity document; `canonicalObjectJson` is spliced in as is, already canonical. */
export function identityDocument(message: FactMessage, canonicalObjectJson: string, withClock = false): string {
  const [head, clock, tail] = documentParts(message, canonicalObjectJson);
  return withClock ? head + clock + tail : head + tail;
}

/** The document before produced_at_unix_ms, that member, and the rest. */
function documentParts(message: FactMessage, canonicalObjectJson: string): [string, string, string] {
  const envelope = message.envelope!;
  const fact = message.fact!;
  // The envelope's keys written out in RFC 8785 order (identity.test.ts holds this to the
  // generic canonicalize): sorting them for every fact cost more than hashing it.
  const head = `{"envelope":{"causation_id":${canonicalize(envelope.causationId)},"correlation_id":${canonicalize(envelope.correlationId)}`
    + `,"from_zone":${canonicalize(envelope.fromZone)},"labels":${canonicalize(envelope.labels)},"message_id":${canonicalize(envelope.messageId)}`
    + `,"object_media_type":${canonicalize(envelope.objectMediaType)},"object_schema":${canonicalize(envelope.objectSchema)}`;
  const clock = `,"produced_at_unix_ms":${canonicalize(envelope.producedAtUnixMs.toString())}`;
  // Keys in RFC 8785 order: "envelope" < "fact"; "object" < "predicate" < "subject".
  const tail = `,"to_zone":${canonicalize(envelope.toZone)}},"fact":{"object":${canonicalObjectJson},"predicate":${canonicalize(fact.predicate)},"subject":${canonicalize(fact.subject)}}}`;
  return [head, clock, tail];
}

/**
 * The dedupe key of a message: 128 bits of the SHA-256 of its from_zone and message_id,
 * subject-safe. Scoped by from_zone so that a producer cannot claim another zone's ids
 * (docs/protocol.md, "Whose message_id"); "s." marks it scoped.
 */
export function messageKey(fromZone: string, messageId: string): string {
  return `s.${sha256(`${fromZone}\n${messageId}`).slice(0, 22)}`;
}

/** The key gateways before the scoped key gave a message_id, zone-wide ("c."): their claims are honoured until they age out. */
export function unscopedMessageKey(messageId: string): string {
  return `c.${sha256(messageId).slice(0, 22)}`;
}

/**
 * SHA-256 as base64url. crypto.hash (Node ≥ 20.12) is about 3× faster than createHash
 * for inputs this short; the fallback keeps Node 20.11 working.
 */
const sha256: (data: string) => string = typeof crypto.hash === "function"
  ? (data) => crypto.hash("sha256", data, "base64url")
  : (data) => crypto.createHash("sha256").update(data).digest("base64url");
