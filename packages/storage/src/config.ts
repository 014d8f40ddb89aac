import { z } from "zod";
import { byteSize, durationMs } from "./units.js";

/** Zone names are configuration, not enums; they also become NATS subject tokens and domains. */
export const zoneName = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, "a zone name is a letter followed by up to 63 letters, digits, '-' or '_'");
/** Stream categories ("operational", "audit", "documents") become subject tokens and stream names. */
const categoryName = z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, "a stream category is lowercase letters, digits and '_'");
/** Subject kinds ("batch", "document") are the first part of a fact subject. */
export const kindPattern = /^[a-z][a-z0-9_-]{0,63}$/;
const bucketName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a bucket name is lowercase letters, digits, '-' and '_'");
const consumerName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/, "a consumer name is letters, digits, '-' and '_'");
const DEFAULT_DEDUPE_HORIZON_MS = 24 * 3_600_000;
const replicas = z.union([z.literal(1), z.literal(3)]);

const streamSchema = z.object({
  /** Facts older than this are removed, confirmed or not (alert before that happens). */
  maxAge: durationMs.default(30 * 86_400_000),
  /** Capacity; appends are refused with resource_exhausted from rejectAtPercent of it. */
  maxBytes: byteSize.default(10 * 2 ** 30),
  replicas: replicas.optional(),
}).strict();

const routeSchema = z.object({
  kind: z.string().regex(kindPattern).optional(),
  predicate: z.string().optional(),
  stream: categoryName,
}).strict().refine((r) => r.kind !== undefined || r.predicate !== undefined, "a routing rule needs a kind, a predicate or both");

const startSchema = z.discriminatedUnion("policy", [
  z.object({ policy: z.literal("all") }).strict(),
  z.object({ policy: z.literal("new") }).strict(),
  z.object({ policy: z.literal("from_offset"), offset: z.number().int().positive() }).strict(),
  z.object({ policy: z.literal("from_time"), time: z.iso.datetime({ offset: true }) }).strict(),
]);

const consumerSchema = z.object({
  name: consumerName,
  stream: categoryName,
  /** A NATS subject filter inside the stream, e.g. "facts.operational.batch"; default: the whole stream. */
  subjectFilter: z.string().optional(),
  /** Certificate identities allowed to fetch and confirm. */
  identities: z.array(z.string().min(1)).default([]),
  start: startSchema.default({ policy: "all" }),
  /** Facts whose envelope.from_zone is one of these are skipped (no echo on two-way links). */
  skipOrigins: z.array(zoneName).default([]),
  /**
   * Only facts whose envelope.to_zone is one of these: the zones on the consumer's side of
   * the estate, so a fact travels toward its destination only. Default: every fact.
   */
  targets: z.array(zoneName).min(1).optional(),
}).strict();

const bucketSchema = z.object({
  /**
   * Capacity: a full bucket refuses more (resource_exhausted) and keeps what it holds. Always
   * set, so no bucket can fill the disk the log shares; JetStream reserves it from the
   * server's max_file_store, like a stream's maxBytes.
   */
  maxBytes: byteSize.default(2 ** 30),
  replicas: replicas.optional(),
}).strict();

export const storageConfigSchema = z.object({
  /** This zone's name; also its JetStream domain unless `domain` says otherwise. */
  zone: zoneName,
  domain: z.string().regex(/^[A-Za-z0-9_-]+$/).optional(),
  /** Every zone name that may appear as from_zone or to_zone in an envelope. This zone is added. */
  zones: z.array(zoneName).default([]),
  /** Replicas for every stream, KV and object bucket unless overridden (3 for an HA zone). */
  replicas: replicas.default(1),
  streams: z.record(categoryName, streamSchema).default({
    operational: streamSchema.parse({}),
    audit: streamSchema.parse({ maxAge: "365d" }),
    documents: streamSchema.parse({ maxAge: "365d" }),
  }),
  /** First matching rule wins; unmatched facts go to defaultStream. */
  routing: z.array(routeSchema).default([]),
  defaultStream: categoryName.default("operational"),
  dedupe: z.object({
    /**
     * How long a producer's message_id is remembered (a retry after it is appended again).
     * Server memory is about 285 B per id inside it (docs/storage.md, "Cost per fact"), so it
     * is bounded by default: 24 h ≈ 2.5 GB at 100 facts/s, 250 MB at 10 facts/s.
     */
    horizon: durationMs.default(DEFAULT_DEDUPE_HORIZON_MS),
    /** An append claimed but not committed for this long is treated as abandoned. */
    pendingTimeout: durationMs.default(15_000),
    /**
     * JetStream's duplicate window on the fact streams: a publish delayed in
     * flight (a stalled link) beyond the pending timeout is still deduplicated
     * within it. Costs server memory per fact appended within the window.
     */
    inflightWindow: durationMs.default(60_000),
  }).strict().default({ horizon: DEFAULT_DEDUPE_HORIZON_MS, pendingTimeout: 15_000, inflightWindow: 60_000 }),
  limits: z.object({
    maxFactBytes: byteSize.default(64 * 1024),
    maxBatchMessages: z.number().int().positive().default(1_000),
    maxBatchBytes: byteSize.default(4 * 2 ** 20),
    /**
     * The largest artifact, for PutObject and for a relayed copy alike: refused from its
     * declared size, or as soon as more bytes arrive (the log, cursors and dedupe index share
     * the disk the buckets fill).
     */
    maxObjectBytes: byteSize.default(2 ** 30),
  }).strict().default({ maxFactBytes: 64 * 1024, maxBatchMessages: 1_000, maxBatchBytes: 4 * 2 ** 20, maxObjectBytes: 2 ** 30 }),
  backpressure: z.object({
    rejectAtPercent: z.number().min(1).max(100).default(80),
    /** How stale the fill estimate may get before it is refreshed from the server. */
    refreshInterval: durationMs.default(1_000),
  }).strict().default({ rejectAtPercent: 80, refreshInterval: 1_000 }),
  buckets: z.record(bucketName, bucketSchema).default({ "batch-files": { maxBytes: 2 ** 30 }, "document-files": { maxBytes: 2 ** 30 } }),
  objectChunkBytes: byteSize.default(128 * 1024),
  consumers: z.array(consumerSchema).default([]),
  /**
   * Relayed facts this zone can never admit as they are (docs/operations.md, "Quarantine").
   * Full (maxBytes), it refuses more and the link waits: nothing is dropped to make room.
   */
  quarantine: z.object({
    /** 0 (the default): an entry is kept until an operator releases or drops it. */
    maxAge: z.union([z.literal(0), durationMs]).default(0),
    maxBytes: byteSize.default(2 ** 30),
    /** bsfg_quarantine_alert_after_seconds: the shipped alert fires when an entry is older. */
    alertAfter: durationMs.default(15 * 60_000),
  }).strict().default({ maxAge: 0, maxBytes: 2 ** 30, alertAfter: 15 * 60_000 }),
  leaseTtl: durationMs.default(10_000),
  /** Apply changed retention/capacity to existing streams instead of refusing to start. */
  reconcileTopology: z.boolean().default(false),
}).strict().superRefine((cfg, ctx) => {
  const streams = Object.keys(cfg.streams);
  const known = (stream: string, path: (string | number)[]) => {
    if (!streams.includes(stream)) ctx.addIssue({ code: "custom", path, message: `stream "${stream}" is not configured (streams: ${streams.join(", ")})` });
  };
  known(cfg.defaultStream, ["defaultStream"]);
  cfg.routing.forEach((rule, i) => known(rule.stream, ["routing", i, "stream"]));
  if (cfg.dedupe.inflightWindow < 2 * cfg.dedupe.pendingTimeout) {
    ctx.addIssue({ code: "custom", path: ["dedupe", "inflightWindow"], message: "must be at least twice dedupe.pendingTimeout" });
  }
  const names = new Set<string>();
  cfg.consumers.forEach((consumer, i) => {
    known(consumer.stream, ["consumers", i, "stream"]);
    if (names.has(consumer.name)) ctx.addIssue({ code: "custom", path: ["consumers", i, "name"], message: `consumer "${consumer.name}" is defined twice` });
    names.add(consumer.name);
    const prefix = `facts.${consumer.stream}.`;
    if (consumer.subjectFilter !== undefined && !consumer.subjectFilter.startsWith(prefix)) {
      ctx.addIssue({ code: "custom", path: ["consumers", i, "subjectFilter"], message: `must start with "${prefix}"` });
    }
    // A misspelt zone would filter silently: a target nobody has drops every fact, and the
    // receiver then confirms past them.
    const estate = [cfg.zone, ...cfg.zones];
    for (const field of ["skipOrigins", "targets"] as const) {
      (consumer[field] ?? []).forEach((zone, j) => {
        if (!estate.includes(zone)) ctx.addIssue({ code: "custom", path: ["consumers", i, field, j], message: `"${zone}" is not a zone of this estate (${estate.join(", ")})` });
      });
    }
  });
});

export type StorageConfigInput = z.input<typeof storageConfigSchema>;
export type StorageConfig = z.output<typeof storageConfigSchema>;
export type ConsumerDefinition = z.output<typeof consumerSchema>;
export type StreamDefinition = z.output<typeof streamSchema>;

/** Validates storage configuration; throws an Error whose message lists every problem by path. */
export function parseStorageConfig(input: unknown): StorageConfig {
  const result = storageConfigSchema.safeParse(input);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  - ${issue.path.join(".") || "(root)"}: ${issue.message}`);
    throw new Error(`invalid storage configuration:\n${lines.join("\n")}`);
  }
  const cfg = result.data;
  if (!cfg.zones.includes(cfg.zone)) cfg.zones = [cfg.zone, ...cfg.zones];
  return cfg;
}
