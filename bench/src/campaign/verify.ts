import { toBinary } from "@bufbuild/protobuf";
import { FactMessageSchema, type StoredFact } from "@bsfg/proto";
import type { ZoneStore } from "@bsfg/storage";

/** What a direction of the campaign must show: each must be 0. */
export interface Crossing {
  /** Acknowledged to the producer, but missing in the origin's log or in a zone on the path. */
  readonly lost: number;
  /** A message_id more than once in a zone's log. */
  readonly duplicated: number;
  /** Bytes in a zone on the path that differ from the origin's. */
  readonly altered: number;
  /** A fact of a subject stored before one that came before it at the origin. */
  readonly reordered: number;
  /** Document facts whose artifact is not in the destination with the referenced digest. */
  readonly artifactsMissing: number;
}

/** Every fact of a stream category in a zone's log, in offset order. */
export async function readAll(store: ZoneStore, stream: string): Promise<StoredFact[]> {
  const facts: StoredFact[] = [];
  let after = 0;
  for (;;) {
    const page = await store.read({ stream, skipOrigins: [] }, after, { limit: 1_000 });
    facts.push(...page.facts);
    if (page.lastOffset <= after) return facts;
    after = page.lastOffset;
  }
}

const idOf = (f: StoredFact) => f.message?.envelope?.messageId ?? "";

/** The facts of a producer (by message_id prefix) in a zone's logs, in offset order per stream. */
export async function factsOf(store: ZoneStore, prefix: string): Promise<StoredFact[]> {
  const all = [...await readAll(store, "operational"), ...await readAll(store, "documents")];
  return all.filter((f) => idOf(f).startsWith(`${prefix}-`));
}

/**
 * Checks one direction: every acknowledged fact is in the origin and in every zone on the
 * path once, byte for byte, and each subject's facts in the origin's order.
 */
export async function checkCrossing(acknowledged: readonly string[], prefix: string, origin: ZoneStore, path: readonly ZoneStore[], destination: ZoneStore): Promise<Crossing> {
  const originFacts = await factsOf(origin, prefix);
  const originById = new Map(originFacts.map((f) => [idOf(f), f]));
  let lost = acknowledged.filter((id) => !originById.has(id)).length;
  let duplicated = originFacts.length - originById.size;
  let altered = 0;
  let reordered = 0;
  const rank = new Map(originFacts.map((f, i) => [idOf(f), i]));
  for (const store of path) {
    const received = await factsOf(store, prefix);
    const byId = new Map<string, StoredFact>();
    for (const fact of received) {
      if (byId.has(idOf(fact))) duplicated++;
      byId.set(idOf(fact), fact);
    }
    lost += acknowledged.filter((id) => !byId.has(id)).length;
    for (const [id, fact] of byId) {
      const original = originById.get(id);
      if (original && !Buffer.from(toBinary(FactMessageSchema, original.message!)).equals(Buffer.from(toBinary(FactMessageSchema, fact.message!)))) altered++;
    }
    const lastRankBySubject = new Map<string, number>();
    for (const fact of received) {
      const r = rank.get(idOf(fact));
      if (r === undefined) continue;
      const subject = fact.message!.fact!.subject;
      if ((lastRankBySubject.get(subject) ?? -1) > r) reordered++;
      lastRankBySubject.set(subject, Math.max(r, lastRankBySubject.get(subject) ?? -1));
    }
  }
  let artifactsMissing = 0;
  for (const fact of await factsOf(destination, prefix)) {
    if (!fact.message?.envelope?.objectMediaType) continue;
    const ref = JSON.parse(fact.message.fact!.objectJson) as { bucket: string; key: string; digest: string };
    const object = await destination.statObject(ref.bucket, ref.key);
    if (object?.digest !== ref.digest) artifactsMissing++;
  }
  return { lost, duplicated, altered, reordered, artifactsMissing };
}
