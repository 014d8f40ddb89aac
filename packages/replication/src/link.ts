import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { BsfgClient } from "@bsfg/client";
import type { PeerLink, Policy } from "@bsfg/config";
import { errorInfoOf, Reason, reasonOf, rejection, type FetchFactsPage } from "@bsfg/proto";
import { LinkFenced, type LeaseGrant, type ReadLinkControl, type ZoneStore } from "@bsfg/storage";
import { withSpan } from "@bsfg/telemetry";
import { context } from "@opentelemetry/api";
import { admit, DIGEST_MISMATCH, type AdmittedFact, type RefusedFact } from "./admission.js";
import { ensureArtifact } from "./artifact-copy.js";
import { backoff, pause } from "./backoff.js";
import { confirmer } from "./confirmer.js";
import { crossingWindow } from "./crossing.js";
import type { LinkConnection, LinkState, LinkStatus } from "./link-status.js";
import type { Logger } from "./logger.js";
import { pager } from "./pager.js";
import { classifyRelayError, setAsideCause } from "./relay-errors.js";
import { relayTrace } from "./relay-trace.js";
import { shipper } from "./shipper.js";

/** What a link calls on its peer. */
export type PeerClient = Pick<BsfgClient, "fetchFactPage" | "confirmReceipt" | "fetchObject">;

export interface LinkOptions {
  readonly pageLimit: number;
  /** Pages fetched ahead while one is shipped. */
  readonly prefetch: number;
  readonly maxWait: number;
  readonly backoff: { readonly initial: number; readonly max: number };
}

export interface LinkContext {
  /** This zone. */
  readonly zone: string;
  readonly link: PeerLink;
  readonly store: ZoneStore;
  /** The peer zone's egress and ledger (the worker's client toward it). */
  readonly peer: PeerClient;
  /** This zone's policy: the peer's identity must be allowed to assert what it relays. */
  readonly policy: Policy;
  readonly options: LinkOptions;
  /** This worker replica's name in the link's lease. */
  readonly holder: string;
  readonly log: Logger;
  /** Why appends here are not durable yet (see SyncWorkerOptions.notDurable); the link waits. */
  readonly notDurable?: () => string | undefined;
  /** The connection the link calls its peer over, as status shows it (default: the configured dial and identity). */
  readonly connection?: () => LinkConnection;
}

export interface RunningLink {
  status(): LinkStatus;
  /** Stops pulling (a long poll is cut short) and gives the lease up. */
  stop(): Promise<void>;
}

/** A fact whose bytes do not match their digest this many fetches in a row is corrupt at its source: set aside. */
export const CORRUPT_FETCHES_BEFORE_SET_ASIDE = 3;

/**
 * Bytes that did not match their digest, and an artifact whose copy did not match its
 * reference, may have been damaged on the way (TLS rules out the wire, not the peer's or
 * this process's memory): fetched again before being set aside.
 */
function mayBeDamagedOnTheWay(error: ConnectError): boolean {
  const info = errorInfoOf(error);
  return (info?.reason === Reason.CorruptFact && info.metadata.check === DIGEST_MISMATCH) || info?.reason === Reason.DigestMismatch || info?.reason === Reason.SizeMismatch;
}

/** How often a link reads its operator control: a pause or resume reaches every replica within this. */
export const CONTROL_POLL_MS = 1_000;

/** Cuts the link's long poll short when an operator paused it. */
class Paused extends Error {}

/** Thrown when the lease ran out mid-page (or a shipment was fenced): the page is left for whoever holds it now. */
class LeaseLost extends Error {
  constructor(message: string, readonly fenced = false) {
    super(message);
  }
}

/**
 * One peer link: fetch a page from the peer → copy the artifacts its facts
 * reference → ship the facts here (the peer's bytes, with the link's position,
 * in one fenced atomic batch) → confirm the page to the peer. A confirm is sent
 * only after the shipment committed, so a crash anywhere repeats at most the
 * last page, and the link's position (read back from the log) passes over
 * what is already here. One replica per link is active, by a lease in
 * JetStream KV; the position marker's fence refuses a second writer even when
 * leases overlap.
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
  /** Changes whenever the lease is taken or dropped: a renewal answered after that is ignored. */
  let leaseEpoch = 0;
  /** The renewal on its way, if any: validity that ran out while it is may come back with its answer. */
  let renewing: Promise<number> | undefined;

  const ship = shipper(store.substrate, { categories: Object.keys(store.config.streams), link: link.name, peer: link.peer });
  const totals = { appended: 0, duplicates: 0, conflicts: 0, artifactsCopied: 0, pages: 0, fenced: 0, quarantined: 0 };
  const crossing = crossingWindow();
  let state: LinkState = "starting";
  let highWater = 0;
  let oldestUnconfirmedMs: number | undefined;
  let lastError: LinkStatus["lastError"];
  // While the link fails, facts the peer stored since it was last known caught up may be waiting:
  // its lag is then at least the time since (a cut link must not read as "no lag").
  let failing = false;
  let caughtUpAtMs = Date.now();
  /** The operator's control as last read (store.linkControls): while it says paused, nothing is pulled. */
  let control: ReadLinkControl | undefined;
  let controlChanged: (() => void) | undefined;
  /** When this replica last read its control and found the link still paused (status: paused.checkedAt). */
  let pauseCheckedAt: number | undefined;
  /** Aborted when a pause is read: cuts short a wait for a lease or after a failure, as the interrupt cuts a long poll. */
  let pauseWake = new AbortController();
  /** A function, not a property read: the control changes across awaits, which narrowing does not see. */
  const isPaused = () => control?.paused === true;

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
    leaseEpoch++;
    validUntil = sentAt + (ttl * 2) / 3;
    scheduleRenewal(sentAt);
    return true;
  }
  /**
   * One renewal at a time: the next is sent ttl/3 after the last was sent, and never before
   * it was answered. Two in flight would both compare-and-set the same revision, and the
   * loser would read its own lease as taken over.
   */
  function scheduleRenewal(lastSentAt: number): void {
    const epoch = leaseEpoch;
    renewal = setTimeout(() => {
      const sent = renew(epoch);
      renewing = sent;
      void sent.then((sentAt) => {
        if (renewing === sent) renewing = undefined;
        if (leaseEpoch === epoch && grant !== undefined) scheduleRenewal(sentAt);
      });
    }, Math.max(0, lastSentAt + ttl / 3 - performance.now()));
  }
  /** Renews the lease of `epoch` once; returns when it was sent. */
  async function renew(epoch: number): Promise<number> {
    const sentAt = performance.now();
    if (!grant || leaseEpoch !== epoch) return sentAt;
    try {
      const renewed = await store.leases.renew(grant);
      // Dropped (and maybe taken again) meanwhile: this answer is about a lease no longer held.
      if (leaseEpoch !== epoch) return sentAt;
      if (renewed) {
        grant = renewed;
        validUntil = sentAt + (ttl * 2) / 3;
      } else {
        log.warn({ event: "lease_lost", ...fields }, `link ${link.name}: lease taken over by another replica`);
        dropLease();
      }
    } catch {
      // JetStream did not answer: the lease runs out locally (no write after validUntil) unless a later renewal succeeds.
    }
    return sentAt;
  }
  function dropLease() {
    // Whoever holds the link next may have moved its position.
    ship.forget();
    resetPipeline();
    clearTimeout(renewal);
    renewal = undefined;
    grant = undefined;
    leaseEpoch++;
    validUntil = 0;
  }

  // ---- the pipeline: pages are read ahead while one is shipped; confirms trail by at most a page ----
  const pages = pager(peer, {
    consumer: link.consumer, pageLimit: ctx.options.pageLimit, maxWait: ctx.options.maxWait, prefetch: ctx.options.prefetch, signal,
    span: { attributes: { "bsfg.zone": ctx.zone, "bsfg.link": link.name }, parent: context.active() },
  });
  const confirms = confirmer(peer, link.consumer);
  const rules = { zone: ctx.zone, peer: link.peer, peerIdentity: link.peerIdentity, policy: ctx.policy };
  /** The highest peer offset shipped here (a confirm never goes past it). */
  let shippedThrough = 0;
  /** Fetches in a row on which the fact at an offset did not match its digest. */
  const corruptFetches = new Map<number, number>();

  /** After a failure or a lease change: start again from the peer's confirmed cursor. */
  function resetPipeline() {
    pages.reset();
    confirms.reset();
  }

  async function pullPage(): Promise<void> {
    const fetched = await pages.next();
    let landed: Promise<void> | undefined;
    try {
      await fetched.span.run(async () => {
        const { page } = fetched;
        observe(page);
        const lastOffset = Number(page.lastOffset);
        fetched.span.span.setAttributes({ "bsfg.facts": page.facts.length, "bsfg.last_offset": lastOffset });
        const { admitted, refused } = admit(page, rules);
        const facts: AdmittedFact[] = [];
        for (const fact of admitted) {
          const { artifact } = fact;
          if (artifact) {
            requireLease();
            try {
              const outcome = await withSpan("artifact copy", { "bsfg.bucket": artifact.bucket, "bsfg.key": artifact.key, "bsfg.size": artifact.size }, () => ensureArtifact(store, peer, artifact, signal));
              if (outcome === "copied") {
                totals.artifactsCopied++;
                log.info({ event: "artifact_copied", ...fields, bucket: artifact.bucket, key: artifact.key, size: artifact.size, digest: artifact.digest }, "artifact copied");
              }
            } catch (err) {
              // The peer says the artifact does not exist, or what it served is not what the fact references.
              if (signal.aborted || classifyRelayError(err) === "retry") throw err;
              refused.push({ stored: fact.stored, messageId: fact.head.messageId, error: ConnectError.from(err) });
              continue;
            }
          }
          facts.push(fact);
        }
        holdBackTransientCorruption(refused);
        if (facts.length > 0 || refused.length > 0) {
          requireLease();
          await withSpan("append", { "bsfg.zone": ctx.zone, "bsfg.facts": facts.length, "bsfg.set_aside": refused.length }, () => shipAll(facts, refused, lastOffset));
        }
        shippedThrough = Math.max(shippedThrough, lastOffset);
        if (lastOffset > confirms.cursor) {
          requireLease();
          ({ landed } = await confirms.confirm(lastOffset));
          landed = landed.then(() => {
            if (confirms.cursor >= highWater) oldestUnconfirmedMs = undefined;
          });
          // An idle link confirms before its next long poll; a busy one confirms while it fetches and ships,
          // and a confirm that fails then ends the round at once (its long poll may wait for minutes).
          if (!fetched.moved || ctx.options.prefetch === 0) await landed;
          else landed.catch(pages.interrupter());
        }
        totals.pages++;
        if (confirms.cursor >= highWater) oldestUnconfirmedMs = undefined;
      });
    } catch (err) {
      fetched.span.end(err);
      throw err;
    }
    if (landed) landed.then(() => fetched.span.end(), (err: unknown) => fetched.span.end(err));
    else fetched.span.end();
  }

  function observe(page: FetchFactsPage) {
    confirms.observe(Number(page.cursor));
    highWater = Math.max(highWater, Number(page.highWater));
    const first = page.facts[0];
    oldestUnconfirmedMs = first ? Number(first.storedAtUnixMs) : confirms.cursor >= highWater ? undefined : oldestUnconfirmedMs;
  }

  /**
   * A fact that may have been damaged on the way (mayBeDamagedOnTheWay) holds the
   * page back: it is fetched again, and only a fact refused this way on
   * CORRUPT_FETCHES_BEFORE_SET_ASIDE fetches in a row is set aside.
   */
  function holdBackTransientCorruption(refused: readonly RefusedFact[]): void {
    const damaged = refused.filter((fact) => mayBeDamagedOnTheWay(fact.error)).map((fact) => Number(fact.stored.offset));
    // Counts are of fetches in a row: an offset that came through intact starts again.
    for (const offset of corruptFetches.keys()) if (!damaged.includes(offset)) corruptFetches.delete(offset);
    let holdBack: RefusedFact | undefined;
    for (const fact of refused) {
      if (!mayBeDamagedOnTheWay(fact.error)) continue;
      const offset = Number(fact.stored.offset);
      const fetches = (corruptFetches.get(offset) ?? 0) + 1;
      corruptFetches.set(offset, fetches);
      if (fetches < CORRUPT_FETCHES_BEFORE_SET_ASIDE) holdBack ??= fact;
    }
    if (holdBack) throw holdBack.error;
  }

  /** Ships the page's facts (and sets aside the refused ones), grouped by the stream they were read from (a consumer reads one). */
  async function shipAll(facts: readonly AdmittedFact[], refused: readonly RefusedFact[], lastOffset: number): Promise<void> {
    const byStream = Map.groupBy(facts, (fact) => fact.stored.stream);
    const refusedByStream = Map.groupBy(refused, (fact) => fact.stored.stream);
    for (const category of new Set([...byStream.keys(), ...refusedByStream.keys()])) {
      const group = byStream.get(category) ?? [];
      const relay = relayTrace(ctx.zone, link.name, group.map((fact) => fact.stored));
      try {
        const { shipped, alreadyHere, setAside } = await ship.ship(category, group, (refusedByStream.get(category) ?? []).sort((a, b) => Number(a.stored.offset) - Number(b.stored.offset)), lastOffset, relay.traceContext);
        relay.end();
        totals.appended += shipped;
        // Which facts of a page that was partly here already were new is not told: time only whole pages.
        if (shipped > 0 && shipped === group.length) crossing.add(group.map((fact) => Number(fact.stored.storedAtUnixMs)), Date.now());
        totals.duplicates += alreadyHere;
        totals.quarantined += setAside.length;
        for (const fact of setAside) {
          const reason = reasonOf(fact.error) ?? "unknown";
          log.warn({
            event: "fact_quarantined", ...fields, offset: Number(fact.stored.offset), message_id: fact.messageId, stream: category, reason, cause: setAsideCause(reason), error: fact.error.rawMessage,
          }, `link ${link.name}: fact at offset ${fact.stored.offset} set aside in the quarantine (${reason}); the link goes on`);
        }
      } catch (err) {
        relay.end(err);
        if (err instanceof LinkFenced) {
          totals.fenced++;
          log.warn({ event: "link_fenced", ...fields, fence: err.fence }, `link ${link.name}: another replica shipped first; this one stops writing and gives the link up`);
          // Give the lease up in the bucket too, so whoever wrote can hold the link without waiting for the TTL.
          const given = grant;
          dropLease();
          if (given) await store.leases.release(given).catch(() => undefined);
          throw new LeaseLost(err.message, true);
        }
        throw err;
      }
    }
  }

  function recordError(err: unknown) {
    const error = ConnectError.from(err);
    lastError = { code: Code[error.code] ? codeToString(error.code) : "unknown", reason: reasonOf(err), message: error.rawMessage, at: new Date().toISOString() };
    failing = true;
    log.warn({ event: "link_error", ...fields, code: lastError.code, reason: lastError.reason, error: lastError.message }, `link ${link.name}: ${lastError.message}`);
  }

  // ---- the operator's control: a paused link gives its lease up and pulls nothing until resumed ----
  async function readControl(): Promise<void> {
    let next: ReadLinkControl | undefined;
    try {
      next = await store.linkControls.get(link.name);
    } catch {
      // JetStream did not answer: the last control read stands (the link's own calls will fail too).
      return;
    }
    // Two reads may answer out of order (the poller's and the one before taking a lease): never go back to an older control.
    if (next === undefined ? control !== undefined : next.revision < (control?.revision ?? 0)) return;
    const pausing = next?.paused === true && control?.paused !== true;
    const changed = (next?.paused === true) !== (control?.paused === true);
    control = next;
    pauseCheckedAt = control?.paused === true ? Date.now() : undefined;
    if (pausing) {
      pages.interrupter()(new Paused(`link ${link.name} paused by ${next!.by}`));
      pauseWake.abort();
      pauseWake = new AbortController();
    }
    if (changed) controlChanged?.();
  }
  /** Waits `ms`, less if the link stops or an operator pauses it meanwhile. */
  const wait = (ms: number) => pause(ms, AbortSignal.any([signal, pauseWake.signal]));
  async function readControls(): Promise<void> {
    while (!signal.aborted) {
      await pause(CONTROL_POLL_MS, signal);
      if (!signal.aborted) await readControl();
    }
  }

  /** Waits out a pause: the page in flight was shipped and its confirm sent; the lease is given up so no replica pulls. */
  async function holdPaused(): Promise<void> {
    await confirms.settled().catch(() => undefined);
    resetPipeline();
    // A renewal on its way moves the lease's revision: the release must name the one it answers with.
    if (grant && renewing) await renewing;
    if (grant) {
      const given = grant;
      dropLease();
      await store.leases.release(given).catch(() => undefined);
    }
    setState("paused", { by: control?.by, note: control?.note });
    while (!signal.aborted && isPaused()) {
      await new Promise<void>((resolve) => {
        const stopped = () => resolve();
        controlChanged = () => {
          signal.removeEventListener("abort", stopped);
          resolve();
        };
        signal.addEventListener("abort", stopped, { once: true });
      });
      controlChanged = undefined;
    }
  }

  async function run(): Promise<void> {
    await readControl();
    void readControls();
    while (!signal.aborted) {
      if (isPaused()) {
        await holdPaused();
        continue;
      }
      // A slow renewal leaves a gap in validity: nothing is written in it, and its answer may close it.
      if (!holding() && grant && renewing) await renewing;
      if (!holding()) {
        if (grant) dropLease();
        // A holder gives the lease up when it reads a pause: read it too before taking the lease it freed.
        await readControl();
        if (isPaused()) continue;
        let taken = false;
        try {
          taken = await acquire();
        } catch (err) {
          recordError(err);
        }
        if (!taken) {
          setState("standby");
          await wait(ttl / 4);
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
        if (confirms.cursor >= highWater) caughtUpAtMs = Date.now();
      } catch (err) {
        if (signal.aborted) break;
        // Paused: holdPaused lets the confirm in flight land before it resets the pipeline.
        if (err instanceof Paused) continue;
        resetPipeline();
        if (err instanceof LeaseLost) {
          // Fenced: another replica is writing. Stand by a round before trying again, so the
          // one whose lease is stale learns it at its next renewal instead of trading pages.
          if (err.fenced) {
            setState("standby");
            await wait(ttl / 4);
          }
          continue;
        }
        recordError(err);
        const delay = retry.next();
        setState("backing_off", { retryInMs: Math.round(delay), failures: retry.failures });
        await wait(delay);
      }
    }
  }

  const running = run().catch((err: unknown) => {
    log.error({ event: "link_crashed", ...fields, error: String(err) }, `link ${link.name} stopped unexpectedly`);
  });

  return {
    status: () => ({
      ...fields,
      connection: ctx.connection?.() ?? { dial: link.dial, peerIdentity: link.peerIdentity },
      state,
      cursor: confirms.cursor,
      highWater,
      lagFacts: Math.max(0, highWater - confirms.cursor),
      confirmLag: Math.max(0, shippedThrough - confirms.cursor),
      // The oldest unconfirmed fact's age; while failing, at least the time since the link was last caught up.
      lagSeconds: Math.max(0, Date.now() - Math.min(oldestUnconfirmedMs ?? Infinity, failing ? caughtUpAtMs : Infinity)) / 1000,
      lastError,
      ...(control?.paused === true ? {
        paused: {
          by: control.by, at: new Date(control.atMs).toISOString(), ...(control.note !== undefined ? { note: control.note } : {}),
          ...(pauseCheckedAt !== undefined ? { checkedAt: new Date(pauseCheckedAt).toISOString() } : {}),
        },
      } : {}),
      crossing: crossing.stats(Date.now()),
      ...totals,
    }),
    async stop() {
      controller.abort();
      await running;
      // A confirm still in flight is sent before the lease is given up (the next holder would only re-read the page).
      await confirms.settled();
      clearTimeout(renewal);
      renewal = undefined;
      leaseEpoch++;
      if (grant) await store.leases.release(grant).catch(() => undefined);
      grant = undefined;
      setState("stopped");
    },
  };
}
