import { timingSafeEqual } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
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

/**
 * Decides which of a page's facts this zone takes, reading only the envelope's
 * routing fields and the subject from the stored bytes. Every fact's bytes are
 * first checked against the SHA-256 the peer served with them: a page with a
 * fact that does not match is refused whole (data_loss / corrupt_fact), and
 * nothing of it is shipped or confirmed.
 */
export function admit(page: FetchFactsPage, rules: AdmissionRules): AdmittedFact[] {
  const admitted: AdmittedFact[] = [];
  for (const stored of page.facts) {
    const offset = String(stored.offset);
    if (stored.messageSha256.byteLength !== 32) {
      throw rejection(Code.DataLoss, Reason.CorruptFact, `peer ${rules.peer} served the fact at offset ${offset} without its digest (message_sha256): its egress must be upgraded before it can be relayed`, { offset });
    }
    if (!timingSafeEqual(messageDigest(stored.message), stored.messageSha256)) {
      throw rejection(Code.DataLoss, Reason.CorruptFact, `the fact at offset ${offset} from peer ${rules.peer} does not match its digest: the page is refused and fetched again`, { offset });
    }
    let head: FactHead;
    try {
      head = factHeadOf(stored.message);
    } catch (err) {
      throw rejection(Code.DataLoss, Reason.CorruptFact, `the fact at offset ${offset} from peer ${rules.peer} is not a FactMessage: ${String(err)}`, { offset });
    }
    if (head.messageId === "") throw rejection(Code.DataLoss, Reason.MissingField, `peer ${rules.peer} sent a fact without an envelope at offset ${offset}`, { offset });
    // A fact never comes back to the zone it came from, whatever the peer's consumer filters.
    if (head.fromZone === rules.zone) continue;
    const decision = rules.policy.mayAppend([rules.peerIdentity], head.fromZone, head.toZone);
    if (!decision.allowed) {
      // Nothing of the page is appended or confirmed: the link stops here until policy or peer change.
      throw rejection(Code.PermissionDenied, decision.reason as Reason, `peer ${rules.peer} (${rules.peerIdentity}) may not relay message ${head.messageId}: ${decision.message}`, {
        message_id: head.messageId, offset,
      });
    }
    const colon = head.subject.indexOf(":");
    if (colon <= 0) throw rejection(Code.DataLoss, Reason.InvalidSubject, `relayed fact at offset ${offset} has no valid subject "${head.subject}"`, { offset });
    // Only a fact that references an artifact is decoded whole: its object names the artifact.
    const artifact = head.objectMediaType === "" ? undefined : artifactRefOf(fromBinary(FactMessageSchema, stored.message));
    admitted.push({ stored, head, kind: head.subject.slice(0, colon), artifact });
  }
  return admitted;
}
