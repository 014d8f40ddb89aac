import { create, fromBinary } from "@bufbuild/protobuf";
import { nuid } from "@nats-io/nats-core";
import { AppendResultSchema, AppendStatus, Code, FactMessageSchema, Reason, rejection, type AppendResult } from "@bsfg/proto";
import type { FillGauge } from "./backpressure.js";
import type { ClaimBody, DedupeIndex } from "./dedupe-index.js";
import { payloadIdentity } from "./identity.js";
import type { PendingClock } from "./pending-clock.js";
import { PublishError, type Ack } from "./publisher.js";
import type { Recovery } from "./recover.js";
import { factStreamName } from "./routing.js";
import { substrateRejection } from "./substrate-errors.js";
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
}

interface Outcome {
  readonly offset: number;
  readonly stream: string;
  readonly status: AppendStatus;
  /** Payload identity of the fact stored at `offset`. */
  readonly storedHash: string;
}

interface Owned {
  readonly index: number;
  readonly claimSeq: number;
}

/**
 * Appends a validated batch idempotently:
 *   1. claim every new message_id in the dedupe index (pipelined, atomic);
 *   2. publish the facts this call owns (pipelined) and wait for JetStream's acks;
 *   3. commit the batch's offsets to the index (one record per batch);
 *   4. answer messages claimed earlier from the index: DUPLICATE or CONFLICTING_DUPLICATE
 *      with the original offset, waiting briefly for a concurrent writer's commit.
 * Either every message gets a result or the call fails retry-safe; a retry of
 * anything stored here comes back DUPLICATE with its original offset.
 */
export async function appendBatch(ctx: AppendContext, batch: readonly PreparedMessage[]): Promise<AppendResult[]> {
  for (const stream of new Set(batch.map((p) => p.stream))) await ctx.fill.admit(stream);

  // A message_id repeated inside one batch is answered from its first occurrence.
  const first = new Map<string, number>();
  const leaders: number[] = [];
  batch.forEach((p, i) => {
    if (!first.has(p.messageId)) {
      first.set(p.messageId, i);
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
        outcomes[i] = await resolveClaimed(ctx, batch[i]!, waitUntil);
      }
    }
    await flush();
  } finally {
    // Claims this call holds but never tried to publish (after a failure): free them for a retry at once.
    const unpublished = [...ownedAt.values()].filter(({ index }) => !attempted.has(index));
    await Promise.allSettled(unpublished.map(({ index, claimSeq }) => release(ctx, batch[index]!, claimSeq)));
  }
  if (failure !== undefined) throw substrateRejection(failure, "claiming message ids");

  return batch.map((p, i) => {
    const outcome = outcomes[first.get(p.messageId)!]!;
    // Compare with what is stored, not with the batch's first occurrence.
    const status = outcome.status === AppendStatus.APPENDED && first.get(p.messageId) === i
      ? AppendStatus.APPENDED
      : p.hash === outcome.storedHash ? AppendStatus.DUPLICATE : AppendStatus.CONFLICTING_DUPLICATE;
    return create(AppendResultSchema, { offset: BigInt(outcome.offset), stream: outcome.stream, status, messageId: p.messageId });
  });
}

function claimBody(p: PreparedMessage, batchId: string): ClaimBody {
  return { m: p.messageId, h: p.hash, s: p.stream, j: p.subject, b: batchId };
}

/**
 * Publishes the facts whose claims this call owns, then commits their offsets.
 * An owner never starts publishing once its claims may be considered
 * abandoned; anything of its that arrives later still is caught by JetStream's
 * duplicate window (Nats-Msg-Id = message_id).
 */
async function publishOwned(ctx: AppendContext, batch: readonly PreparedMessage[], owned: readonly Owned[], batchId: string, deadline: number, committed: Record<string, number> = {}) {
  const outcomes: (Outcome | undefined)[] = [];
  if (owned.length === 0) return { outcomes, error: undefined };
  if (performance.now() > deadline) {
    await Promise.allSettled(owned.map(({ index, claimSeq }) => release(ctx, batch[index]!, claimSeq)));
    return { outcomes, error: rejection(Code.Unavailable, Reason.StoreUnavailable, "claiming took too long; the append was abandoned before writing and may be retried") };
  }
  const timeoutMs = Math.max(1, deadline - performance.now());
  const settled = await Promise.allSettled(owned.map(({ index }) => {
    const p = batch[index]!;
    return ctx.substrate.publisher.publish(p.subject, p.payload, { msgId: p.messageId, timeoutMs, ...(p.traceContext ? { headers: p.traceContext } : {}) });
  }));
  // The batch's commit record holds every offset the batch wrote so far: each commit supersedes the last.
  const offsets = committed;
  let newOffsets = 0;
  let error: unknown;
  await Promise.all(settled.map(async (result, n) => {
    const { index, claimSeq } = owned[n]!;
    const p = batch[index]!;
    if (result.status === "rejected") {
      error ??= result.reason;
      // Refused by the server (e.g. the store is full): nothing was written, so free the claim at once.
      if (result.reason instanceof PublishError && result.reason.definite) await release(ctx, p, claimSeq).catch(() => undefined);
      return;
    }
    const ack: Ack = result.value;
    if (!ack.duplicate) {
      offsets[p.key] = ack.seq;
      newOffsets++;
      ctx.fill.added(p.stream, p.payload.byteLength);
      outcomes[n] = { offset: ack.seq, stream: p.stream, status: AppendStatus.APPENDED, storedHash: p.hash };
      return;
    }
    // A late copy of an earlier owner's publish landed first: that is the original.
    const storedHash = await storedIdentity(ctx.substrate, p.stream, ack.seq);
    await ctx.index.replace(p.key, claimSeq, { m: p.messageId, h: storedHash, s: p.stream, j: p.subject, b: batchId, o: ack.seq });
    outcomes[n] = { offset: ack.seq, stream: p.stream, status: AppendStatus.DUPLICATE, storedHash };
  })).catch((err: unknown) => { error ??= err; });
  if (newOffsets > 0) {
    // Best effort: without the commit, a retry still finds the facts through
    // recovery once the claims are abandoned; the facts themselves are stored.
    await ctx.index.commit(batchId, offsets).catch(() => undefined);
  }
  return { outcomes, error: error === undefined ? undefined : substrateRejection(error, "appending facts") };
}

function release(ctx: AppendContext, p: PreparedMessage, claimSeq: number) {
  return ctx.index.replace(p.key, claimSeq, { m: p.messageId, h: p.hash, s: p.stream, j: p.subject, b: "", x: 1 });
}

async function storedIdentity(substrate: Substrate, stream: string, seq: number): Promise<string> {
  const stored = await substrate.jsm.streams.getMessage(factStreamName(stream), { seq });
  if (!stored) throw rejection(Code.Unavailable, Reason.StoreUnavailable, `fact ${seq} of ${stream} could not be read back`);
  const message = fromBinary(FactMessageSchema, stored.data);
  return payloadIdentity(message, message.fact!.objectJson);
}

/**
 * Answers a message whose id was claimed before this call: from the committed
 * offset; after waiting for a live owner; or, when the owner abandoned the
 * claim, by finding its fact in the log or taking the claim over.
 */
async function resolveClaimed(ctx: AppendContext, p: PreparedMessage, waitUntil: number): Promise<Outcome> {
  const takeOver = async (claimSeq: number | undefined) => {
    const batchId = nuid.next();
    const started = performance.now();
    const seq = claimSeq === undefined
      ? await ctx.index.claim(p.key, claimBody(p, batchId), ctx.pendingTimeoutMs / 3)
      : await ctx.index.replace(p.key, claimSeq, claimBody(p, batchId), ctx.pendingTimeoutMs / 3);
    if (seq === undefined) return undefined; // someone else moved first; look again
    const published = await publishOwned(ctx, [p], [{ index: 0, claimSeq: seq }], batchId, started + ctx.pendingTimeoutMs / 3);
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
    if (claim.m !== p.messageId) {
      throw rejection(Code.Internal, Reason.StoreUnavailable, `message ids "${p.messageId}" and "${claim.m}" share a dedupe key`);
    }
    if (claim.x) {
      const outcome = await takeOver(claim.seq);
      if (outcome) return outcome;
      continue;
    }
    const offset = await ctx.index.committedOffset(p.key, claim);
    if (offset !== undefined) {
      return { offset, stream: claim.s, status: claim.h === p.hash ? AppendStatus.DUPLICATE : AppendStatus.CONFLICTING_DUPLICATE, storedHash: claim.h };
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
      await ctx.index.replace(p.key, claim.seq, { m: claim.m, h: claim.h, s: claim.s, j: claim.j, b: claim.b, o: found });
      continue;
    }
    const outcome = await takeOver(claim.seq);
    if (outcome) return outcome;
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
