import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/*
 * Prometheus metrics of one deployable. Every metric lives in a registry of its
 * own, created per deployable (the all-in-one zone process shares one between
 * its services and its sync worker): several zones run in one test process, so
 * nothing here is a module-level singleton. Label values are bounded: reasons,
 * Connect codes, configured consumers, streams and links, fixed enums — never
 * message ids, keys or peer addresses.
 */

export interface MetricsOptions {
  /** The zone; a `zone` label on every series. */
  readonly zone: string;
  /** The deployable, e.g. "bsfg-zone", "bsfg-ingest"; a `service` label on every series. */
  readonly service: string;
  /** Node.js process metrics (CPU, memory, event loop, GC); default true. */
  readonly processMetrics?: boolean;
}

/** What a scrape runs before it renders: reads gauges from JetStream, link status, certificates. */
export type ScrapeCollector = () => Promise<void> | void;

/** The TLS failure codes counted by name; anything else is counted as "OTHER" (a bounded label). */
export const TLS_FAILURE_CODES = [
  "NO_CLIENT_CERTIFICATE",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REVOKED",
  "ERR_SSL_UNSUPPORTED_PROTOCOL",
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_HTTP_REQUEST",
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
  "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN",
  "ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM",
  "ECONNRESET",
  "OTHER",
] as const;

/** A sync link's states, as `LinkStatus.state` spells them. */
export const LINK_STATES = ["starting", "active", "standby", "backing_off", "paused", "stopped"] as const;

/** How long one collector may take before a scrape goes on without it. */
const COLLECT_TIMEOUT_MS = 3_000;

export interface BsfgMetrics {
  readonly registry: Registry;
  /** The exposition format's content type, for the /metrics response. */
  readonly contentType: string;

  /** AppendFact calls, whatever their outcome. */
  readonly appendRequests: Counter;
  /** Messages of successful AppendFact calls by result: appended, duplicate, conflicting_duplicate. */
  readonly appendedFacts: Counter<"result">;
  /** Failed AppendFact calls by reason, plus one per conflicting-duplicate message. */
  readonly appendFailures: Counter<"reason">;
  /** Time to answer an AppendFact call (every outcome). */
  readonly appendLatency: Histogram;
  readonly fetchRequests: Counter;
  readonly confirmRequests: Counter;
  /** Every rejected call of any method, by Connect code and reason. */
  readonly rejections: Counter<"method" | "code" | "reason">;
  /** A consumer's confirmed cursor. */
  readonly frontierOffset: Gauge<"consumer">;
  /** Offsets of the consumer's stream after its cursor (this zone's side of a link's lag). */
  readonly consumerBacklog: Gauge<"consumer">;
  readonly fillPercent: Gauge<"stream">;
  /** Artifact bytes through PutObject (in) and FetchObject (out). */
  readonly objectBytes: Counter<"direction">;
  readonly tlsFailures: Counter<"code">;
  /** Seconds until a configured certificate expires (negative once it has). */
  readonly certificateExpiry: Gauge<"certificate">;
  readonly linkLagFacts: Gauge<"link">;
  readonly linkLagSeconds: Gauge<"link">;
  /** 1 for the link's current state, 0 for the others. */
  readonly linkState: Gauge<"link" | "state">;
  /** Facts a link brought into this zone by result, since its worker started. */
  readonly replicationFacts: Counter<"link" | "result">;
  readonly linkFenced: Counter<"link">;
  readonly artifactsCopied: Counter<"link">;
  /** Entries in the zone's quarantine waiting for an operator (parked or being released), by link and reason. */
  readonly quarantinedFacts: Gauge<"link" | "reason">;
  /** Age of each link's oldest waiting quarantine entry. */
  readonly quarantineOldest: Gauge<"link">;
  /** The zone's storage.quarantine.alertAfter, which the shipped alert compares the age with. */
  readonly quarantineAlertAfter: Gauge;
  /** Quarantine events: facts parked by a link (since its worker started), released and dropped by operators. */
  readonly quarantineEvents: Counter<"link" | "action">;
  /** Operators' pauses and resumes of peer links (console), by link. */
  readonly linkControls: Counter<"link" | "action">;
  /** Collectors that failed or timed out during a scrape. */
  readonly collectErrors: Counter<"source">;
  /** Outbound-only zone: dials to a peer's reverse listener, by outcome (connected, failed). */
  readonly reverseDials: Counter<"peer" | "outcome">;
  /** Reverse listener: connections peers dialed in, by event (accepted, refused, closed). */
  readonly reverseConnections: Counter<"peer" | "event">;

  /** Runs `collect` before every scrape; returns a function that removes it. */
  onScrape(source: string, collect: ScrapeCollector): () => void;
  /** Runs the collectors, then renders every metric in the text exposition format. */
  scrape(): Promise<string>;
}

export function createMetrics(opts: MetricsOptions): BsfgMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ zone: opts.zone, service: opts.service });
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const tlsFailures = new Counter({ name: "bsfg_tls_failures_total", help: "TLS handshakes refused or failed, by code (client certificate missing, expired, untrusted, …)", labelNames: ["code"] as const, registers });
  // Present at 0 from the start, so increase() sees the very first failure.
  for (const code of TLS_FAILURE_CODES) tlsFailures.inc({ code }, 0);
  const objectBytes = new Counter({ name: "bsfg_object_bytes_total", help: "Artifact bytes received by PutObject (in) and sent by FetchObject (out)", labelNames: ["direction"] as const, registers });
  objectBytes.inc({ direction: "in" }, 0);
  objectBytes.inc({ direction: "out" }, 0);

  const collectors = new Map<symbol, { source: string; collect: ScrapeCollector }>();
  const collectErrors = new Counter({ name: "bsfg_metrics_collect_errors_total", help: "Metric collectors that failed or timed out during a scrape (their gauges are left out)", labelNames: ["source"] as const, registers });

  return {
    registry,
    contentType: registry.contentType,
    appendRequests: new Counter({ name: "bsfg_append_requests_total", help: "AppendFact calls, whatever their outcome", registers }),
    appendedFacts: new Counter({ name: "bsfg_append_facts_total", help: "Messages of successful AppendFact calls, by result (appended, duplicate, conflicting_duplicate)", labelNames: ["result"] as const, registers }),
    appendFailures: new Counter({ name: "bsfg_append_failures_total", help: "Failed AppendFact calls by reason, plus one per message refused as a conflicting duplicate", labelNames: ["reason"] as const, registers }),
    appendLatency: new Histogram({
      name: "bsfg_append_latency_seconds",
      help: "Time to answer an AppendFact call, every outcome included",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    fetchRequests: new Counter({ name: "bsfg_fetch_requests_total", help: "FetchFacts calls, whatever their outcome", registers }),
    confirmRequests: new Counter({ name: "bsfg_confirm_requests_total", help: "ConfirmReceipt calls, whatever their outcome", registers }),
    rejections: new Counter({ name: "bsfg_rejections_total", help: "Rejected calls of any method, by Connect code and bsfg.v1 reason", labelNames: ["method", "code", "reason"] as const, registers }),
    frontierOffset: new Gauge({ name: "bsfg_frontier_offset", help: "A consumer's confirmed cursor (the last offset its reader confirmed)", labelNames: ["consumer"] as const, registers }),
    consumerBacklog: new Gauge({ name: "bsfg_consumer_backlog_facts", help: "Offsets of a consumer's stream after its confirmed cursor (filtered-out facts included)", labelNames: ["consumer"] as const, registers }),
    fillPercent: new Gauge({ name: "bsfg_store_buffer_fill_percent", help: "Fill of a fact stream in percent of its max_bytes", labelNames: ["stream"] as const, registers }),
    objectBytes,
    tlsFailures,
    certificateExpiry: new Gauge({ name: "bsfg_certificate_expiry_seconds", help: "Seconds until a configured certificate expires (the earliest notAfter of its PEM; negative once expired)", labelNames: ["certificate"] as const, registers }),
    linkLagFacts: new Gauge({ name: "bsfg_replication_lag_facts", help: "A peer link's backlog: the peer stream's last offset minus the consumer's cursor, as last seen", labelNames: ["link"] as const, registers }),
    linkLagSeconds: new Gauge({ name: "bsfg_replication_lag_seconds", help: "Age of the oldest fact of a peer link not yet confirmed; while the link fails, at least the time since it was last known caught up", labelNames: ["link"] as const, registers }),
    linkState: new Gauge({ name: "bsfg_link_state", help: "A peer link's state: 1 for the current one (starting, active, standby, backing_off, paused, stopped)", labelNames: ["link", "state"] as const, registers }),
    replicationFacts: new Counter({ name: "bsfg_replication_facts_total", help: "Facts a peer link brought into this zone, by result (appended, duplicate, conflicting_duplicate), since its worker started", labelNames: ["link", "result"] as const, registers }),
    linkFenced: new Counter({ name: "bsfg_replication_fenced_total", help: "Pages a peer link's replica could not ship because another replica moved the link's position first (it then gave the link up)", labelNames: ["link"] as const, registers }),
    artifactsCopied: new Counter({ name: "bsfg_replication_artifacts_copied_total", help: "Artifacts a peer link copied into this zone since its worker started", labelNames: ["link"] as const, registers }),
    quarantinedFacts: new Gauge({ name: "bsfg_quarantined_facts", help: "Relayed facts in the zone's quarantine waiting for an operator (parked or being released), by link and reason", labelNames: ["link", "reason"] as const, registers }),
    quarantineOldest: new Gauge({ name: "bsfg_quarantine_oldest_seconds", help: "Age of a link's oldest quarantined fact still waiting for an operator", labelNames: ["link"] as const, registers }),
    quarantineAlertAfter: new Gauge({ name: "bsfg_quarantine_alert_after_seconds", help: "storage.quarantine.alertAfter: BsfgQuarantineNotEmpty fires once a waiting entry is older", registers }),
    linkControls: new Counter({ name: "bsfg_link_controls_total", help: "Operators' link controls by action (paused, resumed), since this service started", labelNames: ["link", "action"] as const, registers }),
    quarantineEvents: new Counter({ name: "bsfg_quarantine_events_total", help: "Quarantine events by action: parked (by a link, since its worker started), released, dropped (by operators, since this service started)", labelNames: ["link", "action"] as const, registers }),
    collectErrors,
    reverseDials: new Counter({ name: "bsfg_reverse_dials_total", help: "Dials of an outbound-only zone to a peer's reverse listener, by outcome (connected, failed)", labelNames: ["peer", "outcome"] as const, registers }),
    reverseConnections: new Counter({ name: "bsfg_reverse_connections_total", help: "Connections peers dialed in to this zone's reverse listener, by event (accepted, refused, closed)", labelNames: ["peer", "event"] as const, registers }),

    onScrape(source, collect) {
      const key = Symbol(source);
      collectors.set(key, { source, collect });
      return () => void collectors.delete(key);
    },
    async scrape() {
      await Promise.all([...collectors.values()].map(async ({ source, collect }) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            collect(),
            new Promise((_resolve, reject) => {
              timer = setTimeout(() => reject(new Error(`collector ${source} timed out`)), COLLECT_TIMEOUT_MS);
            }),
          ]);
        } catch {
          collectErrors.inc({ source });
        } finally {
          clearTimeout(timer);
        }
      }));
      return registry.metrics();
    },
  };
}

/** A bounded `code` label for a TLS failure. */
export function tlsFailureCode(code: string | undefined): string {
  return (TLS_FAILURE_CODES as readonly string[]).includes(code ?? "") ? code! : "OTHER";
}
