import { estateLinks, zoneIdentity, type EstateTopology } from "./topology.js";

/** One endpoint, or the endpoints of a service's replicas. */
export type Endpoints = string | readonly string[];

/** Where a zone's parts listen, as "host:port" (services, probes) and a NATS URL. */
export interface ZoneEndpoints {
  /** The zone's NATS server, or every node of its JetStream cluster. */
  readonly nats: string | readonly string[];
  /** Their monitoring endpoints (http://host:8222), where the zone checks how they sync. */
  readonly natsMonitor: string | readonly string[];
  /** `reverse`: the sync worker's reverse listener, needed where an outbound-only peer dials in; `console`: its mTLS console. */
  readonly listen: { readonly zone: string; readonly ingest: string; readonly egress: string; readonly ledger: string; readonly reverse?: string; readonly console?: string };
  /** `allowFrom`: who may read the probe ports (health.allowFrom); absent, whoever reaches them. */
  readonly health: { readonly zone: string; readonly ingest: string; readonly egress: string; readonly ledger: string; readonly sync: string; readonly allowFrom?: readonly string[] };
}

export interface DocumentOptions {
  readonly topology: EstateTopology;
  readonly endpoints: Readonly<Record<string, ZoneEndpoints>>;
  /**
   * The URL `receiver` uses for `sender`'s egress and ledger (direct, or through a proxy):
   * one all-in-one endpoint, or the egress and ledger endpoints of a split zone — each a
   * list when the sender runs replicas (a highly available zone).
   */
  readonly peerUrl: (receiver: string, sender: string) => Endpoints | { readonly egress: Endpoints; readonly ledger: Endpoints };
  /**
   * Where the outbound-only zone `dialer` dials `receiver`: its reverse listener, one URL per
   * sync replica (each replica listens on its own), directly or through a proxy per dialer.
   * Required when the topology has outbound-only zones.
   */
  readonly reverseUrls?: (receiver: string, dialer: string) => Endpoints;
  /** TLS file paths: the CA and each identity's certificate and key. */
  readonly pki: { readonly caCert: string; readonly files: Readonly<Record<string, { readonly cert: string; readonly key: string }>> };
  /**
   * What an acknowledgement means in every zone (`nats.sync`): "always" (default), fsynced by
   * a server run with `sync_interval: always`; "interval", flushed on the server's timer.
   */
  readonly natsSync?: "always" | "interval";
  /** Stream capacities etc.; merged into every zone's storage section. */
  readonly storage?: Readonly<Record<string, unknown>>;
  /**
   * How each zone's deployables log in to its nats-server (nats.auth, nats.tls): a user, the
   * file holding its password and the CA of the server's certificate. Absent: anonymous, plain.
   */
  readonly natsLogin?: (zone: string) => { readonly user: string; readonly passwordFile: string; readonly ca: string } | undefined;
  /**
   * Anything else, per zone (e.g. logLevel); a `sync` entry is merged into the generated one
   * (links stay), a `policy` entry into the generated policy, field by field per identity.
   */
  readonly extra?: (zone: string) => Record<string, unknown>;
}

const list = (value: string | readonly string[]): string[] => (typeof value === "string" ? [value] : [...value]);

function login(opts: DocumentOptions, zone: string): Record<string, unknown> {
  const l = opts.natsLogin?.(zone);
  return l ? { auth: { user: l.user, passwordFile: l.passwordFile }, tls: { ca: l.ca } } : {};
}

/** Each zone's configuration document (what zone.yaml holds), by zone name. */
export function estateDocuments(opts: DocumentOptions): Record<string, Record<string, unknown>> {
  const { topology } = opts;
  const links = estateLinks(topology);
  const documents: Record<string, Record<string, unknown>> = {};
  const outboundOnly = new Set(topology.outboundOnly ?? []);
  const reverseUrlsOf = (receiver: string, dialer: string) => {
    if (!opts.reverseUrls) throw new Error(`the topology has outbound-only zones (${[...outboundOnly].join(", ")}): give reverseUrls, where they dial ${receiver}`);
    return list(opts.reverseUrls(receiver, dialer));
  };
  for (const zone of topology.zones) {
    const outgoing = links.filter((l) => l.sender === zone);
    const incoming = links.filter((l) => l.receiver === zone);
    const policy: Record<string, Record<string, unknown>> = {};
    for (const producer of topology.producers[zone] ?? []) {
      policy[producer] = { assertFromZones: [zone], targetZones: ["*"], writeBuckets: [...topology.buckets] };
    }
    for (const peer of new Set([...outgoing.map((l) => l.receiver), ...incoming.map((l) => l.sender)])) {
      policy[zoneIdentity(peer)] = {
        // As a client: the consumers it pulls from this zone and the artifacts they reference.
        consumers: outgoing.filter((l) => l.receiver === peer).map((l) => l.consumer),
        readBuckets: [...topology.buckets],
        // As a relay: what facts fetched from it may claim.
        assertFromZones: [...new Set(incoming.filter((l) => l.sender === peer).flatMap((l) => l.relayedOrigins))],
        // Only facts bound for this side of the estate (what the consumer there serves).
        targetZones: [...new Set(incoming.filter((l) => l.sender === peer).flatMap((l) => l.targets))],
        // The buckets the artifacts it relays are copied into (a relayed copy is a write, as a PutObject is).
        writeBuckets: incoming.some((l) => l.sender === peer) ? [...topology.buckets] : [],
      };
    }
    for (const operator of topology.operators ?? []) policy[operator] = { quarantine: ["read", "release", "drop"], console: "operate" };
    const { sync: syncExtra, policy: policyExtra, ...extra } = opts.extra?.(zone) ?? {};
    // A `policy` entry changes single fields of single identities (e.g. what a peer may relay).
    for (const [identity, fields] of Object.entries((policyExtra ?? {}) as Record<string, Record<string, unknown>>)) policy[identity] = { ...policy[identity], ...fields };
    const endpoints = opts.endpoints[zone]!;
    const identity = opts.pki.files[zoneIdentity(zone)]!;
    documents[zone] = {
      zone,
      nats: {
        servers: list(endpoints.nats), monitor: list(endpoints.natsMonitor), sync: opts.natsSync ?? "always",
        ...login(opts, zone),
      },
      storage: {
        zones: topology.zones.filter((z) => z !== zone),
        streams: { operational: {}, audit: {}, documents: {} },
        routing: [{ kind: "document", stream: "documents" }],
        consumers: outgoing.map((l) => ({ name: l.consumer, stream: l.category, skipOrigins: [...l.skipOrigins], targets: [...l.targets] })),
        // A local estate's capacity: JetStream reserves every bucket's maxBytes from the server's store.
        buckets: Object.fromEntries(topology.buckets.map((b) => [b, { maxBytes: "256MiB" }])),
        ...opts.storage,
      },
      tls: { ca: opts.pki.caCert, cert: identity.cert, key: identity.key },
      listen: endpoints.listen,
      health: endpoints.health,
      peers: Object.fromEntries([...new Set(incoming.map((l) => l.sender))].map((sender) => {
        // An outbound-only sender dials this zone; the link is driven from here all the same.
        if (outboundOnly.has(sender)) return [sender, { dial: "inbound", identity: zoneIdentity(sender) }];
        const url = opts.peerUrl(zone, sender);
        const endpoints = typeof url === "string" || Array.isArray(url) ? { url } : { urls: { egress: (url as { egress: Endpoints }).egress, ledger: (url as { ledger: Endpoints }).ledger } };
        return [sender, { ...endpoints, identity: zoneIdentity(sender) }];
      })),
      ...(outboundOnly.has(zone) ? { serve: Object.fromEntries([...new Set(outgoing.map((l) => l.receiver))].map((receiver) => [receiver, { dial: "outbound", urls: reverseUrlsOf(receiver, zone), identity: zoneIdentity(receiver) }])) } : {}),
      sync: { links: incoming.map((l) => ({ peer: l.sender, consumer: l.consumer })), ...(syncExtra as object | undefined) },
      policy,
      ...extra,
    };
  }
  return documents;
}
