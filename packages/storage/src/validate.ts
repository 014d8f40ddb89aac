import { Code, encodeFactMessage, Reason, rejection, type FactMessage } from "@bsfg/proto";
import { CanonicalJsonError, InexactJsonError, parseCanonical } from "./canonical-json.js";
import { kindPattern, type StorageConfig } from "./config.js";
import { messageKey, payloadIdentities } from "./identity.js";
import { factSubject, routeFact } from "./routing.js";

/** A message that passed validation, in the form the log stores it. */
export interface PreparedMessage {
  readonly messageId: string;
  /** envelope.from_zone: the scope of the message_id. */
  readonly fromZone: string;
  /**
   * Subject-safe key of the message_id in the dedupe index, scoped by from_zone; also the
   * fact's Nats-Msg-Id, so JetStream's duplicate window is scoped alike.
   */
  readonly key: string;
  /** Payload identity (base64url SHA-256): the fact, not the producer's clock. */
  readonly hash: string;
  /** The identity older gateways used, produced_at included (for their claims; see identity.ts). */
  readonly legacyHash: string;
  /** envelope.produced_at_unix_ms, what AppendResult reports for the fact. */
  readonly producedAt: bigint;
  /** The category (stream) it is routed to. */
  readonly stream: string;
  /** The NATS subject it is stored under (per category and kind: shared by many facts). */
  readonly subject: string;
  /** The fact's own subject ("batch:PlantA/B1042"): the unit whose order a batch keeps. */
  readonly factSubject: string;
  /** Protobuf encoding of the message with canonical object_json. */
  readonly payload: Uint8Array;
  /** W3C trace context stored with the fact as message headers; not part of its identity. */
  readonly traceContext?: Readonly<Record<string, string>> | undefined;
}

const subjectPattern = /^([a-z][a-z0-9_-]{0,63}):(?:([A-Za-z0-9][A-Za-z0-9._~@+=-]*)\/)?([A-Za-z0-9][A-Za-z0-9._~@+=-]*)$/;
const predicatePattern = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;
const messageIdPattern = /^[\x21-\x7e]{1,256}$/;
const digestPattern = /^sha256:[0-9a-f]{64}$/;
const labelKeyPattern = /^[a-z0-9]([a-z0-9._/-]{0,62})$/;
const MAX_SUBJECT = 256;
const MAX_PREDICATE = 128;
const MAX_LABELS = 32;
const MAX_TEXT = 256;

/**
 * Validates a batch and prepares it for the log. Any problem rejects the whole
 * batch with invalid_argument before anything is written.
 */
export function prepareBatch(cfg: StorageConfig, messages: readonly FactMessage[]): PreparedMessage[] {
  if (messages.length === 0) throw invalid(Reason.EmptyBatch, "the batch holds no messages");
  if (messages.length > cfg.limits.maxBatchMessages) {
    throw invalid(Reason.BatchTooLarge, `the batch holds ${messages.length} messages; the limit is ${cfg.limits.maxBatchMessages}`);
  }
  let batchBytes = 0;
  const prepared = messages.map((message, index) => {
    const p = prepareMessage(cfg, message, index);
    batchBytes += p.payload.byteLength;
    return p;
  });
  if (batchBytes > cfg.limits.maxBatchBytes) {
    throw invalid(Reason.BatchTooLarge, `the batch holds ${batchBytes} bytes; the limit is ${cfg.limits.maxBatchBytes}`);
  }
  return prepared;
}

function prepareMessage(cfg: StorageConfig, message: FactMessage, index: number): PreparedMessage {
  const at = (field: string, extra: Record<string, string> = {}) => ({ index: String(index), field, ...extra });
  const { envelope, fact } = message;
  if (!envelope) throw invalid(Reason.MissingField, `message ${index}: envelope is required`, at("envelope"));
  if (!fact) throw invalid(Reason.MissingField, `message ${index}: fact is required`, at("fact"));
  const id = envelope.messageId;
  const ctx = (field: string) => at(field, { message_id: id });

  if (id === "") throw invalid(Reason.MissingField, `message ${index}: envelope.message_id is required`, at("envelope.message_id"));
  if (!messageIdPattern.test(id)) {
    throw invalid(Reason.InvalidField, `message ${index}: envelope.message_id must be 1–256 printable ASCII characters without spaces`, at("envelope.message_id"));
  }
  for (const field of ["fromZone", "toZone"] as const) {
    const name = field === "fromZone" ? "envelope.from_zone" : "envelope.to_zone";
    const zone = envelope[field];
    if (zone === "") throw invalid(Reason.MissingField, `message ${index} (${id}): ${name} is required`, ctx(name));
    if (!cfg.zones.includes(zone)) {
      throw invalid(Reason.UnknownZone, `message ${index} (${id}): ${name} "${zone}" is not a zone of this estate (${cfg.zones.join(", ")})`, ctx(name));
    }
  }
  if (envelope.producedAtUnixMs <= 0n) {
    throw invalid(Reason.MissingField, `message ${index} (${id}): envelope.produced_at_unix_ms is required`, ctx("envelope.produced_at_unix_ms"));
  }
  for (const [field, value] of [["correlation_id", envelope.correlationId], ["causation_id", envelope.causationId], ["object_media_type", envelope.objectMediaType], ["object_schema", envelope.objectSchema]] as const) {
    if (value.length > MAX_TEXT) throw invalid(Reason.InvalidField, `message ${index} (${id}): envelope.${field} is longer than ${MAX_TEXT} characters`, ctx(`envelope.${field}`));
  }
  const labels = Object.entries(envelope.labels);
  if (labels.length > MAX_LABELS) throw invalid(Reason.InvalidField, `message ${index} (${id}): at most ${MAX_LABELS} labels`, ctx("envelope.labels"));
  for (const [key, value] of labels) {
    if (!labelKeyPattern.test(key) || value.length > MAX_TEXT) {
      throw invalid(Reason.InvalidField, `message ${index} (${id}): label "${key}" must be a lowercase key of up to 63 characters with a value of up to ${MAX_TEXT}`, ctx("envelope.labels"));
    }
  }

  const match = fact.subject.length <= MAX_SUBJECT ? subjectPattern.exec(fact.subject) : null;
  if (!match) {
    throw invalid(Reason.InvalidSubject, `message ${index} (${id}): fact.subject "${fact.subject}" must be "kind:id" or "kind:scope/id" (kind a lowercase noun, at most ${MAX_SUBJECT} characters)`, ctx("fact.subject"));
  }
  const kind = match[1]!;
  if (!kindPattern.test(kind)) throw invalid(Reason.InvalidSubject, `message ${index} (${id}): subject kind "${kind}" is not a lowercase noun`, ctx("fact.subject"));
  if (fact.predicate.length > MAX_PREDICATE || !predicatePattern.test(fact.predicate)) {
    throw invalid(Reason.InvalidPredicate, `message ${index} (${id}): fact.predicate "${fact.predicate}" must be lower_snake_case`, ctx("fact.predicate"));
  }
  let parsed: { value: unknown; canonical: string };
  try {
    parsed = parseCanonical(fact.objectJson);
  } catch (err) {
    if (err instanceof InexactJsonError) {
      const { path, problem } = err.inexact;
      throw invalid(Reason.InexactJson, `message ${index} (${id}): fact.object_json: ${err.message}`, { ...ctx("fact.object_json"), path, problem });
    }
    if (!(err instanceof CanonicalJsonError)) throw err;
    throw invalid(Reason.InvalidJson, `message ${index} (${id}): fact.object_json is ${err.message}`, ctx("fact.object_json"));
  }
  const objectJson = parsed.canonical;
  checkArtifactRef(parsed.value, envelope.objectMediaType, index, id);

  const canonical: FactMessage = objectJson === fact.objectJson ? message : { ...message, fact: { ...fact, objectJson } };
  const payload = encodeFactMessage(canonical);
  if (payload.byteLength > cfg.limits.maxFactBytes) {
    throw invalid(Reason.FactTooLarge, `message ${index} (${id}): ${payload.byteLength} bytes; the limit is ${cfg.limits.maxFactBytes}`, ctx("fact"));
  }
  const stream = routeFact(cfg, kind, fact.predicate);
  const { hash, legacyHash } = payloadIdentities(canonical, objectJson);
  return {
    messageId: id,
    fromZone: envelope.fromZone,
    key: messageKey(envelope.fromZone, id),
    hash,
    legacyHash,
    producedAt: envelope.producedAtUnixMs,
    stream,
    subject: factSubject(stream, kind),
    factSubject: fact.subject,
    payload,
  };
}

/**
 * A fact references an artifact when its object has bucket, key and digest.
 * Then the whole reference must be well formed and the envelope must name the
 * media type, so receivers can copy and verify the artifact before the fact.
 */
function checkArtifactRef(object: unknown, envelopeMediaType: string, index: number, id: string): void {
  const isRecord = typeof object === "object" && object !== null && !Array.isArray(object);
  const ref = isRecord ? (object as Record<string, unknown>) : {};
  const looksLikeRef = isRecord && "bucket" in ref && "key" in ref && "digest" in ref;
  if (!looksLikeRef) {
    if (envelopeMediaType !== "") {
      throw invalid(Reason.InvalidArtifactRef, `message ${index} (${id}): envelope.object_media_type is set but fact.object_json has no artifact reference (bucket, key, digest, size, media_type)`, { index: String(index), message_id: id, field: "fact.object_json" });
    }
    return;
  }
  const problems: string[] = [];
  if (typeof ref.bucket !== "string" || ref.bucket === "") problems.push("bucket must be a non-empty string");
  if (typeof ref.key !== "string" || ref.key === "") problems.push("key must be a non-empty string");
  if (typeof ref.digest !== "string" || !digestPattern.test(ref.digest)) problems.push('digest must be "sha256:<64 lowercase hex>"');
  if (typeof ref.size !== "number" || !Number.isSafeInteger(ref.size) || ref.size < 0) problems.push("size must be a non-negative integer");
  if (typeof ref.media_type !== "string" || ref.media_type === "") problems.push("media_type must be a non-empty string");
  if (envelopeMediaType === "") problems.push("envelope.object_media_type is required for a fact that references an artifact");
  else if (ref.media_type !== envelopeMediaType) problems.push(`envelope.object_media_type "${envelopeMediaType}" differs from media_type "${String(ref.media_type)}"`);
  if (problems.length > 0) {
    throw invalid(Reason.InvalidArtifactRef, `message ${index} (${id}): artifact reference: ${problems.join("; ")}`, { index: String(index), message_id: id, field: "fact.object_json" });
  }
}

function invalid(reason: Reason, message: string, metadata: Record<string, string> = {}) {
  return rejection(Code.InvalidArgument, reason, message, metadata);
}
