import { isIP } from "node:net";
import { z } from "zod";
import { durationMs as duration, zoneName } from "@bsfg/storage";

const listen = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'write an address as "host:port", e.g. "0.0.0.0:8443" or "[::]:8443"');
const zoneOrAny = z.union([zoneName, z.literal("*")]);

function isAddressOrRange(text: string): boolean {
  const [address, prefix, ...rest] = text.split("/");
  const family = isIP(address ?? "");
  if (family === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/** What one certificate identity may do in this zone. Everything not listed is denied. */
export const identityPolicySchema = z.object({
  /** from_zone values it may assert in AppendFact ("*": any zone of the estate). */
  assertFromZones: z.array(zoneOrAny).default([]),
  /** to_zone values it may target in AppendFact. */
  targetZones: z.array(zoneOrAny).default([]),
  /** Consumers it may fetch from and confirm. */
  consumers: z.array(z.string()).default([]),
  /** Buckets it may PutObject into. */
  writeBuckets: z.array(z.string()).default([]),
  /** Buckets it may read through the peer service (FetchObject, StatObject). */
  readBuckets: z.array(z.string()).default([]),
  /** Quarantine operator verbs it may use (bsfg quarantine list|show|export: read; release; drop). */
  quarantine: z.array(z.enum(["read", "release", "drop"])).default([]),
  /**
   * The zone console over mTLS (listen.console): "view" sees it read-only; "operate" may also
   * pause and resume links and, with its quarantine verbs, release and drop from the page.
   * Absent: refused there (the probe port's console stays read-only for anyone who reaches it).
   */
  console: z.enum(["view", "operate"]).optional(),
}).strict();

const httpsUrl = z.url({ protocol: /^https$/, error: 'write an endpoint as "https://host:port"' });
const httpUrl = z.url({ protocol: /^https?$/, error: 'write a monitoring endpoint as "http://host:8222"' });
/** One endpoint, or the endpoints of a service's replicas (tried in turn: a failing one hands over to the next). */
const endpoints = z.union([httpsUrl, z.array(httpsUrl).min(1)]);

/** A zone this zone pulls facts from. */
export const peerSchema = z.object({
  /**
   * Who opens the connection. "outbound" (default): this zone connects to the peer's
   * egress and ledger (`url` or `urls`). "inbound": the peer accepts no inbound
   * connection and dials this zone's reverse listener (`listen.reverse`) instead; this
   * zone still drives the link over that connection (docs/architecture.md, "Outbound-only zones").
   */
  dial: z.enum(["outbound", "inbound"]).default("outbound"),
  /** The peer's all-in-one endpoint(s) … */
  url: endpoints.optional(),
  /** … or its egress (FetchFacts, FetchObject, StatObject) and ledger (ConfirmReceipt) endpoints; a list for replicas. */
  urls: z.object({ egress: endpoints.optional(), ledger: endpoints.optional() }).strict().optional(),
  /**
   * The identity (CN or SAN) the peer's certificate must carry (its server certificate, or
   * with dial: inbound the client certificate it dials in with). Facts fetched from the
   * peer are appended here only as far as this identity's policy allows: it is the
   * relaying identity.
   */
  identity: z.string().min(1),
}).strict();

/**
 * A zone that pulls from this one over connections this zone opens: this zone accepts no
 * connection from it (an outbound-only plant). It dials every listed reverse listener —
 * one per replica of the peer's sync worker — and serves its verbs over them.
 */
export const servedPeerSchema = z.object({
  dial: z.literal("outbound", { error: 'write dial: outbound (this zone dials the peer); a peer that connects in needs no entry here' }),
  /** The peer's reverse listeners ("https://host:port", its `listen.reverse`), one per sync replica. */
  urls: z.array(httpsUrl).min(1),
  /** The identity (CN or SAN) the peer's listener certificate must carry. */
  identity: z.string().min(1),
}).strict();

/** "This zone pulls consumer C from peer P." */
export const linkSchema = z.object({
  peer: zoneName,
  /** The consumer's name in the peer zone. */
  consumer: z.string().min(1),
}).strict();

export const syncSchema = z.object({
  links: z.array(linkSchema).default([]),
  /** Facts per FetchFacts (the peer caps it at its fetch.maxLimit). */
  pageLimit: z.number().int().positive().default(500),
  /** Pages fetched ahead while one is shipped (0: fetch each page after the last is shipped). */
  prefetch: z.number().int().min(0).max(8).default(1),
  /** Long poll of an empty link (the peer caps it at its fetch.maxWait). */
  maxWait: duration.default(20_000),
  /** Backoff after a failure: exponential from `initial` to `max`, each wait between half and all of its step. */
  backoff: z.object({ initial: duration.default(250), max: duration.default(30_000) }).strict().default({ initial: 250, max: 30_000 }),
  /** Client certificate toward peers; default: the zone's own tls.cert/key. */
  tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
  /** gzip on peer links: for slow WAN links; costs CPU on both ends. */
  compression: z.enum(["none", "gzip"]).default("none"),
}).strict();

export const zoneConfigSchema = z.object({
  zone: zoneName,
  nats: z.object({
    servers: z.array(z.string().min(1)).min(1).default(["nats://127.0.0.1:4222"]),
    /** JetStream domain; default: the zone name. */
    domain: z.string().regex(/^[A-Za-z0-9_-]+$/).optional(),
    /**
     * When an acknowledged fact is on disk. "always" (default): the server fsyncs every write
     * before it acknowledges (nats-server `jetstream { sync_interval: always }`), so an
     * acknowledged fact survives power loss; the zone reads each server's /varz and is not
     * ready until every one says so. "interval": the server flushes on its own timer (2 min by
     * default); a power loss or kernel crash loses what was acknowledged since the last flush.
     */
    sync: z.enum(["always", "interval"]).default("always"),
    /** Each server's monitoring endpoint ("http://host:8222"), where the zone reads /varz. */
    monitor: z.array(httpUrl).default([]),
    /**
     * How the zone's deployables log in to its nats-server (docs/security.md, "The substrate"):
     * a user and a file holding its password (read at start-up, trailing newline ignored).
     * Without it the connection is anonymous, which only a server without authorization takes.
     */
    auth: z.object({
      user: z.string().min(1),
      passwordFile: z.string().min(1),
    }).strict().optional(),
    /**
     * TLS to the nats-server: the CA its certificate chains to; cert and key when the server
     * also verifies clients. Servers are then reached as tls:// (nats:// URLs upgrade).
     */
    tls: z.object({
      ca: z.string().min(1),
      cert: z.string().min(1).optional(),
      key: z.string().min(1).optional(),
    }).strict().refine((t) => (t.cert === undefined) === (t.key === undefined), { message: "give both cert and key (a client certificate for the nats-server), or neither" }).optional(),
  }).strict().default({ servers: ["nats://127.0.0.1:4222"], sync: "always", monitor: [] })
    .refine((nats) => nats.sync === "interval" || nats.monitor.length > 0, {
      path: ["monitor"],
      message: "give every server's monitoring endpoint (e.g. [\"http://127.0.0.1:8222\"]): with nats.sync: always the zone checks there that the server fsyncs each write; or set nats.sync: interval to accept the server's periodic flush",
    }),
  /** Everything about the zone's log: see @bsfg/storage (zones, streams, routing, consumers, buckets, …). */
  storage: z.record(z.string(), z.unknown()).default({}),
  tls: z.object({
    /** CA bundle that client certificates must chain to (and that peers' server certificates chain to). */
    ca: z.string().min(1),
    cert: z.string().min(1),
    key: z.string().min(1),
    /**
     * How often the three files (and sync.tls's) are read for a rotated certificate, which is
     * then used for new connections without a restart; "off": only on SIGHUP.
     */
    reloadCheck: z.union([z.literal("off"), duration]).default(60_000),
  }).strict(),
  /** Where each service listens; the all-in-one process uses `zone`. */
  listen: z.object({
    zone: listen.default("127.0.0.1:8443"),
    ingest: listen.default("127.0.0.1:8444"),
    egress: listen.default("127.0.0.1:8445"),
    ledger: listen.default("127.0.0.1:8446"),
    /** The sync worker's reverse listener, where peers with dial: inbound connect (each sync replica its own). */
    reverse: listen.optional(),
    /**
     * The zone console over HTTPS with client certificates (each sync replica its own): for
     * identities with a `console` permission, the only way to act from the page. Off unless set.
     */
    console: listen.optional(),
  }).strict().default({ zone: "127.0.0.1:8443", ingest: "127.0.0.1:8444", egress: "127.0.0.1:8445", ledger: "127.0.0.1:8446" }),
  /** Plain HTTP per deployable for /healthz and /readyz (and /metrics later): probes carry no client certificate. */
  health: z.object({
    zone: listen.optional(),
    ingest: listen.optional(),
    egress: listen.optional(),
    ledger: listen.optional(),
    sync: listen.optional(),
    /**
     * Addresses and CIDR ranges that may read the probe ports (e.g. ["127.0.0.0/8", "10.20.0.0/24"]);
     * others are answered 403 / probe_not_allowed. Absent: whoever reaches a port.
     */
    allowFrom: z.array(z.string().refine(isAddressOrRange, 'write an address or a CIDR range, e.g. "127.0.0.1" or "172.29.14.0/24"')).min(1).optional(),
  }).strict().default({}),
  fetch: z.object({
    /** The most facts one FetchFacts returns, whatever the caller asks. */
    maxLimit: z.number().int().positive().default(1_000),
    /** Byte budget of one page. */
    maxBytes: z.number().int().positive().default(4 * 2 ** 20),
    /** The longest a FetchFacts long poll waits. */
    maxWait: duration.default(30_000),
  }).strict().default({ maxLimit: 1_000, maxBytes: 4 * 2 ** 20, maxWait: 30_000 }),
  /** What one caller may hold of a deployable's listening port (docs/security.md, "Resource use"). */
  connections: z.object({
    /** Client connections one identity may hold at once; calls on more answer resource_exhausted. */
    perIdentity: z.number().int().positive().default(16),
  }).strict().default({ perIdentity: 16 }),
  /** Zones this zone pulls from, by zone name. */
  peers: z.record(zoneName, peerSchema).default({}),
  /** Zones that pull from this one over connections this zone dials (dial: outbound), by zone name. */
  serve: z.record(zoneName, servedPeerSchema).default({}),
  /** The replication worker: which consumers of which peers this zone pulls. */
  sync: syncSchema.default({ links: [], pageLimit: 500, prefetch: 1, maxWait: 20_000, backoff: { initial: 250, max: 30_000 }, compression: "none" }),
  /** Per certificate identity (CN or SAN); deny by default. */
  policy: z.record(z.string().min(1), identityPolicySchema).default({}),
  /** How long a stopping service lets in-flight calls finish before closing them. */
  shutdownGrace: duration.default(10_000),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
}).strict();

export type ZoneConfigInput = z.input<typeof zoneConfigSchema>;
export type IdentityPolicy = z.output<typeof identityPolicySchema>;
export type PeerConfig = z.output<typeof peerSchema>;
export type ServedPeerConfig = z.output<typeof servedPeerSchema>;
export type LinkConfig = z.output<typeof linkSchema>;
