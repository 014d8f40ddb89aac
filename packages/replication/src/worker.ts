import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import { createPolicy, type ZoneConfig } from "@bsfg/config";
import type { ZoneStore } from "@bsfg/storage";
import { reverseBaseUrl, type ReverseListener } from "@bsfg/reverse";
import { clientTracing } from "@bsfg/telemetry";
import { startLink, type RunningLink } from "./link.js";
import type { LinkConnection, LinkStatus } from "./link-status.js";
import type { Logger } from "./logger.js";

export interface SyncWorker {
  /** Every link's status, in configuration order. */
  status(): LinkStatus[];
  /** Presents a rotated client certificate to peers from the next call on. */
  reloadTls(tls: { readonly ca: string; readonly cert: string; readonly key: string }): void;
  stop(): Promise<void>;
}

export interface SyncWorkerOptions {
  readonly store: ZoneStore;
  readonly log: Logger;
  /**
   * Why this zone cannot promise that an appended fact is on disk (its servers do not fsync
   * each write while nats.sync is always), or undefined. While it says so, links confirm
   * nothing to peers: a peer may drop what we confirmed.
   */
  readonly notDurable?: () => string | undefined;
  /** This replica's name in link leases; default: host, pid and a random suffix. */
  readonly holder?: string;
  /** Where peers with dial: inbound connect; their links call them over those connections. */
  readonly reverse?: ReverseListener;
}

/** Runs every configured peer link of the zone. */
export function startSyncWorker(config: ZoneConfig, options: SyncWorkerOptions): SyncWorker {
  const holder = options.holder ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const policy = createPolicy(config.policy);
  const clients = new Map<string, BsfgClient>();
  // One client (and HTTP/2 session) per peer, shared by its links.
  const { reverse } = options;
  const clientFor = (peer: string, egress: readonly string[], ledger: readonly string[], identity: string, dial: "outbound" | "inbound") => {
    let client = clients.get(peer);
    if (!client) {
      if (dial === "inbound" && !reverse) throw new Error(`peer ${peer} dials in (dial: inbound), but this worker has no reverse listener (listen.reverse)`);
      client = createBsfgClient({
        // An outbound-only peer: calls go over the connections it dialed into the reverse listener.
        ...(dial === "inbound" ? { sessionManagers: (url: string) => (url === reverseBaseUrl(peer, "egress") ? reverse!.sessionManager(peer, "egress") : url === reverseBaseUrl(peer, "ledger") ? reverse!.sessionManager(peer, "ledger") : undefined) } : {}),
        urls: { egress, ledger },
        tls: { ca: config.tls.ca, cert: config.sync.tls.cert, key: config.sync.tls.key },
        serverIdentity: identity,
        compression: config.sync.compression,
        // A couple of quick retries smooth over a blip (and, with several peer endpoints, try
        // the next replica); the link's own backoff handles outages.
        retry: { attempts: Math.max(2, egress.length, ledger.length), initialDelayMs: 100, maxDelayMs: 500 },
        // Fetch and confirm continue the page's trace in the peer zone.
        interceptors: [clientTracing(config.zone)],
      });
      clients.set(peer, client);
    }
    return client;
  };
  const connectionOf = (peer: string, peerIdentity: string, dial: "outbound" | "inbound"): LinkConnection => {
    const used = dial === "inbound" ? reverse?.inUse(peer, "egress") : undefined;
    return {
      dial, peerIdentity,
      ...(used ? { replica: used.replica, remote: used.remote, connectedAt: new Date(used.connectedAtMs).toISOString(), ageSeconds: Math.round((Date.now() - used.connectedAtMs) / 1000) } : {}),
    };
  };
  const links: RunningLink[] = config.sync.links.map((link) => startLink({
    zone: config.zone,
    link,
    store: options.store,
    peer: clientFor(link.peer, link.egressUrls, link.ledgerUrls, link.peerIdentity, link.dial),
    connection: () => connectionOf(link.peer, link.peerIdentity, link.dial),
    policy,
    options: { pageLimit: config.sync.pageLimit, prefetch: config.sync.prefetch, maxWait: config.sync.maxWait, backoff: config.sync.backoff },
    holder,
    log: options.log,
    ...(options.notDurable ? { notDurable: options.notDurable } : {}),
  }));
  options.log.info({ event: "sync_started", holder, links: config.sync.links.map((l) => l.name) }, `sync worker: ${links.length} link(s)`);
  return {
    status: () => links.map((l) => l.status()),
    reloadTls(tls) {
      for (const client of clients.values()) client.reloadTls(tls);
    },
    async stop() {
      await Promise.all(links.map((l) => l.stop()));
      for (const client of clients.values()) client.close();
    },
  };
}
