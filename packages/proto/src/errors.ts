import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "./gen/bsfg/v1/fact_pb.js";

/**
 * Machine-readable rejection reasons. Each is part of the contract: clients
 * branch on them, dashboards count by them. Add, never rename.
 */
export const Reason = {
  // invalid_argument
  MissingField: "missing_field",
  InvalidField: "invalid_field",
  InvalidSubject: "invalid_subject",
  InvalidPredicate: "invalid_predicate",
  InvalidJson: "invalid_json",
  /** object_json holds a value JSON cannot carry exactly between implementations (I-JSON, RFC 7493); metadata `path`, `problem`. */
  InexactJson: "inexact_json",
  InvalidArtifactRef: "invalid_artifact_ref",
  UnknownZone: "unknown_zone",
  FactTooLarge: "fact_too_large",
  /** PutObject or a relayed artifact copy: the object exceeds the zone's storage.limits.maxObjectBytes. */
  ObjectTooLarge: "object_too_large",
  BatchTooLarge: "batch_too_large",
  EmptyBatch: "empty_batch",
  DigestMismatch: "digest_mismatch",
  SizeMismatch: "size_mismatch",
  /** The request's bytes are no message of the method's type: protobuf that does not decode, JSON that is not of the type or not UTF-8, a broken envelope. */
  MalformedRequest: "malformed_request",
  // already_exists
  ConflictingDuplicate: "conflicting_duplicate",
  ConflictingObject: "conflicting_object",
  // not_found
  UnknownConsumer: "unknown_consumer",
  UnknownBucket: "unknown_bucket",
  UnknownStream: "unknown_stream",
  ObjectNotFound: "object_not_found",
  // permission_denied
  UnknownIdentity: "unknown_identity",
  FromZoneNotAllowed: "from_zone_not_allowed",
  ToZoneNotAllowed: "to_zone_not_allowed",
  ConsumerNotAllowed: "consumer_not_allowed",
  BucketNotAllowed: "bucket_not_allowed",
  // unauthenticated
  NoClientCertificate: "no_client_certificate",
  // failed_precondition
  CursorBeyondLog: "cursor_beyond_log",
  TopologyMismatch: "topology_mismatch",
  // failed_precondition: AppendFact, a fact's artifact reference does not resolve in the zone
  ArtifactMissing: "artifact_missing",
  ArtifactDigestMismatch: "artifact_digest_mismatch",
  ArtifactSizeMismatch: "artifact_size_mismatch",
  // resource_exhausted
  StoreFull: "store_full",
  /** resource_exhausted: one message of the request is larger than the method reads (see docs/protocol.md). */
  RequestTooLarge: "request_too_large",
  /** resource_exhausted: the identity already holds connections.perIdentity connections to this deployable. */
  TooManyConnections: "too_many_connections",
  // unavailable (retry-safe)
  StoreUnavailable: "store_unavailable",
  NotDurable: "not_durable",
  AppendPending: "append_pending",
  ShuttingDown: "shutting_down",
  // The quarantine's operator verbs (docs/operations.md, "Quarantine")
  /** not_found: no entry with that id. */
  QuarantineEntryNotFound: "quarantine_entry_not_found",
  /** failed_precondition: the entry was released or dropped already. */
  QuarantineEntrySettled: "quarantine_entry_settled",
  /** aborted: another operator is acting on the entry (or did, between show and act). */
  QuarantineEntryBusy: "quarantine_entry_busy",
  /** failed_precondition: release refused, the reason the fact was set aside still holds (metadata: cause). */
  QuarantineCauseHolds: "quarantine_cause_holds",
  /** permission_denied: the caller's identity may not use this operator verb. */
  OperatorNotAllowed: "operator_not_allowed",
  /** permission_denied: a probe port refused an address outside health.allowFrom. */
  ProbeNotAllowed: "probe_not_allowed",
  /** not_found: the console was asked to pause or resume a link this zone does not have. */
  UnknownLink: "unknown_link",
  // data_loss
  ObjectCorrupted: "object_corrupted",
  /** A relayed fact's bytes do not match the digest its zone served with them. */
  CorruptFact: "corrupt_fact",
} as const;

export type Reason = (typeof Reason)[keyof typeof Reason];

/** A ConnectError carrying a reason (and context) as a bsfg.v1.ErrorInfo detail. */
export function rejection(
  code: Code,
  reason: Reason,
  message: string,
  metadata: Record<string, string> = {},
): ConnectError {
  const info = create(ErrorInfoSchema, { reason, metadata: Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, capped(value, MAX_METADATA_CHARS)])) });
  return new ConnectError(capped(message, MAX_MESSAGE_CHARS), code, undefined, [{ desc: ErrorInfoSchema, value: info }]);
}

/*
 * A rejection quotes what it refuses, and a hostile input can be a megabyte: quoted whole
 * it made a megabyte of gRPC trailers (which clients refuse: the caller saw a reset stream,
 * not the error) and of log line. What is quoted is cut, saying how long it was.
 */
const MAX_MESSAGE_CHARS = 4_096;
const MAX_METADATA_CHARS = 1_024;

function capped(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** The reason of a rejection, whether raised locally or received over the wire. */
export function reasonOf(err: unknown): string | undefined {
  return errorInfoOf(err)?.reason;
}

/** The full ErrorInfo of a rejection, if it carries one. */
export function errorInfoOf(err: unknown): { reason: string; metadata: Record<string, string> } | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  const [info] = err.findDetails(ErrorInfoSchema);
  return info ? { reason: info.reason, metadata: { ...info.metadata } } : undefined;
}

export { Code, ConnectError };
