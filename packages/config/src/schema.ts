import { z } from "zod";
import { durationMs as duration, zoneName } from "@bsfg/storage";

const listen = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'write an address as "host:port", e.g. "0.0.0.0:8443" or "[::]:8443"');
const zoneOrAny = z.union([zoneName, z.literal("*")]);

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
}).strict();

export const zoneConfigSchema = z.object({
  zone: zoneName,
  nats: z.object({
    servers: z.array(z.string().min(1)).min(1).default(["nats://127.0.0.1:4222"]),
    /** JetStream domain; default: the zone name. */
    domain: z.string().regex(/^[A-Za-z0-9_-]+$/).optional(),
  }).strict().default({ servers: ["nats://127.0.0.1:4222"] }),
  /** Everything about the zone's log: see @bsfg/storage (zones, streams, routing, consumers, buckets, …). */
  storage: z.record(z.string(), z.unknown()).default({}),
  tls: z.object({
    /** CA bundle that client certificates must chain to (and that peers' server certificates chain to). */
    ca: z.string().min(1),
    cert: z.string().min(1),
    key: z.string().min(1),
  }).strict(),
  /** Where each service listens; the all-in-one process uses `zone`. */
  listen: z.object({
    zone: listen.default("127.0.0.1:8443"),
    ingest: listen.default("127.0.0.1:8444"),
    egress: listen.default("127.0.0.1:8445"),
    ledger: listen.default("127.0.0.1:8446"),
  }).strict().default({ zone: "127.0.0.1:8443", ingest: "127.0.0.1:8444", egress: "127.0.0.1:8445", ledger: "127.0.0.1:8446" }),
  /** Plain HTTP per deployable for /healthz and /readyz (and /metrics later): probes carry no client certificate. */
  health: z.object({
    zone: listen.optional(),
    ingest: listen.optional(),
    egress: listen.optional(),
    ledger: listen.optional(),
  }).strict().default({}),
  fetch: z.object({
    /** The most facts one FetchFacts returns, whatever the caller asks. */
    maxLimit: z.number().int().positive().default(1_000),
    /** Byte budget of one page. */
    maxBytes: z.number().int().positive().default(4 * 2 ** 20),
    /** The longest a FetchFacts long poll waits. */
    maxWait: duration.default(30_000),
  }).strict().default({ maxLimit: 1_000, maxBytes: 4 * 2 ** 20, maxWait: 30_000 }),
  /** Per certificate identity (CN or SAN); deny by default. */
  policy: z.record(z.string().min(1), identityPolicySchema).default({}),
  /** How long a stopping service lets in-flight calls finish before closing them. */
  shutdownGrace: duration.default(10_000),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
}).strict();

export type ZoneConfigInput = z.input<typeof zoneConfigSchema>;
export type IdentityPolicy = z.output<typeof identityPolicySchema>;
