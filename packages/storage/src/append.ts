import { create, fromBinary } from "@bufbuild/protobuf";
import { nuid } from "@nats-io/nats-core";
import { AppendResultSchema, AppendStatus, Code, errorInfoOf, FactMessageSchema, Reason, rejection, type AppendResult, type ConnectError } from "@bsfg/proto";
import type { FillGauge } from "./backpressure.js";
import type { Claim, ClaimBody, DedupeIndex } from "./dedupe-index.js";
import { payloadIdentities, unscopedMessageKey } from "./identity.js";
import type { PendingClock } from "./pending-clock.js";
import { PublishError } from "./publisher.js";
import type { Recovery } from "./recover.js";
import { factStreamName } from "./routing.js";
import { ApiCode, apiCode, substrateRejection } from "./substrate-errors.js";
import type { Substrate } from "./substrate.js";
import type { PreparedMessage } from "./validate.js";

export interface AppendContext {
  readonly substrate: Substrate;
  readonly index: DedupeIndex;
  readonly recovery: Recovery;
  readonly fill: FillGauge;
  /** When this process first saw each pending claim, on its own monotonic clock. */
  readonly pendingClock: PendingClock;
  /** A claim pending this long (as seen here) is treated as abandoned. */
  readonly pendingTimeoutMs: number;
  /** How long one call waits for another writer's pending claim before answering append_pending. */
  readonly pendingWaitMs: number;
  /**
   * Write a batch's facts as atomic batches (true: the zone's servers fsync every write,
   * nats.sync always) or in per-subject waves of pipelined publishes (interval).
   */
  readonly atomicRuns: boolean;
}

interface Outcome {
  readonly offset: number;
  readonly stream: string;
  readonly status: AppendStatus;
  /** Payload identity of the fact stored at `offset`. */
  readonly storedHash: string;
  /** produced_at_unix_ms of the fact stored at `offset` (0: no longer readable). */
  readonly producedAt: bigint;
}

/** What identifies a stored fact, and its clock. */
interface StoredIdentity {
  readonly hash: string;
  readonly legacyHash: string;
  readonly producedAt: bigint;
}

/** nats-server's default limit of messages in one atomic batch (`batch.max_msgs`). */
const MAX_ATOMIC_RUN = 1_000;

interface Owned {
  readonly index: number;
  readonly claimSeq: number;
}

/**
 * Appends a validated batch idempotently:
 *   1. claim every new message_id in the dedupe index (pipelined, atomic);
 *   2. publish the facts this call owns, one atomic batch per run of one stream,
 *      and wait for JetStream's acks;
 *   3. commit the batch's offsets to the index (one record per batch);
 *   4. answer messages claimed earlier from the index: DUPLICATE or CONFLICTING_DUPLICATE
 *      with the original offset, waiting briefly for a concurrent writer's commit.
 * Either every message gets a result or the call fails retry-safe, naming the
 * first message without an answer (nothing after it is stored without it); a
 * retry of anything stored here comes back DUPLICATE with its original offset.
 */
export async function appendBatch(ctx: AppendContext, prepared: readonly PreparedMessage[]): Promise<AppendResult[]> {
  for (const stream of new Set(prepared.map((p) => p.stream))) await ctx.fill.admit(stream);
  const batch = await honourUnscopedClaims(ctx, prepared);

  // A message_id repeated (in one scope) inside one batch is answered from its first occurrence.
  const first = new Map<string, number>();
  const leaders: number[] = [];
  batch.forEach((p, i) => {
    if (!first.has(p.key)) {
      first.set(p.key, i);
      leaders.push(i);
    }
  });

  const outcomes = new Array<Outcome | undefined>(batch.length);
  const batchId = nuid.next();
  let deadline = performance.now() + ctx.pendingTimeoutMs / 3;
  const claims = await Promise.allSettled(leaders.map((i) => ctx.index.claim(batch[i]!.key, claimBody(batch[i]!, batchId), ctx.pendingTimeoutMs / 3)));
  const ownedAt = new Map<number, Owned>();
  let failure: unknown;
  let failedAt = Infinity;
  claims.forEach((claim, n) => {
    if (claim.status === "rejected") {
      failure ??= claim.reason;
      failedAt = Math.min(failedAt, leaders[n]!);
    } else if (claim.value !== undefined) ownedAt.set(leaders[n]!, { index: leaders[n]!, claimSeq: claim.value });
  });

  // Facts are written in batch order, so order within a subject holds even when
  // part of the batch was claimed by another writer (a concurrent retry, or a
  // crashed call being recovered): a message claimed before is resolved before
  // anything after it is published, and nothing after a failed claim is published.
  const waitUntil = performance.now() + ctx.pendingWaitMs;
  // Pending claims age on this process's clock from when it first sees them:
  // look at all of them now, so the ones resolved last do not start aging last.
  await Promise.all(leaders.filter((i) => i < failedAt && !ownedAt.has(i)).map(async (i) => {
    const claim = await ctx.index.read(batch[i]!.key).catch(() => undefined);
    if (claim) ctx.pendingClock.firstSeen(batch[i]!.key, claim.seq);
  }));
  const committed: Record<string, number> = {};
  let segment: Owned[] = [];
  const attempted = new Set<number>();
  const flush = async () => {
    if (segment.length === 0) return;
    for (const { index } of segment) attempted.add(index);
    if (performance.now() > deadline) {
      // Resolving earlier claims took longer than an owner may wait between claiming and
      // publishing: claim these again. A new claim restarts every other writer's pending clock.
      const started = performance.now();
      const renewed = await Promise.all(segment.map(({ index, claimSeq }) => ctx.index.replace(batch[index]!.key, claimSeq, claimBody(batch[index]!, batchId), ctx.pendingTimeoutMs / 3)));
      if (renewed.some((seq) => seq === undefined)) {
        await Promise.allSettled(segment.map(({ index }, n) => renewed[n] === undefined ? undefined : release(ctx, batch[index]!, renewed[n]!)));
        throw rejection(Code.Unavailable, Reason.StoreUnavailable, "another writer took over part of the batch while it waited; retry");
      }
      segment = segment.map(({ index }, n) => ({ index, claimSeq: renewed[n]! }));
      deadline = started + ctx.pendingTimeoutMs / 3;
    }
    const published = await publishOwned(ctx, batch, segment, batchId, deadline, committed);
    segment.forEach(({ index }, n) => {
      outcomes[index] = published.outcomes[n];
    });
    segment = [];
    if (published.error) throw published.error;
  };
  try {
    for (const i of leaders) {
      if (i >= failedAt) break;
      const own = ownedAt.get(i);
      if (own) segment.push(own);
      else {
        await flush();
        outcomes[i] = await resolveClaimed(ctx, batch, i, waitUntil);
      }
    }
    await flush();
  } finally {
    // Claims this call holds but never tried to publish (after a failure): free them for a retry at once.
    const unpublished = [...ownedAt.values()].filter(({ index }) => !attempted.has(index));
    await Promise.allSettled(unpublished.map(({ index, claimSeq }) => release(ctx, batch[index]!, claimSeq)));
  }
  if (failure !== undefined) throw tailRefused(failure, "claiming message ids", batch[failedAt]!, failedAt);

  return batch.map((p, i) => {
    const outcome = outcomes[first.get(p.key)!]!;
    // Compare with what is stored, not with the batch's first occurrence.
    const status = outcome.status === AppendStatus.APPENDED && first.get(p.key) === i
      ? AppendStatus.APPENDED
      : p.hash === outcome.storedHash ? AppendStatus.DUPLICATE : AppendStatus.CONFLICTING_DUPLICATE;
    return create(AppendResultSchema, { offset: BigInt(outcome.offset), stream: outcome.stream, status, messageId: p.messageId, producedAtUnixMs: outcome.producedAt });
  });
}

function claimBody(p: PreparedMessage, batchId: string): ClaimBody {
  return { m: p.messageId, ...(unscoped(p) ? {} : { z: p.fromZone }), h: p.legacyHash, i: p.hash, t: String(p.producedAt), s: p.stream, j: p.subject, b: batchId };
}

/** Answered from an older gateway's zone-wide claim (unscopedMessageKey), not a scoped one. */
const unscoped = (p: PreparedMessage) => p.key.startsWith("c.");

/** The Nats-Msg-Id of a fact: its dedupe key; an older gateway's claim was published under the bare message_id. */
const natsMsgId = (p: PreparedMessage) => unscoped(p) ? p.messageId : p.key;

/**
 * Gateways before ids were scoped by from_zone claimed them zone-wide. Until those claims
 * age out (one dedupe horizon after the upgrade), a message whose id has such a claim is
 * answered from it, the way that gateway would have: a retry of a fact stored before the
 * upgrade stays DUPLICATE. Costs one read per message only while such claims may exist.
 */
async function honourUnscopedClaims(ctx: AppendContext, batch: readonly PreparedMessage[]): Promise<readonly PreparedMessage[]> {
  if (!(await ctx.index.mayHoldUnscopedClaims())) return batch;
  const keys = batch.map((p) => unscopedMessageKey(p.messageId));
  const claims = await Promise.all(keys.map((key) => ctx.index.read(key)));
  if (claims.every((claim) => claim === undefined)) return batch;
  return batch.map((p, i) => claims[i]?.m === p.messageId ? { ...p, key: keys[i]! } : p);
}

/**
 * Publishes the facts whose claims this call owns, in batch order, then commits
 * their offsets. They go in runs — consecutive facts of one stream category, as one
 * atomic batch (a lone fact as a plain publish) — and a run is sent only once the
 * one before it is acknowledged. A run is stored whole or not at all, so a refused
 * or unanswered fact never has a later fact of the batch stored after it: the rest
 * of the batch is refused with it (docs/protocol.md, "A refused fact refuses the
 * rest of the batch"). Pipelined single publishes could not promise that: behind a
 * fact refused for size (max_bytes), a smaller one still fit, and a retry then
 * stored the first after it.
 *
 * An owner never starts publishing once its claims may be considered abandoned;
 * anything of its that arrives later still is caught by JetStream's duplicate
 * window (Nats-Msg-Id = the dedupe key).
 */
async function publishOwned(ctx: AppendContext, batch: readonly PreparedMessage[], owned: readonly Owned[], batchId: string, deadline: number, committed: Record<string, number> = {}) {
  if (owned.length === 0) return { outcomes: [] as (Outcome | undefined)[], error: undefined };
  const written = ctx.atomicRuns ? await publishRuns(ctx, batch, owned, batchId, deadline) : await publishWaves(ctx, batch, owned, batchId, deadline);
  // The batch's commit record holds every offset the batch wrote so far: each commit supersedes the last.
  const offsets = committed;
  let newOffsets = 0;
  written.outcomes.forEach((outcome, n) => {
    const p = batch[owned[n]!.index]!;
    if (outcome?.status !== AppendStatus.APPENDED) return;
    offsets[p.key] = outcome.offset;
    newOffsets++;
    ctx.fill.added(p.stream, p.payload.byteLength);
  });
  // Refused or never sent: nothing of these was written, so free their claims for a retry at once.
  await Promise.allSettled(written.unwritten.map(({ index, claimSeq }) => release(ctx, batch[index]!, claimSeq)));
  if (newOffsets > 0) {
    // Best effort: without the commit, a retry still finds the facts through
    // recovery once the claims are abandoned; the facts themselves are stored.
    await ctx.index.commit(batchId, offsets).catch(() => undefined);
  }
  return { outcomes: written.outcomes, error: written.error };
}

/** What a write strategy did with the owned facts. */
interface Written {
  /** By position in `owned`: the facts answered (undefined: refused, unanswered or not sent). */
  readonly outcomes: (Outcome | undefined)[];
  /** Why the batch stops short, naming its first fact without an answer. */
  readonly error: ConnectError | undefined;
  /** Owned facts certainly not in the log (refused, or never sent): their claims are freed at once. */
  readonly unwritten: readonly Owned[];
}

const abandoned = (next: number) => rejection(Code.Unavailable, Reason.StoreUnavailable, `${next === 0 ? "claiming took too long" : "writing took longer than an owner may hold its claims"}; the rest of the append was abandoned before writing and may be retried`);

/** nats.sync always: runs of one stream category as atomic batches, one after another. */
async function publishRuns(ctx: AppendContext, batch: readonly PreparedMessage[], owned: readonly Owned[], batchId: string, deadline: number): Promise<Written> {
  const outcomes: (Outcome | undefined)[] = [];
  let next = 0;
  while (next < owned.length) {
    if (performance.now() > deadline) {
      return { outcomes, error: tailRefused(abandoned(next), "appending facts", batch[owned[next]!.index]!, owned[next]!.index), unwritten: owned.slice(next) };
    }
    const run = runFrom(batch, owned, next);
    const published = await publishRun(ctx, batch, run, batchId, deadline);
    published.outcomes.forEach((outcome, k) => {
      outcomes[next + k] = outcome;
    });
    next += published.outcomes.length;
    if (published.error !== undefined) {
      const { index } = owned[next]!;
      // Unanswered facts are in the log or not, a run whole: their claims stay pending for recovery to decide.
      return { outcomes, error: tailRefused(published.error, "appending facts", batch[index]!, index), unwritten: owned.slice(next + published.inDoubt) };
    }
  }
  return { outcomes, error: undefined, unwritten: [] };
}

/**
 * nats.sync interval: facts pipelined in waves, a subject's next fact only after its
 * previous one was acknowledged, so a refused fact never has a later fact of its
 * subject stored after it; after a wave with a refusal nothing more is sent. (An
 * atomic batch would do it in one round trip, but nats-server fsyncs every atomic
 * commit — about 2.5 ms, one after another per stream — which under `interval` costs
 * more than it saves: see docs/storage.md, "Per-subject order when a write fails".)
 */
async function publishWaves(ctx: AppendContext, batch: readonly PreparedMessage[], owned: readonly Owned[], batchId: string, deadline: number): Promise<Written> {
  const outcomes: (Outcome | undefined)[] = new Array(owned.length);
  const unwritten: Owned[] = [];
  const waveOf = new Map<string, number>();
  const waves: number[][] = [];
  owned.forEach(({ index }, n) => {
    const p = batch[index]!;
    const wave = waveOf.get(p.factSubject) ?? 0;
    waveOf.set(p.factSubject, wave + 1);
    (waves[wave] ??= []).push(n);
  });
  let firstFailure: { n: number; cause: unknown } | undefined;
  let w = 0;
  for (; w < waves.length && firstFailure === undefined; w++) {
    if (performance.now() > deadline) {
      firstFailure = { n: Math.min(...waves[w]!), cause: abandoned(w) };
      break;
    }
    const timeoutMs = Math.max(1, deadline - performance.now());
    const settled = await Promise.allSettled(waves[w]!.map(async (n) => {
      const { index, claimSeq } = owned[n]!;
      const p = batch[index]!;
      const ack = await ctx.substrate.publisher.publish(p.subject, p.payload, { msgId: natsMsgId(p), timeoutMs, ...(p.traceContext ? { headers: p.traceContext } : {}) });
      return ack.duplicate ? adoptEarlierCopy(ctx, p, claimSeq, batchId, ack.seq) : appended(p, ack.seq);
    }));
    settled.forEach((result, k) => {
      const n = waves[w]![k]!;
      if (result.status === "fulfilled") outcomes[n] = result.value;
      else {
        if (refused(result.reason)) unwritten.push(owned[n]!);
        if (firstFailure === undefined || n < firstFailure.n) firstFailure = { n, cause: result.reason };
      }
    });
  }
  // Waves never sent: nothing of them was written.
  for (const wave of waves.slice(w)) for (const n of wave) if (outcomes[n] === undefined) unwritten.push(owned[n]!);
  if (firstFailure === undefined) return { outcomes, error: undefined, unwritten };
  const { index } = owned[firstFailure.n]!;
  return { outcomes, error: tailRefused(firstFailure.cause, "appending facts", batch[index]!, index), unwritten };
}

/** The run starting at `from`: the owned facts after it of the same stream category, up to an atomic batch's limit. */
function runFrom(batch: readonly PreparedMessage[], owned: readonly Owned[], from: number): readonly Owned[] {
  const stream = batch[owned[from]!.index]!.stream;
  let end = from + 1;
  while (end < owned.length && end - from < MAX_ATOMIC_RUN && batch[owned[end]!.index]!.stream === stream) end++;
  return owned.slice(from, end);
}

interface RunResult {
  /** Answers for the run's first facts, in order (all of them, unless `error`). */
  readonly outcomes: Outcome[];
  /** Why the fact after `outcomes` (and so the rest of the batch) was not acknowledged. */
  readonly error?: unknown;
  /** How many facts from there went unanswered (may be in the log); the others were refused. */
  readonly inDoubt: number;
}

/** Publishes one run: atomically, or (a lone fact, a run holding a late copy) one fact after another. */
async function publishRun(ctx: AppendContext, batch: readonly PreparedMessage[], run: readonly Owned[], batchId: string, deadline: number): Promise<RunResult> {
  const { publisher } = ctx.substrate;
  const timeoutMs = () => Math.max(1, deadline - performance.now());
  if (run.length > 1) {
    for (;;) {
      try {
        const messages = run.map(({ index }) => {
          const p = batch[index]!;
          return { subject: p.subject, data: p.payload, opts: { msgId: natsMsgId(p), ...(p.traceContext ? { headers: p.traceContext } : {}) } };
        });
        const ack = await publisher.publishAtomic(messages, { timeoutMs: timeoutMs() });
        if (ack.count !== run.length) {
          return { outcomes: [], error: new PublishError(`JetStream acknowledged ${ack.count ?? 0} of the ${run.length} facts of an atomic batch`, undefined), inDoubt: run.length };
        }
        // An atomic batch is stored contiguously, ending at the acknowledged sequence.
        return { outcomes: run.map(({ index }, k) => appended(batch[index]!, ack.seq - run.length + 1 + k)), inDoubt: 0 };
      } catch (err) {
        const code = apiCode(err);
        // Nothing was stored in either case. Too many batches in flight on the stream: try again shortly.
        if (code === ApiCode.AtomicTooManyInflight && performance.now() + 50 < deadline) {
          await delay(5 + Math.random() * 20);
          continue;
        }
        // A fact of the run is a late copy of an earlier owner's publish (a takeover): an
        // atomic batch refuses it whole, one by one adopts it.
        if (code === ApiCode.AtomicDuplicateMessageId) break;
        return { outcomes: [], error: err, inDoubt: refused(err) ? 0 : run.length };
      }
    }
  }
  const outcomes: Outcome[] = [];
  for (const { index, claimSeq } of run) {
    const p = batch[index]!;
    if (outcomes.length > 0 && performance.now() > deadline) {
      return { outcomes, error: rejection(Code.Unavailable, Reason.StoreUnavailable, "writing took longer than an owner may hold its claims; the rest of the append was abandoned before writing and may be retried"), inDoubt: 0 };
    }
    try {
      const ack = await publisher.publish(p.subject, p.payload, { msgId: natsMsgId(p), timeoutMs: timeoutMs(), ...(p.traceContext ? { headers: p.traceContext } : {}) });
      outcomes.push(ack.duplicate ? await adoptEarlierCopy(ctx, p, claimSeq, batchId, ack.seq) : appended(p, ack.seq));
    } catch (err) {
      return { outcomes, error: err, inDoubt: refused(err) ? 0 : 1 };
    }
  }
  return { outcomes, inDoubt: 0 };
}

/** Refused by the server (e.g. the store is full): the message was certainly not stored. */
const refused = (err: unknown) => err instanceof PublishError && err.definite;

function appended(p: PreparedMessage, offset: number): Outcome {
  return { offset, stream: p.stream, status: AppendStatus.APPENDED, storedHash: p.hash, producedAt: p.producedAt };
}

/** A late copy of an earlier owner's publish landed first: that is the original. */
async function adoptEarlierCopy(ctx: AppendContext, p: PreparedMessage, claimSeq: number, batchId: string, offset: number): Promise<Outcome> {
  const stored = await readStored(ctx.substrate, p.stream, offset);
  if (!stored) throw rejection(Code.Unavailable, Reason.StoreUnavailable, `fact ${offset} of ${p.stream} could not be read back`);
  // The claim now names the fact that is stored, not this call's copy of it.
  await ctx.index.replace(p.key, claimSeq, { ...claimBody(p, batchId), h: stored.legacyHash, i: stored.hash, t: String(stored.producedAt), o: offset });
  return { offset, stream: p.stream, status: AppendStatus.DUPLICATE, storedHash: stored.hash, producedAt: stored.producedAt };
}

/**
 * The rejection for a batch cut short at message `index`: the cause's code and
 * reason, naming the first message without an answer. Nothing after it is stored
 * unless it is too, so a retry of the whole batch restores batch order.
 */
function tailRefused(cause: unknown, what: string, p: PreparedMessage, index: number): ConnectError {
  const base = substrateRejection(cause, what);
  const info = errorInfoOf(base);
  return rejection(base.code, (info?.reason ?? Reason.StoreUnavailable) as Reason,
    `${base.rawMessage}; message ${index} (${p.messageId}) and every message after it in the batch were not acknowledged: retry the batch (what is stored comes back DUPLICATE)`,
    { ...info?.metadata, index: String(index), message_id: p.messageId });
}

function release(ctx: AppendContext, p: PreparedMessage, claimSeq: number) {
  return ctx.index.replace(p.key, claimSeq, { ...claimBody(p, ""), x: 1 });
}

/** The identities and clock of the fact stored at `seq`, or undefined when the log no longer holds it. */
async function readStored(substrate: Substrate, stream: string, seq: number): Promise<StoredIdentity | undefined> {
  const stored = await substrate.jsm.streams.getMessage(factStreamName(stream), { seq });
  if (!stored) return undefined;
  const message = fromBinary(FactMessageSchema, stored.data);
  return { ...payloadIdentities(message, message.fact!.objectJson), producedAt: message.envelope!.producedAtUnixMs };
}

/**
 * The identity and clock of the fact a committed claim stands for. A claim of a
 * gateway from before the clock was left out of the identity holds only the
 * identity with the clock (`h`): equal to this message's, it is this message;
 * otherwise the stored fact is read and identified anew, so that after an upgrade
 * a retry of an old fact with a new produced_at is still a duplicate.
 */
async function claimedIdentity(ctx: AppendContext, p: PreparedMessage, claim: Claim, offset: number): Promise<{ hash: string; producedAt: bigint }> {
  if (claim.i !== undefined) return { hash: claim.i, producedAt: BigInt(claim.t ?? "0") };
  if (claim.h === p.legacyHash) return { hash: p.hash, producedAt: p.producedAt };
  const stored = await readStored(ctx.substrate, claim.s, offset);
  // Gone from the log (its retention is shorter than the dedupe horizon): only the old identity is left, and it differs.
  return stored ?? { hash: claim.h, producedAt: 0n };
}

/**
 * Answers a message whose id was claimed before this call: from the committed
 * offset; after waiting for a live owner; or, when the owner abandoned the
 * claim, by finding its fact in the log or taking the claim over.
 */
async function resolveClaimed(ctx: AppendContext, batch: readonly PreparedMessage[], i: number, waitUntil: number): Promise<Outcome> {
  const p = batch[i]!;
  const takeOver = async (claimSeq: number | undefined) => {
    const batchId = nuid.next();
    const started = performance.now();
    const seq = claimSeq === undefined
      ? await ctx.index.claim(p.key, claimBody(p, batchId), ctx.pendingTimeoutMs / 3)
      : await ctx.index.replace(p.key, claimSeq, claimBody(p, batchId), ctx.pendingTimeoutMs / 3);
    if (seq === undefined) return undefined; // someone else moved first; look again
    const published = await publishOwned(ctx, batch, [{ index: i, claimSeq: seq }], batchId, started + ctx.pendingTimeoutMs / 3);
    if (published.error) throw published.error;
    return published.outcomes[0]!;
  };

  for (let attempt = 0; ; attempt++) {
    const claim = await ctx.index.read(p.key);
    if (!claim) {
      // The claim aged out of the dedupe horizon between our attempt and this read.
      const outcome = await takeOver(undefined);
      if (outcome) return outcome;
      continue;
    }
    if (claim.m !== p.messageId || (claim.z !== undefined && claim.z !== p.fromZone)) {
      throw rejection(Code.Internal, Reason.StoreUnavailable, `message ids "${p.messageId}" and "${claim.m}" share a dedupe key`);
    }
    if (claim.x) {
      const outcome = await takeOver(claim.seq);
      if (outcome) return outcome;
      continue;
    }
    const offset = await ctx.index.committedOffset(p.key, claim);
    if (offset !== undefined) {
      const stored = await claimedIdentity(ctx, p, claim, offset);
      return { offset, stream: claim.s, status: stored.hash === p.hash ? AppendStatus.DUPLICATE : AppendStatus.CONFLICTING_DUPLICATE, storedHash: stored.hash, producedAt: stored.producedAt };
    }
    // Pending. Age is measured on this process's clock from when it first saw
    // this very claim, so clock skew between hosts cannot make a live owner look dead.
    const pendingFor = performance.now() - ctx.pendingClock.firstSeen(p.key, claim.seq);
    if (pendingFor < ctx.pendingTimeoutMs) {
      const now = performance.now();
      if (now >= waitUntil) {
        throw rejection(Code.Unavailable, Reason.AppendPending, `message ${p.messageId} is being appended by another call; retry`, { message_id: p.messageId });
      }
      await delay(Math.min(200, 5 * 2 ** Math.min(attempt, 6), Math.max(1, waitUntil - now)));
      continue;
    }
    // The owner is gone. Its fact is either in the log (it crashed before
    // committing) or was never written.
    const found = await ctx.recovery.find(claim);
    if (found !== undefined) {
      await ctx.index.replace(p.key, claim.seq, { m: claim.m, ...(claim.z !== undefined ? { z: claim.z } : {}), h: claim.h, ...(claim.i !== undefined ? { i: claim.i, t: claim.t } : {}), s: claim.s, j: claim.j, b: claim.b, o: found });
      continue;
    }
    const outcome = await takeOver(claim.seq);
    if (outcome) return outcome;
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
