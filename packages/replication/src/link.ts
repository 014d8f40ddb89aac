import { Code, ConnectError } from "@connectrpc/connect";
import type { BsfgClient } from "@bsfg/client";
import type { PeerLink, Policy } from "@bsfg/config";
import { AppendStatus, Reason, reasonOf, rejection, type FetchFactsResponse, type StoredFact } from "@bsfg/proto";
import type { LeaseGrant, ZoneStore } from "@bsfg/storage";
import { artifactRefOf, ensureArtifact } from "./artifact-copy.js";
import { withSpan } from "@bsfg/telemetry";
import { backoff, pause } from "./backoff.js";
import type { LinkState, LinkStatus } from "./link-status.js";
import type { Logger } from "./logger.js";
import { relayTrace } from "./relay-trace.js";

export interface LinkOptions {
  readonly pageLimit: number;
  readonly maxWait: number;
  readonly backoff: { readonly initial: number; readonly max: number };
}

export interface LinkContext {
  /** This zone. */
  readonly zone: string;
  readonly link: PeerLink;
  readonly store: ZoneStore;
  readonly peer: BsfgClient;
  /** This zone's policy: the peer's identity must be allowed to assert what it relays. */
  readonly policy: Policy;
  readonly options: LinkOptions;
  /** This worker replica's name in the link's lease. */
  readonly holder: string;
  readonly log: Logger;
  /** Why appends here are not durable yet (see SyncWorkerOptions.notDurable); the link waits. */
  readonly notDurable?: () => string | undefined;
}

export interface RunningLink {
  status(): LinkStatus;
  /** Stops pulling (a long poll is cut short) and gives the lease up. */
  stop(): Promise<void>;
}

/** Thrown when the lease ran out mid-page: the page is left for whoever holds it now. */
class LeaseLost extends Error {}

/**
 * One peer link: fetch a page from the peer → copy the artifacts its facts
 * reference → append the facts here (original envelopes, idempotent) → confirm
 * the page to the peer. A confirm is sent only after the local append was
 * acknowledged, so a crash anywhere repeats at most the last page, and the
 * idempotent append turns that repeat into duplicates nobody sees. One replica
 * per link is active, by a lease in JetStream KV.
 */
export function startLink(ctx: LinkContext): RunningLink {
  const { link, store, peer, log } = ctx;
  const controller = new AbortController();
  const signal = controller.signal;
  const retry = backoff(ctx.options.backoff);
  const ttl = store.leases.ttlMs;
  let grant: LeaseGrant | undefined;
  let validUntil = 0;
  let renewal: NodeJS.Timeout | undefined;

  const totals = { appended: 0, duplicates: 0, conflicts: 0, artifactsCopied: 0, pages: 0 };
  let state: LinkState = "starting";
  let cursor = 0;
  let highWater = 0;
  let oldestUnconfirmedMs: number | undefined;
  let lastError: LinkStatus["lastError"];
  // While the link fails, facts the peer stored since it was last known caught up may be waiting:
  // its lag is then at least the time since (a cut link must not read as "no lag").
  let failing = false;
  let caughtUpAtMs = Date.now();

  const fields = { link: link.name, peer: link.peer, consumer: link.consumer };
  const setState = (next: LinkState, extra: object = {}) => {
    if (next === state) return;
    log.info({ event: "link_state", ...fields, from: state, to: next, ...extra }, `link ${link.name}: ${next}`);
    state = next;
  };

  // ---- the lease: act only while it is certainly ours ----
  // A renewal sent at t keeps the entry until at least t + ttl on the server;
  // acting only until t + ttl·2/3 leaves a third of the TTL for a page in progress.
  const holding = () => grant !== undefined && performance.now() < validUntil;
  const requireLease = () => {
    if (!holding()) throw new LeaseLost(`lease on ${link.name} expired`);
  };
  async function acquire(): Promise<boolean> {
    const sentAt = performance.now();
    const taken = await store.leases.acquire(link.name, ctx.holder);
    if (!taken) return false;
    grant = taken;
    validUntil = sentAt + (ttl * 2) / 3;
    renewal = setInterval(() => void renew(), ttl / 3);
    return true;
  }
  async function renew(): Promise<void> {
    if (!grant) return;
    const sentAt = performance.now();
    try {
      const renewed = await store.leases.renew(grant);
      if (renewed) {
        grant = renewed;
        validUntil = sentAt + (ttl * 2) / 3;
      } else {
        log.warn({ event: "lease_lost", ...fields }, `link ${link.name}: lease taken over by another replica`);
        dropLease();
      }
    } catch {
      // JetStream did not answer: the lease runs out locally unless a later renewal succeeds.
    }
  }
  function dropLease() {
    clearInterval(renewal);
    renewal = undefined;
    grant = undefined;
    validUntil = 0;
  }

  // ---- one page ----
  async function pullPage(): Promise<void> {
    await withSpan("sync page", { "bsfg.zone": ctx.zone, "bsfg.link": link.name }, async (pageSpan) => {
      const page = await peer.fetchFacts(link.consumer, { limit: ctx.options.pageLimit, maxWaitMs: ctx.options.maxWait, signal });
      observe(page);
      pageSpan.setAttributes({ "bsfg.facts": page.facts.length, "bsfg.last_offset": Number(page.lastOffset) });
      const facts = admissible(page);
      for (const fact of facts) {
        const ref = artifactRefOf(fact.message!);
        if (!ref) continue;
        requireLease();
        const outcome = await withSpan("artifact copy", { "bsfg.bucket": ref.bucket, "bsfg.key": ref.key, "bsfg.size": ref.size }, () => ensureArtifact(store, peer, ref, signal));
        if (outcome === "copied") {
          totals.artifactsCopied++;
          log.info({ event: "artifact_copied", ...fields, bucket: ref.bucket, key: ref.key, size: ref.size, digest: ref.digest }, "artifact copied");
        }
      }
      if (facts.length > 0) {
        requireLease();
        await withSpan("append", { "bsfg.zone": ctx.zone, "bsfg.facts": facts.length }, () => appendAll(facts));
      }
      const lastOffset = Number(page.lastOffset);
      if (lastOffset > cursor) {
        requireLease();
        cursor = Number(await peer.confirmReceipt(link.consumer, lastOffset));
      }
      totals.pages++;
      if (cursor >= highWater) oldestUnconfirmedMs = undefined;
    });
  }

  function observe(page: FetchFactsResponse) {
    cursor = Number(page.cursor);
    highWater = Math.max(highWater, Number(page.highWater));
    const first = page.facts[0];
    oldestUnconfirmedMs = first ? Number(first.storedAtUnixMs) : cursor >= highWater ? undefined : oldestUnconfirmedMs;
  }

  /** The page's facts this zone takes: never its own back, and only what the peer may relay. */
  /** The page's facts this zone takes: never its own back, and only what the peer may relay. */
  function admissible(page: FetchFactsResponse): StoredFact[] {
    const facts: StoredFact[] = [];
    for (const fact of page.facts) {
      const envelope = fact.message?.envelope;
      if (!envelope) throw rejection(Code.DataLoss, Reason.MissingField, `peer ${link.peer} sent a fact without a message at offset ${fact.offset}`);
      // A fact never comes back to the zone it came from, whatever the peer's consumer filters.
      if (envelope.fromZone === ctx.zone) continue;
      const decision = ctx.policy.mayAppend([link.peerIdentity], envelope.fromZone, envelope.toZone);
      if (!decision.allowed) {
        // Nothing of the page is appended or confirmed: the link stops here until policy or peer change.
        throw rejection(Code.PermissionDenied, decision.reason as Reason, `peer ${link.peer} (${link.peerIdentity}) may not relay message ${envelope.messageId}: ${decision.message}`, {
          message_id: envelope.messageId, offset: String(fact.offset),
        });
      }
      facts.push(fact);
    }
    return facts;
  }

  async function appendAll(facts: readonly StoredFact[]): Promise<void> {
    const max = store.config.limits.maxBatchMessages;
    for (let i = 0; i < facts.length; i += max) await appendChunk(facts.slice(i, i + max));
  }
  async function appendChunk(facts: readonly StoredFact[]): Promise<void> {
    let results;
    const relay = relayTrace(ctx.zone, link.name, facts);
    try {
      results = await store.append(facts.map((f) => f.message!), { traceContext: relay.traceContext });
      relay.end();
    } catch (err) {
      relay.end(err);
      // This zone's batch byte limit may be smaller than the peer's page: halve and go on.
      if (reasonOf(err) === Reason.BatchTooLarge && facts.length > 1) {
        const half = Math.ceil(facts.length / 2);
        await appendChunk(facts.slice(0, half));
        await appendChunk(facts.slice(half));
        return;
      }
      throw err;
    }
    for (const result of results) {
      if (result.status === AppendStatus.APPENDED) totals.appended++;
      else if (result.status === AppendStatus.DUPLICATE) totals.duplicates++;
      else {
        totals.conflicts++;
        log.error({ event: "conflicting_duplicate", ...fields, message_id: result.messageId, offset: String(result.offset) },
          "this zone holds the message_id with another payload; the peer's fact is not appended");
      }
    }
  }

  function recordError(err: unknown) {
    const error = ConnectError.from(err);
    lastError = { code: Code[error.code] ? codeName(error.code) : "unknown", reason: reasonOf(err), message: error.rawMessage, at: new Date().toISOString() };
    failing = true;
    log.warn({ event: "link_error", ...fields, code: lastError.code, reason: lastError.reason, error: lastError.message }, `link ${link.name}: ${lastError.message}`);
  }

  async function run(): Promise<void> {
    while (!signal.aborted) {
      if (!holding()) {
        if (grant) dropLease();
        let taken = false;
        try {
          taken = await acquire();
        } catch (err) {
          recordError(err);
        }
        if (!taken) {
          setState("standby");
          await pause(ttl / 4, signal);
          continue;
        }
        setState("active", { holder: ctx.holder });
      }
      try {
        // Trying again is being active; "backing_off" is only the wait in between.
        setState("active");
        const notDurable = ctx.notDurable?.();
        if (notDurable !== undefined) throw rejection(Code.Unavailable, Reason.NotDurable, `this zone cannot promise durable appends: ${notDurable}`);
        await pullPage();
        retry.reset();
        failing = false;
        if (cursor >= highWater) caughtUpAtMs = Date.now();
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof LeaseLost) continue;
        recordError(err);
        const delay = retry.next();
        setState("backing_off", { retryInMs: Math.round(delay), failures: retry.failures });
        await pause(delay, signal);
      }
    }
  }

  const running = run().catch((err: unknown) => {
    log.error({ event: "link_crashed", ...fields, error: String(err) }, `link ${link.name} stopped unexpectedly`);
  });

  return {
    status: () => ({
      ...fields,
      state,
      cursor,
      highWater,
      lagFacts: Math.max(0, highWater - cursor),
      // The oldest unconfirmed fact's age; while failing, at least the time since the link was last caught up.
      lagSeconds: Math.max(0, Date.now() - Math.min(oldestUnconfirmedMs ?? Infinity, failing ? caughtUpAtMs : Infinity)) / 1000,
      lastError,
      ...totals,
    }),
    async stop() {
      controller.abort();
      await running;
      clearInterval(renewal);
      if (grant) await store.leases.release(grant).catch(() => undefined);
      grant = undefined;
      setState("stopped");
    },
  };
}

function codeName(code: Code): string {
  // Code.PermissionDenied → "permission_denied", as the Connect protocol spells codes.
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`));
}
