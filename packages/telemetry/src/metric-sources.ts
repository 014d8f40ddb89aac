import { X509Certificate } from "node:crypto";
import type { Counter, LabelValues } from "prom-client";
import { LINK_STATES, type BsfgMetrics } from "./metrics.js";

/*
 * Gauges read at scrape time from where the truth is: the zone's JetStream (fill,
 * cursors, backlog), the sync worker's link status, the configured certificates.
 * The shapes are structural so that this package depends on none of the others.
 */

/** What the store gauges need of a zone store (`@bsfg/storage`'s ZoneStore fits). */
export interface StoreGaugeSource {
  readonly config: {
    readonly streams: Readonly<Record<string, unknown>>;
    readonly consumers: ReadonlyArray<{ readonly name: string; readonly stream: string }>;
  };
  fillPercent(stream: string): Promise<number>;
  highWater(stream: string): Promise<number>;
  cursor(name: string): Promise<number>;
  /** The quarantine's waiting entries by link and reason, and each link's oldest (ms since the epoch). */
  quarantineSummary?(): Promise<{
    readonly byLinkAndReason: ReadonlyArray<{ readonly link: string; readonly reason: string; readonly count: number }>;
    readonly oldestByLink: ReadonlyMap<string, number>;
    readonly alertAfterMs: number;
  }>;
}

/**
 * Fill per configured stream, and cursor (frontier) and backlog per configured
 * consumer, read from JetStream at every scrape. What cannot be read is left
 * out of that scrape (and counted in bsfg_metrics_collect_errors_total).
 */
export function observeStore(metrics: BsfgMetrics, store: StoreGaugeSource): () => void {
  return metrics.onScrape("store", async () => {
    const failures: unknown[] = [];
    const highWaters = new Map<string, number>();
    await Promise.all(Object.keys(store.config.streams).map(async (stream) => {
      try {
        metrics.fillPercent.set({ stream }, await store.fillPercent(stream));
        highWaters.set(stream, await store.highWater(stream));
      } catch (err) {
        metrics.fillPercent.remove({ stream });
        failures.push(err);
      }
    }));
    await Promise.all(store.config.consumers.map(async ({ name, stream }) => {
      try {
        const cursor = await store.cursor(name);
        metrics.frontierOffset.set({ consumer: name }, cursor);
        const highWater = highWaters.get(stream);
        if (highWater === undefined) metrics.consumerBacklog.remove({ consumer: name });
        else metrics.consumerBacklog.set({ consumer: name }, Math.max(0, highWater - cursor));
      } catch (err) {
        metrics.frontierOffset.remove({ consumer: name });
        metrics.consumerBacklog.remove({ consumer: name });
        failures.push(err);
      }
    }));
    if (store.quarantineSummary) {
      try {
        const summary = await store.quarantineSummary();
        // Entries released or dropped since the last scrape leave their series: reset, then set.
        metrics.quarantinedFacts.reset();
        metrics.quarantineOldest.reset();
        for (const { link, reason, count } of summary.byLinkAndReason) metrics.quarantinedFacts.set({ link, reason }, count);
        const now = Date.now();
        for (const [link, oldest] of summary.oldestByLink) metrics.quarantineOldest.set({ link }, Math.max(0, (now - oldest) / 1000));
        metrics.quarantineAlertAfter.set(summary.alertAfterMs / 1000);
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, "store gauges incomplete");
  });
}

/** What the link gauges need of a sync link's status (`@bsfg/replication`'s LinkStatus fits). */
export interface LinkGaugeSource {
  readonly link: string;
  readonly state: string;
  readonly lagFacts: number;
  readonly lagSeconds: number;
  readonly appended: number;
  readonly duplicates: number;
  readonly conflicts: number;
  readonly fenced?: number;
  readonly artifactsCopied: number;
  readonly quarantined?: number;
}

/** Lag, state and totals of every link of a sync worker, from its status at every scrape. */
export function observeLinks(metrics: BsfgMetrics, status: () => readonly LinkGaugeSource[]): () => void {
  return metrics.onScrape("links", () => {
    for (const link of status()) {
      const labels = { link: link.link };
      metrics.linkLagFacts.set(labels, link.lagFacts);
      metrics.linkLagSeconds.set(labels, link.lagSeconds);
      for (const state of LINK_STATES) metrics.linkState.set({ ...labels, state }, link.state === state ? 1 : 0);
      // The worker keeps the totals; a counter shows them as they are (they restart at 0 with the worker).
      setCounter(metrics.replicationFacts, { ...labels, result: "appended" }, link.appended);
      setCounter(metrics.replicationFacts, { ...labels, result: "duplicate" }, link.duplicates);
      setCounter(metrics.replicationFacts, { ...labels, result: "conflicting_duplicate" }, link.conflicts);
      setCounter(metrics.artifactsCopied, labels, link.artifactsCopied);
      setCounter(metrics.linkFenced, labels, link.fenced ?? 0);
      setCounter(metrics.quarantineEvents, { ...labels, action: "parked" }, link.quarantined ?? 0);
    }
  });
}

/** The certificates an expiry gauge watches; `set` replaces them (a rotated certificate). */
export interface CertificateGauges {
  set(pems: Readonly<Record<string, string | Buffer | undefined>>): void;
  stop(): void;
}

/** Seconds until each certificate expires, at every scrape; `pems` maps a name (server, ca, sync-client) to a PEM. */
export function observeCertificates(metrics: BsfgMetrics, pems: Readonly<Record<string, string | Buffer | undefined>>): CertificateGauges {
  let notAfter = new Map<string, number>();
  const set = (next: Readonly<Record<string, string | Buffer | undefined>>) => {
    // Parsed here, once per set of certificates, not at every scrape.
    const parsed = new Map<string, number>();
    for (const [name, pem] of Object.entries(next)) {
      if (pem === undefined) continue;
      const expiry = earliestNotAfter(pem);
      if (expiry !== undefined) parsed.set(name, expiry);
    }
    notAfter = parsed;
  };
  set(pems);
  const stop = metrics.onScrape("certificates", () => {
    const now = Date.now();
    for (const [certificate, at] of notAfter) metrics.certificateExpiry.set({ certificate }, (at - now) / 1000);
  });
  return { set, stop };
}

/** The earliest notAfter (ms since the epoch) of the certificates in a PEM (a bundle's first expiry breaks it). */
export function earliestNotAfter(pem: string | Buffer): number | undefined {
  const blocks = pem.toString().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  let earliest: number | undefined;
  for (const block of blocks) {
    const at = Date.parse(new X509Certificate(block).validTo);
    if (!Number.isNaN(at) && (earliest === undefined || at < earliest)) earliest = at;
  }
  return earliest;
}

function setCounter<T extends string>(counter: Counter<T>, labels: LabelValues<T>, value: number) {
  counter.remove(labels);
  counter.inc(labels, value);
}
