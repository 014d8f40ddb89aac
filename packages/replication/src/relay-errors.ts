import { ConnectError } from "@connectrpc/connect";
import { Reason, reasonOf } from "@bsfg/proto";

/**
 * What the relay does with an error it meets:
 *  - "set_aside": the fact can never be admitted as it is. It is parked in the
 *    zone's quarantine, the link confirms past it and goes on (docs/operations.md,
 *    "Quarantine"); an operator releases or drops it.
 *  - "retry": the link backs off and tries the same page again. Nothing is
 *    parked; the facts behind wait, because the cause is not the fact's: the
 *    peer, the network, this zone's capacity or configuration.
 */
export type RelayErrorClass = "set_aside" | "retry";

/**
 * Every reason that marks one fact, not the link, as never admissible. A reason
 * not listed — and any error without one (a reset connection, a timeout) — is
 * retried: a wrong "retry" costs a stalled link that an operator sees in its
 * status; a wrong "set aside" would move a good fact out of the log's order.
 */
const NEVER_ADMISSIBLE: ReadonlyMap<string, string> = new Map([
  // This zone's policy does not let the peer assert the fact's origin or destination.
  [Reason.FromZoneNotAllowed, "policy"],
  [Reason.ToZoneNotAllowed, "policy"],
  [Reason.UnknownIdentity, "policy"],
  // Its artifact would be written into a bucket the relaying identity may not write (writeBuckets).
  [Reason.BucketNotAllowed, "policy"],
  // The artifact the fact references: the peer says it does not exist, or what it served
  // does not match the reference after a verified copy (or another object holds the key here).
  [Reason.ObjectNotFound, "artifact"],
  [Reason.DigestMismatch, "artifact"],
  [Reason.SizeMismatch, "artifact"],
  [Reason.ConflictingObject, "artifact"],
  // Larger than this zone takes (storage.limits.maxObjectBytes): it will not fit however often it is tried.
  [Reason.ObjectTooLarge, "artifact"],
  [Reason.InvalidArtifactRef, "envelope"],
  // The envelope or subject fails validation.
  [Reason.MissingField, "envelope"],
  [Reason.InvalidSubject, "envelope"],
  // The bytes do not match the digest served with them, or are not a fact at all.
  [Reason.CorruptFact, "integrity"],
]);

/**
 * The one place that decides retry or set aside. Only errors about a single fact
 * reach it (admission, artifact copy); a failed fetch, confirm or shipment is
 * the link's and always retried.
 */
export function classifyRelayError(err: unknown): RelayErrorClass {
  if (!(err instanceof ConnectError)) return "retry";
  const reason = reasonOf(err);
  return reason !== undefined && NEVER_ADMISSIBLE.has(reason) ? "set_aside" : "retry";
}

/** Which kind of cause a set-aside reason is (policy, artifact, envelope, integrity), for docs and logs. */
export function setAsideCause(reason: string): string | undefined {
  return NEVER_ADMISSIBLE.get(reason);
}
