import { Code, ConnectError, Reason, reasonOf, rejection, type FactMessage, type ObjectRef } from "@bsfg/proto";

/** Reads an object's metadata in this zone; undefined when nothing is stored under bucket/key. */
export type StatObject = (bucket: string, key: string) => Promise<ObjectRef | undefined>;

/** The part of an artifact reference that must match what the zone stores. */
interface Reference {
  readonly bucket: string;
  readonly key: string;
  readonly digest: string;
  readonly size: number;
}

/** Stats in flight at once: a batch of a thousand references must not become a thousand requests at once. */
const STATS_IN_FLIGHT = 32;

/**
 * Refuses a validated batch (prepareBatch) when a fact references an artifact
 * this zone does not hold as referenced: "artifact exists before fact" is what
 * lets a receiving zone copy the artifact before it appends the fact, so a fact
 * that breaks it would hold every link it travels on. Like every other per-fact
 * problem, it refuses the whole batch (failed_precondition), nothing written; the
 * rejection names the first such fact in batch order. Each distinct bucket/key
 * is read once.
 */
export async function admitArtifacts(zone: string, messages: readonly FactMessage[], stat: StatObject): Promise<void> {
  const refs = messages.map(referenceOf);
  const locations = new Map<string, { bucket: string; key: string }>();
  for (const ref of refs) if (ref) locations.set(locationOf(ref), ref);
  if (locations.size === 0) return;

  const found = new Map<string, ObjectRef | undefined>();
  const pending = [...locations];
  const worker = async () => {
    for (let next = pending.shift(); next; next = pending.shift()) {
      const [location, { bucket, key }] = next;
      found.set(location, await statOrMissing(stat, bucket, key));
    }
  };
  await Promise.all(Array.from({ length: Math.min(STATS_IN_FLIGHT, pending.length) }, worker));

  const refused = refs.flatMap((ref, index) => {
    const problem = ref && problemOf(zone, ref, found.get(locationOf(ref)), index, messages[index]!.envelope!.messageId);
    return problem ? [problem] : [];
  });
  const [first] = refused;
  if (!first) return;
  const others = refused.length > 1 ? ` (${refused.length - 1} more fact(s) of this batch reference artifacts that do not resolve)` : "";
  throw rejection(Code.FailedPrecondition, first.reason, `${first.message}${others}; nothing of the batch was written`, first.metadata);
}

/**
 * The reference of a fact that validation accepted: every fact with
 * envelope.object_media_type carries a complete one, and no other fact does.
 */
function referenceOf(message: FactMessage): Reference | undefined {
  if (!message.envelope?.objectMediaType || !message.fact) return undefined;
  const object = JSON.parse(message.fact.objectJson) as Record<string, unknown>;
  return { bucket: String(object.bucket), key: String(object.key), digest: String(object.digest), size: Number(object.size) };
}

function locationOf(ref: { bucket: string; key: string }): string {
  // Not "bucket/key": a reference's bucket is not checked against bucket names, so it may hold a "/".
  return JSON.stringify([ref.bucket, ref.key]);
}

/** A bucket this zone does not have holds no object either: the reference does not resolve here. */
async function statOrMissing(stat: StatObject, bucket: string, key: string): Promise<ObjectRef | undefined> {
  try {
    return await stat(bucket, key);
  } catch (err) {
    if (err instanceof ConnectError && reasonOf(err) === Reason.UnknownBucket) return undefined;
    throw err;
  }
}

interface Problem {
  readonly reason: Reason;
  readonly message: string;
  readonly metadata: Record<string, string>;
}

function problemOf(zone: string, ref: Reference, stored: ObjectRef | undefined, index: number, messageId: string): Problem | undefined {
  const at = `message ${index} (${messageId}): artifact ${ref.bucket}/${ref.key}`;
  const metadata: Record<string, string> = {
    index: String(index), message_id: messageId, field: "fact.object_json",
    bucket: ref.bucket, key: ref.key, expected_digest: ref.digest, expected_size: String(ref.size),
  };
  if (!stored) {
    return { reason: Reason.ArtifactMissing, metadata, message: `${at} is not stored in zone ${zone}; store it with PutObject before appending the fact that references it` };
  }
  // What is stored is not told: the producer may not be allowed to read the bucket (the answer
  // would reveal another object's digest and size); it learns only that its reference is wrong.
  // The digest says which object it is; a size that differs under the same digest is a wrong reference.
  if (stored.digest !== ref.digest) {
    return { reason: Reason.ArtifactDigestMismatch, metadata, message: `${at} is stored in zone ${zone} with another digest than the fact references (${ref.digest}); objects are immutable: PutObject the referenced artifact (under its own key) before appending the fact` };
  }
  if (Number(stored.size) !== ref.size) {
    return { reason: Reason.ArtifactSizeMismatch, metadata, message: `${at} is stored in zone ${zone} with another size than the fact references (${ref.size} bytes); reference the artifact as PutObject returned it` };
  }
  return undefined;
}
