import { toBinary } from "@bufbuild/protobuf";
import { FactMessageSchema, type FactMessage, type StoredFact } from "@bsfg/proto";
import type { BsfgClient, FactMessageInit } from "@bsfg/client";
import type { SyncReplica, TestEstate } from "@bsfg/estate-kit";
import type { LinkStatus } from "@bsfg/replication";
import type { ZoneStore } from "@bsfg/storage";
import { fileURLToPath } from "node:url";
import { tracer } from "@bsfg/telemetry";

/** The sync deployable, as CI builds it before this suite runs. */
export const syncBin = fileURLToPath(new URL("../../apps/sync/dist/main.js", import.meta.url));

/** Every fact of a stream category in a zone's log, in offset order. */
export async function readAll(store: ZoneStore, stream: string): Promise<StoredFact[]> {
  const facts: StoredFact[] = [];
  let after = 0;
  for (;;) {
    const page = await store.read({ stream, skipOrigins: [] }, after, { limit: 1000 });
    facts.push(...page.facts);
    if (page.lastOffset <= after) return facts;
    after = page.lastOffset;
  }
}

/** A fact of `zone` on one of `subjects`, numbered so per-subject order can be checked. */
export function numberedFact(zone: string, to: string, n: number, subjects: number, prefix: string): FactMessageInit {
  const subject = `batch:${zone}/S${n % subjects}`;
  return {
    envelope: { messageId: `${prefix}-${n}`, fromZone: zone, toZone: to, producedAtUnixMs: BigInt(Date.now()) },
    fact: { subject, predicate: "step_completed", objectJson: JSON.stringify({ n, pad: "x".repeat(160) }) },
  };
}

/** Appends `count` numbered facts in batches; returns when all were acknowledged. */
export async function produce(client: BsfgClient, zone: string, to: string, count: number, prefix: string, opts: { subjects?: number; batch?: number; from?: number } = {}): Promise<void> {
  const batch = opts.batch ?? 100;
  const from = opts.from ?? 0;
  for (let i = from; i < from + count; i += batch) {
    const messages = Array.from({ length: Math.min(batch, from + count - i) }, (_, j) => numberedFact(zone, to, i + j, opts.subjects ?? 10, prefix));
    await client.appendFacts(messages);
  }
}

/** Facts whose message_id starts with `prefix`. */
export const withPrefix = (facts: StoredFact[], prefix: string) => facts.filter((f) => f.message?.envelope?.messageId.startsWith(`${prefix}-`));

/**
 * Checks what replication promises for facts that crossed: each message_id
 * exactly once, byte-identical to the origin's, and per subject in the origin's order.
 */
export function checkCrossed(origin: StoredFact[], received: StoredFact[]): { missing: string[]; duplicated: string[]; altered: string[]; outOfOrder: string[] } {
  const count = new Map<string, number>();
  for (const f of received) count.set(id(f), (count.get(id(f)) ?? 0) + 1);
  const byId = new Map(received.map((f) => [id(f), f]));
  const missing = origin.filter((f) => !count.has(id(f))).map(id);
  const duplicated = [...count].filter(([, n]) => n > 1).map(([k]) => k);
  const altered = origin.filter((f) => byId.has(id(f)) && !sameBytes(f.message!, byId.get(id(f))!.message!)).map(id);
  const outOfOrder: string[] = [];
  const originRank = new Map(origin.map((f, i) => [id(f), i]));
  const lastRankBySubject = new Map<string, number>();
  for (const f of received) {
    const rank = originRank.get(id(f));
    if (rank === undefined) continue;
    const subject = f.message!.fact!.subject;
    if ((lastRankBySubject.get(subject) ?? -1) > rank) outOfOrder.push(id(f));
    lastRankBySubject.set(subject, rank);
  }
  return { missing, duplicated, altered, outOfOrder };
}

const id = (f: StoredFact) => f.message!.envelope!.messageId;
function sameBytes(a: FactMessage, b: FactMessage): boolean {
  return Buffer.from(toBinary(FactMessageSchema, a)).equals(Buffer.from(toBinary(FactMessageSchema, b)));
}

/** Facts appended in `zone` so far, per stream. */
export async function logOf(estate: TestEstate, zone: string, stream = "operational"): Promise<StoredFact[]> {
  return readAll(estate.store(zone), stream);
}

/** The lease holder name of a child sync replica's running process (each start picks a new one; it logs it first). */
export function holderOf(replica: SyncReplica): string | undefined {
  const started = replica.logLines.findLast((l) => l.event === "sync_started");
  return typeof started?.holder === "string" ? started.holder : undefined;
}

/** What a kill of a sync replica hit: a kill lands only on the process doing the link's work. */
export interface KillOutcome {
  readonly landed: boolean;
  /** The replica's holder name, and who held the link's lease while it was frozen. */
  readonly holder: string | undefined;
  readonly leaseHolder: string | undefined;
  /** The link's status just before the replica was frozen. */
  readonly status: Pick<LinkStatus, "state" | "appended">;
  /** Why it was not killed, when it was not. */
  readonly missed?: string;
}

/**
 * Freezes a child sync replica (SIGSTOP) and SIGKILLs it if the kill lands on the process doing
 * `link`'s work: its last status (`status`, read just before) showed the link active and moving
 * facts, the zone's lease bucket names it as the link's holder, and `workLeft` says the transfer
 * is not over. Otherwise it lets the replica run on. Restarting a killed replica is the caller's.
 */
export async function killIfWorking(replica: SyncReplica, leases: Pick<ZoneStore["leases"], "holder">, link: string, status: Pick<LinkStatus, "state" | "appended">, movedFrom: number, workLeft: () => Promise<boolean>): Promise<KillOutcome> {
  replica.pause();
  const seen = { state: status.state, appended: status.appended };
  const holder = holderOf(replica);
  const leaseHolder = await leases.holder(link);
  const missed = status.state !== "active" ? `link ${status.state}`
    : !(await workLeft()) ? "transfer over"
    : status.appended <= movedFrom ? "no facts moved"
    : holder === undefined || leaseHolder !== holder ? `lease held by ${leaseHolder ?? "nobody"}`
    : undefined;
  if (missed !== undefined) {
    replica.resume();
    return { landed: false, holder, leaseHolder, status: seen, missed };
  }
  await replica.kill();
  return { landed: true, holder, leaseHolder, status: seen };
}

/** Appends one PlantA fact for Enterprise inside a root span of its own (a producer's work); returns the trace id. */
export function appendInTrace(producer: BsfgClient, messageId: string): Promise<string> {
  return tracer().startActiveSpan("mes: batch step", async (root) => {
    await producer.appendFact({
      envelope: { messageId, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()) },
      fact: { subject: "batch:PlantA/B7", predicate: "step_completed", objectJson: '{"step":"fill"}' },
    });
    root.end();
    return root.spanContext().traceId;
  });
}
