import { timingSafeEqual } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Policy } from "@bsfg/config";
import { factHeadOf, FactMessageSchema, Reason, rejection, type FactHead, type FetchFactsPage, type StoredFactBytes } from "@bsfg/proto";
import { messageDigest } from "@bsfg/storage";
import { artifactRefOf, type ArtifactRef } from "./artifact-copy.js";

/** A fetched fact this zone takes, with what routing it needed read from its bytes. */
export interface AdmittedFact {
  /** As the peer served it: offset, the stored bytes, stream, stored time, trace context. */
  readonly stored: StoredFactBytes;
  readonly head: FactHead;
  /** The subject's kind: the fact's subject token in this zone's log. */
  readonly kind: string;
  /** The artifact the fact references, which must be here before the fact is. */
  readonly artifact: ArtifactRef | undefined;
}

export interface AdmissionRules {
  /** This zone: its own facts never come back to it. */
  readonly zone: string;
  readonly peer: string;
  /** The peer's certificate identity: this zone's policy must let it assert what it relays. */
  readonly peerIdentity: string;
  readonly policy: Policy;
}

/** ErrorInfo metadata `check` of a corrupt_fact refusal whose bytes did not match their digest (they may have been damaged on the way). */
export const DIGEST_MISMATCH = "digest";

/** A fetched fact this zone can never admit as it is, and why: it is set aside (see relay-errors.ts). */
export interface RefusedFact {
  readonly stored: StoredFactBytes;
  /** Empty when the bytes are not a readable fact. */
  readonly messageId: string;
  /** A rejection with its reason. */
  readonly error: ConnectError;
}

export interface Admission {
  /** In offset order. */
  readonly admitted: AdmittedFact[];
  readonly refused: RefusedFact[];
}

/**
 * Decides which of a page's facts this zone takes, reading only the envelope's
 * routing fields and the subject from the stored bytes. Every fact's bytes are
 * first checked against the SHA-256 the peer served with them. A fact that can
 * never be admitted as it is (its bytes do not match or are not a fact, its
 * envelope or artifact reference is invalid, policy denies it) is refused on
 * its own, so the facts behind it go on. A page served without digests is
 * refused whole: the peer's egress is older than this worker and the page is
 * retried until it is upgraded.
 */
export function admit(page: FetchFactsPage, rules: AdmissionRules): Admission {
  const admitted: AdmittedFact[] = [];
  const refused: RefusedFact[] = [];
  for (const stored of page.facts) {
    const offset = String(stored.offset);
    if (stored.messageSha256.byteLength !== 32) {
      throw rejection(Code.DataLoss, Reason.CorruptFact, `peer ${rules.peer} served the fact at offset ${offset} without its digest (message_sha256): its egress must be upgraded before it can be relayed`, { offset });
    }
    const verdict = admitFact(stored, rules);
    if (verdict === undefined) continue;
    if (verdict instanceof ConnectError) refused.push({ stored, messageId: messageIdOf(stored.message), error: verdict });
    else admitted.push(verdict);
  }
  return { admitted, refused };
}

/**
 * One fetched fact: admitted, undefined (this zone's own: neither taken nor refused), or the
 * rejection that sets it aside. Also what a quarantine release checks again.
 */
export function admitFact(stored: StoredFactBytes, rules: AdmissionRules): AdmittedFact | ConnectError | undefined {
  const offset = String(stored.offset);
  if (!timingSafeEqual(messageDigest(stored.message), stored.messageSha256)) {
    return rejection(Code.DataLoss, Reason.CorruptFact, `the fact at offset ${offset} from peer ${rules.peer} does not match the digest it was served with`, { offset, check: DIGEST_MISMATCH });
  }
  let head: FactHead;
  try {
    head = factHeadOf(stored.message);
  } catch (err) {
    return rejection(Code.DataLoss, Reason.CorruptFact, `the fact at offset ${offset} from peer ${rules.peer} is not a FactMessage: ${String(err)}`, { offset });
  }
  if (head.messageId === "") return rejection(Code.InvalidArgument, Reason.MissingField, `peer ${rules.peer} sent a fact without an envelope or message_id at offset ${offset}`, { offset, field: "envelope.message_id" });
  // A fact never comes back to the zone it came from, whatever the peer's consumer filters.
  if (head.fromZone === rules.zone) return undefined;
  const decision = rules.policy.mayAppend([rules.peerIdentity], head.fromZone, head.toZone);
  if (!decision.allowed) {
    return rejection(Code.PermissionDenied, decision.reason as Reason, `peer ${rules.peer} (${rules.peerIdentity}) may not relay message ${head.messageId}: ${decision.message}`, {
      message_id: head.messageId, offset,
    });
  }
  const colon = head.subject.indexOf(":");
  if (colon <= 0) return rejection(Code.InvalidArgument, Reason.InvalidSubject, `relayed fact ${head.messageId} at offset ${offset} has no valid subject "${head.subject}"`, { offset, message_id: head.messageId });
  // Only a fact that references an artifact is decoded whole: its object names the artifact.
  let artifact: ArtifactRef | undefined;
  if (head.objectMediaType !== "") {
    let whole;
    try {
      whole = fromBinary(FactMessageSchema, stored.message);
    } catch (err) {
      // factHeadOf reads past fields a full decode refuses: these bytes are not a FactMessage after all.
      return rejection(Code.DataLoss, Reason.CorruptFact, `the fact at offset ${offset} from peer ${rules.peer} is not a FactMessage: ${String(err)}`, { offset, message_id: head.messageId });
    }
    artifact = artifactRefOf(whole);
    if (!artifact) return rejection(Code.InvalidArgument, Reason.InvalidArtifactRef, `relayed fact ${head.messageId} at offset ${offset} has object_media_type but its object is not an artifact reference`, { offset, message_id: head.messageId });
    // The copy writes into this zone's bucket: only one the relaying identity may write, as for its PutObject.
    const bucket = rules.policy.mayWriteBucket([rules.peerIdentity], artifact.bucket);
    if (!bucket.allowed) {
      return rejection(Code.PermissionDenied, Reason.BucketNotAllowed, `peer ${rules.peer} (${rules.peerIdentity}) may not relay message ${head.messageId}: its artifact goes to bucket "${artifact.bucket}", which ${bucket.message.includes("no policy") ? "it has no policy for" : "its policy's writeBuckets do not list"}`, {
        message_id: head.messageId, offset, bucket: artifact.bucket,
      });
    }
  }
  return { stored, head, kind: head.subject.slice(0, colon), artifact };
}

function messageIdOf(bytes: Uint8Array): string {
  try {
    return factHeadOf(bytes).messageId;
  } catch {
    return "";
  }
}
