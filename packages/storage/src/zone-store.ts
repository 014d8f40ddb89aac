import { jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { connect } from "@nats-io/transport-node";
import { Code, Reason, rejection, type AppendResult, type FactMessage, type ObjectRef } from "@bsfg/proto";
import { appendBatch, type AppendContext } from "./append.js";
import { pendingClock } from "./pending-clock.js";
import { recovery } from "./recover.js";
import { artifacts, type Artifacts, type ObjectHeaderInput, type ObjectReader } from "./artifacts.js";
import { fillGauge, type FillGauge } from "./backpressure.js";
import type { ConsumerDefinition, StorageConfig } from "./config.js";
import { consumerRegistry, type ConsumerRegistry } from "./consumer-registry.js";
import { cursors, type Cursors } from "./cursors.js";
import { dedupeIndex } from "./dedupe-index.js";
import { publisher } from "./publisher.js";
import { leases, type Leases } from "./leases.js";
import { linkControls, type LinkControls } from "./link-controls.js";
import { pageReaders } from "./page-readers.js";
import { readFacts, type FactPage, type PageLimits } from "./read-facts.js";
import { readRange } from "./read-range.js";
import { factStreamName, factSubject } from "./routing.js";
import { ApiCode, apiCode, substrateRejection } from "./substrate-errors.js";
import type { Substrate } from "./substrate.js";
import { configDiff, CONSUMERS_BUCKET, CURSORS_BUCKET, desiredStreams, ensureStream, LEASES_BUCKET, LINK_CONTROLS_BUCKET, mismatch } from "./topology.js";
import { prepareBatch } from "./validate.js";
import { summarizeQuarantine, type QuarantineSummary } from "./quarantine.js";
import { admitArtifacts } from "./artifact-admission.js";
import { nanos } from "./units.js";

/** A zone's storage: its fact log, cursors, consumer registry and artifacts on JetStream. */
export interface ZoneStore {
  readonly config: StorageConfig;
  readonly connection: NatsConnection;
  /** The zone's JetStream for paths that do not go through the producer's append (log shipping). */
  readonly substrate: Substrate;
  /**
   * Validates and appends a batch; see docs/storage.md for the guarantees. A fact
   * whose artifact is not stored here as referenced refuses the batch (failed_precondition).
   */
  append(messages: readonly FactMessage[], options?: AppendOptions): Promise<AppendResult[]>;
  /** Facts after `afterOffset` as `consumer` sees them. */
  read(consumer: Pick<ConsumerDefinition, "stream" | "subjectFilter" | "skipOrigins" | "targets">, afterOffset: number, limits?: Partial<PageLimits>): Promise<FactPage>;
  /** A registered consumer's definition, or not_found. */
  consumer(name: string): Promise<ConsumerDefinition>;
  /** A consumer's confirmed cursor. */
  cursor(name: string): Promise<number>;
  /**
   * The page right after a consumer's confirmed cursor, or after `afterOffset` when that is
   * higher (a puller reading ahead of its confirms); failed_precondition beyond the log.
   */
  readNext(name: string, limits?: Partial<PageLimits>, afterOffset?: number): Promise<FactPage & { cursor: number }>;
  /** Confirms receipt up to `offset`; monotonic; failed_precondition beyond the log. */
  confirm(name: string, offset: number): Promise<number>;
  readonly consumers: ConsumerRegistry;
  readonly cursors: Cursors;
  readonly artifacts: Artifacts;
  /** Leases (one holder per name), e.g. the sync worker's one active replica per peer link. */
  readonly leases: Leases;
  /** Operators' pauses of peer links, obeyed by every sync replica. */
  readonly linkControls: LinkControls;
  putObject(header: ObjectHeaderInput, content: AsyncIterable<Uint8Array>): Promise<ObjectRef>;
  statObject(bucket: string, key: string): Promise<ObjectRef | undefined>;
  getObject(bucket: string, key: string, offset?: number): Promise<ObjectReader>;
  /** The last offset of a stream category's log. */
  highWater(stream: string): Promise<number>;
  /**
   * Calls `onAppend` whenever something is published on a stream category's
   * subjects (possibly also for a publish JetStream then refused): a cheap
   * wake-up for long polls. Returns the function that stops it.
   */
  watchAppends(stream: string, onAppend: () => void): () => void;
  /** True when the zone's JetStream answers. */
  ready(): Promise<boolean>;
  /** Fill of a stream category in percent of its capacity. */
  fillPercent(stream: string): Promise<number>;
  /** The quarantine's waiting entries, for the gauges (with storage.quarantine.alertAfter). */
  quarantineSummary(): Promise<QuarantineSummary & { readonly alertAfterMs: number }>;
  /** What topology setup did, for start-up logs. */
  readonly topologyReport: string[];
  close(): Promise<void>;
}

export interface AppendOptions {
  /**
   * W3C trace context (traceparent, tracestate) to store with each fact, by
   * position in the batch: the context of the call that appends it. Facts
   * already stored keep the context they were stored with.
   */
  readonly traceContext?: (index: number) => Readonly<Record<string, string>> | undefined;
}

export interface OpenOptions {
  /** NATS servers of this zone; or pass an existing `connection`. */
  readonly servers?: string | string[];
  readonly connection?: NatsConnection;
  /** Connection name shown by the server (e.g. "bsfg-ingest"). */
  readonly name?: string;
  /** User and password to log in to the servers (nats.auth). */
  readonly auth?: { readonly user: string; readonly pass: string } | undefined;
  /** TLS to the servers, PEM contents (nats.tls): required as soon as it is given. */
  readonly tls?: { readonly ca: string; readonly cert?: string | undefined; readonly key?: string | undefined } | undefined;
  /** How long an append waits for a concurrent writer of the same message_id. */
  readonly pendingWaitMs?: number;
  /**
   * The zone's nats.sync: how its servers make writes durable. It decides how a batch keeps
   * per-subject order when a write fails (docs/storage.md): atomic batches where every write
   * is fsynced anyway ("always", the default), per-subject waves of publishes otherwise.
   */
  readonly durability?: "always" | "interval";
}

const PUBLISH_TIMEOUT_MS = 5_000;
/** Atomic batch publish (allow_atomic) arrived in 2.12; everything is tested on 2.15. */
const MIN_SERVER_VERSION: [number, number, number] = [2, 12, 0];
const CONSUMER_CACHE_MS = 5_000;
const DEFAULT_PAGE: PageLimits = { limit: 500, maxBytes: 4 * 2 ** 20 };

export async function openZoneStore(cfg: StorageConfig, opts: OpenOptions): Promise<ZoneStore> {
  const nc = opts.connection ?? await connect({
    servers: opts.servers ?? "nats://127.0.0.1:4222",
    name: opts.name ?? `bsfg-${cfg.zone}`,
    ...(opts.auth ? { user: opts.auth.user, pass: opts.auth.pass } : {}),
    ...(opts.tls ? { tls: { ca: opts.tls.ca, ...(opts.tls.cert ? { cert: opts.tls.cert, key: opts.tls.key } : {}) } } : {}),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Notice a stalled link within ~30 s, well inside the in-flight window.
    pingInterval: 10_000,
    maxPingOut: 3,
  });
  try {
    return await assembleZoneStore(cfg, nc, opts);
  } catch (err) {
    // A zone that cannot start (e.g. a topology mismatch) must not leave its connection open.
    if (!opts.connection) await nc.close().catch(() => undefined);
    throw err;
  }
}

async function assembleZoneStore(cfg: StorageConfig, nc: NatsConnection, opts: OpenOptions): Promise<ZoneStore> {
  const domain = cfg.domain ?? cfg.zone;
  const jsm = await jetstreamManager(nc, { domain });
  const js = jetstream(nc, { domain });
  const substrate: Substrate = { nc, js, jsm, apiPrefix: `$JS.${domain}.API`, publisher: publisher(nc, PUBLISH_TIMEOUT_MS) };
  const report: string[] = [];
  const { cursorKv, registryKv, leaseKv, controlKv, buckets } = await ensureTopology(cfg, js, jsm, report, nc.info?.version ?? "0.0.0");
  const registry = consumerRegistry(registryKv);
  const cursorStore = cursors(cursorKv);
  for (const consumer of cfg.consumers) {
    report.push(`consumer ${consumer.name}: ${await registry.register(consumer)}`);
    if (await cursorStore.get(consumer.name) === undefined) {
      await cursorStore.initialize(consumer.name, await startCursor(substrate, consumer));
    }
  }
  const fill: FillGauge = fillGauge(jsm, { rejectAtPercent: cfg.backpressure.rejectAtPercent, refreshIntervalMs: cfg.backpressure.refreshInterval });
  const objects = artifacts(substrate, buckets, cfg.objectChunkBytes, cfg.limits.maxObjectBytes);
  const appendContext: AppendContext = {
    substrate,
    index: dedupeIndex(substrate),
    recovery: recovery(substrate, cfg.dedupe.inflightWindow),
    fill,
    pendingClock: pendingClock(),
    pendingTimeoutMs: cfg.dedupe.pendingTimeout,
    pendingWaitMs: opts.pendingWaitMs ?? cfg.dedupe.pendingTimeout + 1_000,
    atomicRuns: (opts.durability ?? "always") === "always",
  };
  // A page must fit the largest fact, or a consumer could stall on it.
  const minPageBytes = cfg.limits.maxFactBytes + 4096;

  // Definitions change only when a deployment registers new configuration; a few
  // seconds of caching saves a KV read on every fetch and confirm.
  const definitions = new Map<string, { def: ConsumerDefinition; readAt: number }>();
  async function consumer(name: string): Promise<ConsumerDefinition> {
    const cached = definitions.get(name);
    if (cached && Date.now() - cached.readAt < CONSUMER_CACHE_MS) return cached.def;
    const def = await registry.get(name).catch((err) => { throw substrateRejection(err, "reading the consumer registry"); });
    if (!def) throw rejection(Code.NotFound, Reason.UnknownConsumer, `consumer "${name}" is not registered in zone ${cfg.zone}`, { consumer: name });
    definitions.set(name, { def, readAt: Date.now() });
    return def;
  }
  async function cursor(name: string): Promise<number> {
    const value = await cursorStore.get(name).catch((err) => { throw substrateRejection(err, "reading a cursor"); });
    if (value === undefined) throw rejection(Code.NotFound, Reason.UnknownConsumer, `consumer "${name}" has no cursor in zone ${cfg.zone}`, { consumer: name });
    return value;
  }
  // A log's last offset never decreases: any value seen is a lower bound that
  // spares a confirm from asking the stream again.
  const seenHighWater = new Map<string, number>();
  const saw = (stream: string, offset: number) => {
    if (offset > (seenHighWater.get(stream) ?? 0)) seenHighWater.set(stream, offset);
    return offset;
  };
  function highWater(stream: string): Promise<number> {
    return jsm.streams.info(factStreamName(stream)).then((i) => saw(stream, i.state.last_seq), (err) => { throw substrateRejection(err, "reading the log"); });
  }
  const readers = pageReaders(substrate);
  async function read(def: Pick<ConsumerDefinition, "stream" | "subjectFilter" | "skipOrigins" | "targets"> & { name?: string }, afterOffset: number, limits: Partial<PageLimits> = {}) {
    const page = { limit: limits.limit ?? DEFAULT_PAGE.limit, maxBytes: Math.max(limits.maxBytes ?? DEFAULT_PAGE.maxBytes, minPageBytes), messages: limits.messages ?? "decoded", traceContext: limits.traceContext ?? false };
    const result = await readFacts(substrate, readers, def, afterOffset, page).catch((err) => { throw substrateRejection(err, "reading facts"); });
    saw(def.stream, result.highWater);
    return result;
  }

  return {
    config: cfg,
    connection: nc,
    substrate,
    async append(messages, options = {}) {
      const { traceContext } = options;
      const prepared = traceContext ? prepareBatch(cfg, messages).map((p, i) => ({ ...p, traceContext: traceContext(i) })) : prepareBatch(cfg, messages);
      await admitArtifacts(cfg.zone, messages, (bucket, key) => objects.stat(bucket, key));
      return appendBatch(appendContext, prepared).catch((err) => { throw substrateRejection(err, "appending facts"); });
    },
    read,
    consumer,
    cursor,
    async readNext(name, limits, afterOffset) {
      const def = await consumer(name);
      const at = await cursor(name);
      if (afterOffset === undefined || afterOffset <= at) return { ...(await read(def, at, limits)), cursor: at };
      const last = afterOffset <= (seenHighWater.get(def.stream) ?? 0) ? afterOffset : await highWater(def.stream);
      if (afterOffset > last) {
        throw rejection(Code.FailedPrecondition, Reason.CursorBeyondLog, `after_offset ${afterOffset} is beyond the last offset ${last} of stream ${def.stream}`, { consumer: name, offset: String(afterOffset), high_water: String(last) });
      }
      return { ...(await read(def, afterOffset, limits)), cursor: at };
    },
    async confirm(name, offset) {
      const def = await consumer(name);
      const current = await cursor(name);
      if (offset <= current) return current;
      const last = offset <= (seenHighWater.get(def.stream) ?? 0) ? offset : await highWater(def.stream);
      if (offset > last) {
        throw rejection(Code.FailedPrecondition, Reason.CursorBeyondLog, `offset ${offset} is beyond the last offset ${last} of stream ${def.stream}; nothing there was delivered`, { consumer: name, offset: String(offset), high_water: String(last) });
      }
      return cursorStore.advance(name, offset).catch((err) => { throw substrateRejection(err, "advancing a cursor"); });
    },
    consumers: registry,
    cursors: cursorStore,
    artifacts: objects,
    leases: leases(leaseKv, cfg.leaseTtl),
    linkControls: linkControls(controlKv, jsm, LINK_CONTROLS_BUCKET),
    putObject: (header, content) => objects.put(header, content),
    statObject: (bucket, key) => objects.stat(bucket, key),
    getObject: (bucket, key, offset) => objects.get(bucket, key, offset),
    fillPercent: (stream) => fill.percent(stream),
    quarantineSummary: async () => ({ ...await summarizeQuarantine(substrate), alertAfterMs: cfg.quarantine.alertAfter }),
    highWater,
    watchAppends(stream, onAppend) {
      const sub = nc.subscribe(factSubject(stream, ">"), { callback: () => onAppend() });
      return () => sub.unsubscribe();
    },
    ready: () => jsm.getAccountInfo().then(() => true, () => false),
    topologyReport: report,
    async close() {
      readers.close();
      substrate.publisher.close();
      if (!opts.connection) await nc.drain().catch(() => nc.close());
    },
  };
}

async function ensureTopology(cfg: StorageConfig, js: JetStreamClient, jsm: JetStreamManager, report: string[], serverVersion: string) {
  if (olderThan(serverVersion, MIN_SERVER_VERSION)) {
    // Older servers accept stream options they do not know and drop them, and before 2.10.19
    // a replicated stream checked "expected last subject sequence" only before proposing, so
    // two racing claims or cursor updates could both win (nats-server#4320, #5794).
    throw rejection(Code.FailedPrecondition, Reason.TopologyMismatch, `nats-server ${serverVersion} is older than ${MIN_SERVER_VERSION.join(".")}, the oldest this gateway runs on (atomic compare-and-set on replicated streams, atomic batch publish); it is built and tested on 2.15`);
  }
  for (const stream of desiredStreams(cfg)) {
    report.push(`stream ${stream.name}: ${await whilePlacing(() => ensureStream(jsm, stream, cfg.reconcileTopology))}`);
  }
  const kvm = new Kvm(js);
  const kvBucket = async (name: string, ttlMs?: number): Promise<KV> => {
    const kv = await whilePlacing(() => kvm.create(name, { history: 1, replicas: cfg.replicas, storage: StorageType.File, ...(ttlMs ? { ttl: ttlMs } : {}) }));
    await untilDirectGetsAnswer(kv);
    await verifyBacking(jsm, `KV_${name}`, { num_replicas: cfg.replicas, max_age: ttlMs ? nanos(ttlMs) : 0, max_msgs_per_subject: 1 });
    report.push(`kv ${name}: ready`);
    return kv;
  };
  const cursorKv = await kvBucket(CURSORS_BUCKET);
  const registryKv = await kvBucket(CONSUMERS_BUCKET);
  const leaseKv = await kvBucket(LEASES_BUCKET, cfg.leaseTtl);
  const controlKv = await kvBucket(LINK_CONTROLS_BUCKET);
  const objm = new Objm(js);
  const buckets = new Map<string, ObjectStore>();
  for (const [name, bucket] of Object.entries(cfg.buckets)) {
    const replicas = bucket.replicas ?? cfg.replicas;
    buckets.set(name, await whilePlacing(() => objm.create(name, { replicas, storage: StorageType.File, max_bytes: bucket.maxBytes })));
    report.push(`object bucket ${name}: ${await ensureBucketCapacity(jsm, `OBJ_${name}`, bucket.maxBytes, cfg.reconcileTopology)}`);
    await verifyBacking(jsm, `OBJ_${name}`, { num_replicas: replicas, max_bytes: bucket.maxBytes },
      "set storage.reconcileTopology: true once to apply the configured maxBytes (or configure the bucket's current one); replicas need the bucket recreated");
  }
  return { cursorKv, registryKv, leaseKv, controlKv, buckets };
}

/** How long start-up waits for a cluster that is not ready yet (placement, direct gets) before failing. */
const CLUSTER_WAIT_MS = 30_000;

/**
 * Runs `op` again, with a growing pause, while it fails the way a cluster that is still
 * settling does (`settling(err)`); anything else, or still failing after CLUSTER_WAIT_MS, fails
 * the start with the server's own error.
 */
async function whileSettling<T>(settling: (err: unknown) => boolean, op: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + CLUSTER_WAIT_MS;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      return await op();
    } catch (err) {
      if (!settling(err) || performance.now() + wait > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/**
 * Creates a stream or bucket, waiting while the cluster cannot place it: a node that just
 * started (or restarted) is "offline" to the meta leader until its first statistics arrive,
 * and a stream with max_bytes is placed only on peers whose free store is known.
 */
const whilePlacing = <T>(create: () => Promise<T>) => whileSettling((err) => apiCode(err) === ApiCode.NoSuitablePeers, create);

/**
 * KV reads are direct gets, answered by every replica that serves them. On a cluster, right
 * after the bucket was created, none may answer yet ("no responders", seen on a three-node
 * zone's first start): wait until a read of a key that does not exist is answered.
 */
const untilDirectGetsAnswer = (kv: KV) => whileSettling((err) => /no responders/i.test(String(err)), () => kv.get("bsfg-ready-probe"));

/**
 * A bucket made before its capacity was configured (or by a gateway without a default) keeps
 * its old max_bytes: with reconcileTopology it gets the configured one, as a stream does.
 */
async function ensureBucketCapacity(jsm: JetStreamManager, stream: string, maxBytes: number, reconcile: boolean): Promise<string> {
  const { config } = await jsm.streams.info(stream);
  if (config.max_bytes === maxBytes) return "ready";
  if (!reconcile) return "ready"; // verifyBacking names the difference and the way out
  await jsm.streams.update(stream, { ...config, max_bytes: maxBytes });
  return `max_bytes ${config.max_bytes} → ${maxBytes}`;
}

/** KV and Object Store buckets are created by their libraries; check what the server actually has. */
async function verifyBacking(jsm: JetStreamManager, stream: string, expected: Record<string, number>, hint = "change or recreate the bucket to match the configuration"): Promise<void> {
  const actual = (await jsm.streams.info(stream)).config;
  const diffs = configDiff(expected, actual, Object.keys(expected));
  if (diffs.length > 0) throw mismatch(stream, diffs, hint);
}

/** Where a newly registered consumer's cursor starts, from its start policy. */
async function startCursor(substrate: Substrate, consumer: ConsumerDefinition): Promise<number> {
  const { jsm } = substrate;
  const stream = factStreamName(consumer.stream);
  switch (consumer.start.policy) {
    case "all":
      return 0;
    case "new":
      return (await jsm.streams.info(stream)).state.last_seq;
    case "from_offset":
      return consumer.start.offset - 1;
    case "from_time": {
      const range = await readRange(substrate, stream, { startTime: new Date(consumer.start.time), limit: 1 });
      const first = range.messages[0];
      return first ? first.seq - 1 : (await jsm.streams.info(stream)).state.last_seq;
    }
  }
}

function olderThan(version: string, [major, minor, patch]: [number, number, number]): boolean {
  const [a = 0, b = 0, c = 0] = version.split(/[.-]/).map(Number);
  return a !== major ? a < major : b !== minor ? b < minor : c < patch;
}
