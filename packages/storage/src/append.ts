import { create } from "@bufbuild/protobuf";
import { nuid } from "@nats-io/nats-core";
import { AppendResultSchema, AppendStatus, Code, Reason, rejection, type AppendResult } from "@bsfg/proto";
import type { FillGauge } from "./backpressure.js";
import type { ClaimBody, DedupeIndex } from "./dedupe-index.js";
import type { Ack, Publisher } from "./publisher.js";
import { findStoredFact } from "./recover.js";
import type { Substrate } from "./substrate.js";
import { substrateRejection } from "./substrate-errors.js";
import type { PreparedMessage } from "./validate.js";

export interface AppendContext {
  readonly index: DedupeIndex;
  readonly fill: FillGauge;
  /** A claim older than this without a commit is treated as abandoned. */
  readonly pendingTimeoutMs: number;
  /** How long to wait for another writer's pending claim before answering append_pending. */
  readonly pendingWaitMs: number;
  readonly substrate: Substrate;
}

interface Outcome {
  offset: number;
  stream: string;
  status: AppendStatus;
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
  const claimedAt = Date.now();
  const ownerDeadline = claimedAt + ctx.pendingTimeoutMs / 3;
  const claims = await Promise.allSettled(
    leaders.map((i) => ctx.index.claim(batch[i]!.key, claimBody(batch[i]!, batchId), ctx.pendingTimeoutMs / 3)),
  );
  const owned = leaders.filter((_, n) => claims[n]!.status === "fulfilled" && (claims[n] as PromiseFulfilledResult<boolean>).value);
  const claimedBefore = leaders.filter((_, n) => claims[n]!.status === "fulfilled" && !(claims[n] as PromiseFulfilledResult<boolean>).value);
  const failure = claims.find((c): c is PromiseRejectedResult => c.status === "rejected");

  const published = await publishOwned(ctx, batch, owned, batchId, ownerDeadline);
  owned.forEach((i, n) => {
    const ack = published.acks[n];
    if (ack) outcomes[i] = { offset: ack.seq, stream: batch[i]!.stream, status: AppendStatus.APPENDED };
  });
  if (failure) throw substrateRejection(failure.reason, "claiming message ids");
  if (published.error) throw published.error;

  const deadline = Date.now() + ctx.pendingWaitMs;
  await Promise.all(claimedBefore.map(async (i) => {
    outcomes[i] = await resolveClaimed(ctx, batch[i]!, deadline);
  }));

  return batch.map((p, i) => {
    const leader = first.get(p.messageId)!;
    let outcome = outcomes[leader]!;
    if (leader !== i) {
      const same = batch[leader]!.hash === p.hash;
      outcome = { ...outcome, status: same ? AppendStatus.DUPLICATE : AppendStatus.CONFLICTING_DUPLICATE };
    }
    return create(AppendResultSchema, { offset: BigInt(outcome.offset), stream: outcome.stream, status: outcome.status, messageId: p.messageId });
  });
}

function claimBody(p: PreparedMessage, batchId: string): ClaimBody {
  return { m: p.messageId, h: p.hash, s: p.stream, j: p.subject, b: batchId };
}

/**
 * Publishes the facts whose claims this call owns, then commits their offsets.
 * An owner never publishes once its claims may be considered abandoned.
 */
async function publishOwned(ctx: AppendContext, batch: readonly PreparedMessage[], owned: number[], batchId: string, ownerDeadline: number) {
  if (owned.length === 0) return { acks: [] as (Ack | undefined)[], error: undefined };
  if (Date.now() > ownerDeadline) {
    return { acks: [], error: rejection(Code.Unavailable, Reason.StoreUnavailable, "claiming took too long; the append was abandoned before writing and may be retried") };
  }
  const timeout = Math.max(1, ownerDeadline - Date.now());
  const settled = await Promise.allSettled(owned.map((i) => publishFact(ctx.substrate.publisher, batch[i]!, timeout)));
  const acks = settled.map((s) => (s.status === "fulfilled" ? s.value : undefined));
  const offsets: Record<string, number> = {};
  owned.forEach((i, n) => {
    const ack = acks[n];
    if (ack) {
      offsets[batch[i]!.key] = ack.seq;
      ctx.fill.added(batch[i]!.stream, batch[i]!.payload.byteLength);
    }
  });
  if (Object.keys(offsets).length > 0) {
    // Best effort: without the commit, a retry still finds the facts by the
    // recovery scan once the claims are abandoned; the facts themselves are stored.
    await ctx.index.commit(batchId, offsets).catch(() => undefined);
  }
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  return { acks, error: failed ? substrateRejection(failed.reason, "appending facts") : undefined };
}

function publishFact(publisher: Publisher, p: PreparedMessage, timeoutMs: number): Promise<Ack> {
  // No headers: the protobuf payload carries everything, and every header
  // costs client CPU and stored bytes on the hottest path.
  return publisher.publish(p.subject, p.payload, { timeoutMs });
}

/**
 * Answers a message whose id was claimed before this call: from the committed
 * offset; after waiting for a live owner; or, when the owner abandoned the
 * claim, by finding its fact in the log or taking the claim over.
 */
async function resolveClaimed(ctx: AppendContext, p: PreparedMessage, deadline: number): Promise<Outcome> {
  for (let attempt = 0; ; attempt++) {
    const claim = await ctx.index.read(p.key).catch((err) => { throw substrateRejection(err, "reading the dedupe index"); });
    if (!claim) {
      // The claim aged out of the dedupe horizon between our claim attempt and this read.
      const batchId = nuid.next();
      if (await ctx.index.claim(p.key, claimBody(p, batchId), ctx.pendingTimeoutMs / 3)) return appendAsOwner(ctx, p, batchId);
      continue;
    }
    if (claim.m !== p.messageId) {
      throw rejection(Code.Internal, Reason.StoreUnavailable, `message ids "${p.messageId}" and "${claim.m}" share a dedupe key`);
    }
    const offset = await ctx.index.committedOffset(p.key, claim);
    if (offset !== undefined) {
      return { offset, stream: claim.s, status: claim.h === p.hash ? AppendStatus.DUPLICATE : AppendStatus.CONFLICTING_DUPLICATE };
    }
    const age = Date.now() - claim.claimedAtMs;
    if (age < ctx.pendingTimeoutMs) {
      if (Date.now() >= deadline) {
        throw rejection(Code.Unavailable, Reason.AppendPending, `message ${p.messageId} is being appended by another call; retry`, { message_id: p.messageId });
      }
      await delay(Math.min(200, 5 * 2 ** Math.min(attempt, 6), Math.max(1, deadline - Date.now())));
      continue;
    }
    // The owner is gone. Its fact is either in the log (it crashed before
    // committing) or it was never written.
    const found = await findStoredFact(ctx.substrate, claim, ctx.pendingTimeoutMs);
    if (found !== undefined) {
      await ctx.index.replace(p.key, claim.seq, { m: claim.m, h: claim.h, s: claim.s, j: claim.j, b: claim.b, o: found });
      continue;
    }
    const batchId = nuid.next();
    if (await ctx.index.replace(p.key, claim.seq, claimBody(p, batchId))) return appendAsOwner(ctx, p, batchId);
  }
}

async function appendAsOwner(ctx: AppendContext, p: PreparedMessage, batchId: string): Promise<Outcome> {
  const published = await publishOwned(ctx, [p], [0], batchId, Date.now() + ctx.pendingTimeoutMs / 3);
  if (published.error) throw published.error;
  return { offset: published.acks[0]!.seq, stream: p.stream, status: AppendStatus.APPENDED };
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
