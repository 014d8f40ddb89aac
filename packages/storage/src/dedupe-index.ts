import { isWrongLastSequence } from "./substrate-errors.js";
import type { Substrate } from "./substrate.js";
import { DEDUPE_STREAM } from "./topology.js";

/**
 * The dedupe index: one claim per message_id, kept for the dedupe horizon.
 *
 * A claim is published with "expected last subject sequence = 0", which makes
 * the stream an atomic put-if-absent with no time limit. The claim names the
 * batch that owns it; the batch's commit record, one per append call, maps the
 * claims it owns to their offsets. Claims that were resolved after a crash
 * carry their offset themselves.
 */
export interface ClaimBody {
  /** message_id (to tell a 128-bit key collision from a duplicate) */
  readonly m: string;
  /** from_zone, the id's scope; absent in an unscoped claim of an older gateway. */
  readonly z?: string;
  /**
   * The identity with the producer's clock (legacyPayloadIdentity): all that claims
   * of gateways before the clock was left out carry; kept for them (rolling upgrades).
   */
  readonly h: string;
  /** Payload identity without the clock (payloadIdentity); absent in an older gateway's claim. */
  readonly i?: string;
  /** produced_at_unix_ms of the claimed message, decimal; absent in an older gateway's claim. */
  readonly t?: string;
  /** stream category */
  readonly s: string;
  /** NATS subject of the fact */
  readonly j: string;
  /** owning batch */
  readonly b: string;
  /** offset, once resolved by a takeover */
  readonly o?: number;
  /** released: the owner was refused before writing; anyone may take the claim */
  readonly x?: 1;
}

export interface Claim extends ClaimBody {
  /** Sequence of the claim in the index stream (for compare-and-set). */
  readonly seq: number;
  /** When the server stored the claim. */
  readonly claimedAtMs: number;
}

/** A key is "s.<hash>" (scoped by from_zone) or "c.<hash>" (an older gateway's, zone-wide). */
const claimSubject = (key: string) => `bsfg.dedupe.${key}`;
const UNSCOPED_CLAIMS = "bsfg.dedupe.c.>";
const commitSubject = (batch: string) => `bsfg.dedupe.b.${batch}`;
const encoder = new TextEncoder();

export interface DedupeIndex {
  /** The claim's sequence when this call now owns the key; undefined when it was claimed before. */
  claim(key: string, body: ClaimBody, timeoutMs: number): Promise<number | undefined>;
  /** Replaces a claim only if it is still the one at `seq`; returns the new claim's sequence. */
  replace(key: string, seq: number, body: ClaimBody, timeoutMs?: number): Promise<number | undefined>;
  read(key: string): Promise<Claim | undefined>;
  /** Records the offsets of the claims a batch owns. */
  commit(batch: string, offsets: Record<string, number>): Promise<void>;
  /** The offset of a claim's fact, if its owner committed it. */
  committedOffset(key: string, claim: Claim): Promise<number | undefined>;
  /**
   * Whether the index may still hold zone-wide claims of gateways from before ids were
   * scoped (they age out after one horizon). Asked at most once a minute.
   */
  mayHoldUnscopedClaims(): Promise<boolean>;
}

const UNSCOPED_CHECK_MS = 60_000;

export function dedupeIndex({ jsm, publisher }: Substrate): DedupeIndex {
  // Reads go to the stream leader (not direct get), so a claim that just won
  // a race is always visible to the loser.
  const last = (subject: string) => jsm.streams.getMessage(DEDUPE_STREAM, { last_by_subj: subject });
  const commits = new Map<string, Promise<Record<string, number> | undefined>>();
  let unscoped: { checkedAt: number; answer: Promise<boolean> } | undefined;

  async function conditionalPublish(key: string, body: ClaimBody, expected: number, timeoutMs?: number): Promise<number | undefined> {
    try {
      const ack = await publisher.publish(claimSubject(key), encoder.encode(JSON.stringify(body)), {
        expectLastSubjectSequence: expected,
        ...(timeoutMs ? { timeoutMs } : {}),
      });
      return ack.seq;
    } catch (err) {
      if (isWrongLastSequence(err)) return undefined;
      throw err;
    }
  }

  async function readCommit(batch: string): Promise<Record<string, number> | undefined> {
    const msg = await last(commitSubject(batch));
    return msg ? (msg.json<{ o: Record<string, number> }>().o) : undefined;
  }

  return {
    claim: (key, body, timeoutMs) => conditionalPublish(key, body, 0, timeoutMs),
    replace: (key, seq, body, timeoutMs) => conditionalPublish(key, body, seq, timeoutMs),
    async read(key) {
      const msg = await last(claimSubject(key));
      if (!msg) return undefined;
      return { ...msg.json<ClaimBody>(), seq: msg.seq, claimedAtMs: msg.time.getTime() };
    },
    async commit(batch, offsets) {
      await publisher.publish(commitSubject(batch), encoder.encode(JSON.stringify({ o: offsets })));
    },
    async committedOffset(key, claim) {
      if (claim.o !== undefined) return claim.o;
      // Many duplicates of one earlier batch arrive together (a retried batch):
      // read that batch's commit once. Only found commits are cached.
      const cached = commits.get(claim.b);
      if (cached) {
        const offset = (await cached)?.[key];
        if (offset !== undefined) return offset;
        // A batch commits once per run of facts it owns, each commit superseding the last:
        // a commit cached before this key's run committed does not hold it yet. Read again
        // rather than take the key for pending (which waited out the pending timeout, 15 s).
        if (commits.get(claim.b) === cached) commits.delete(claim.b);
      }
      let pending = commits.get(claim.b);
      if (!pending) {
        pending = readCommit(claim.b);
        commits.set(claim.b, pending);
        const loaded = pending;
        loaded.then((found) => { if (!found && commits.get(claim.b) === loaded) commits.delete(claim.b); }, () => { if (commits.get(claim.b) === loaded) commits.delete(claim.b); });
        if (commits.size > 1_000) commits.delete(commits.keys().next().value!);
      }
      return (await pending)?.[key];
    },
    mayHoldUnscopedClaims() {
      const now = performance.now();
      if (unscoped === undefined || now - unscoped.checkedAt > UNSCOPED_CHECK_MS) {
        // The first claim on any unscoped subject; the server answers from its subject index.
        const firstUnscoped = { seq: 0, next_by_subj: UNSCOPED_CLAIMS };
        const answer = jsm.streams.getMessage(DEDUPE_STREAM, firstUnscoped).then((m) => m !== null);
        unscoped = { checkedAt: now, answer };
        // Unsure (the store did not answer): assume they may exist, and ask again next time.
        answer.catch(() => { if (unscoped?.answer === answer) unscoped = undefined; });
      }
      return unscoped.answer.catch(() => true);
    },
  };
}

