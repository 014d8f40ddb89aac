/**
 * Storage-level AppendFact throughput against raw pipelined JetStream
 * publishes into the same server, in the same run — once per durability
 * setting (--sync), each on its own server started with that setting.
 *
 * Also what amortizes fsync under "always": raw publishes of 256 bytes with
 * 1 and 100 in flight, and atomic batch publishes (nats-server ≥ 2.12,
 * ADR-50) of 100 messages per commit, one batch in flight. On nats-server
 * 2.15.1 an R1 file stream under sync_interval always fsyncs once per plain
 * publish however many are in flight, but about 4 times per committed batch of
 * 100 (counted with strace -c -e fsync on the server); a batch also stages
 * its messages in a store of its own (files created per batch), which is what
 * it costs without fsync.
 *
 *   pnpm bench:storage [-- --facts 100000 --rounds 3 --amortize-facts 20000 --sync always,interval | --quick]
 */
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager, DiscardPolicy, StorageType, type JetStreamClient } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { FactMessageSchema } from "@bsfg/proto";
import { openZoneStore, parseStorageConfig, publisher, type Publisher, type ZoneStore } from "@bsfg/storage";
import { startNatsServer } from "@bsfg/testkit";
import { assertServerSync, eachSetting, parseSyncSettings, SYNC_COLUMN, syncIntervalFor, syncIntervals, syncOption, type NatsSync } from "./durability.js";
import { printTable, secondsSince, writeResults, benchArgs, type Row } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string" },
  batch: { type: "string", default: "100" },
  "raw-in-flight": { type: "string", default: "256" },
  "batches-in-flight": { type: "string", default: "4" },
  rounds: { type: "string" },
  // Facts per round of each fsync-amortization case (1 in flight is slow under "always").
  "amortize-facts": { type: "string" },
  ...syncOption,
  // A small run to check that everything works: 10,000 facts (2,000 per amortization case), one round.
  quick: { type: "boolean", default: false },
} });
const quick = values.quick;
const facts = Number(values.facts ?? (quick ? 10_000 : 100_000));
const batchSize = Number(values.batch);
const rawInFlight = Number(values["raw-in-flight"]);
const batchesInFlight = Number(values["batches-in-flight"]);
const rounds = Number(values.rounds ?? (quick ? 1 : 3));
const amortizeFacts = Number(values["amortize-facts"] ?? (quick ? 2_000 : 20_000));
const settings = parseSyncSettings(values.sync);
const FACT_BYTES = 256;
/** Messages per atomic batch commit, and the larger in-flight count of the raw amortization case. */
const ATOMIC_BATCH = 100;
const TARGET = 0.7;

/** One row of the table: a case under one setting, its rate in every round. */
interface CaseResult {
  readonly key: string;
  readonly name: string;
  readonly natsSync: NatsSync;
  readonly factsPerSecond: number[];
}

interface SettingResult {
  readonly natsSync: NatsSync;
  readonly natsServer: string | undefined;
  readonly cases: CaseResult[];
}

interface Case {
  readonly key: string;
  readonly name: string;
  /** Runs one round; returns facts/s. */
  run(round: number): Promise<number>;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Facts/s of `count` calls of `task`, `inFlight` at a time. */
async function rateOf(count: number, inFlight: number, task: (i: number) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await pipelined(count, inFlight, task);
  return count / ((performance.now() - started) / 1000);
}

/**
 * One atomic batch with plain core NATS (ADR-50): every message carries
 * Nats-Batch-Id and Nats-Batch-Sequence 1..n, the last also Nats-Batch-Commit: 1.
 * The messages before the last are published without a reply subject: the
 * server stages them silently (it answers an empty ack only where a reply is
 * given). nats.js's startBatch() sends the first as a request to learn early
 * that a batch was refused; here the commit reports that too (an incomplete or
 * refused batch answers the commit with an error), one round trip less per batch.
 */
async function publishAtomicBatch(nc: NatsConnection, id: string, size: number, subject: (seq: number) => string, payload: Uint8Array): Promise<void> {
  const batchHeaders = (seq: number) => {
    const h = headers();
    h.set("Nats-Batch-Id", id);
    h.set("Nats-Batch-Sequence", String(seq));
    return h;
  };
  for (let seq = 1; seq < size; seq++) nc.publish(subject(seq), payload, { headers: batchHeaders(seq) });
  const commit = batchHeaders(size);
  commit.set("Nats-Batch-Commit", "1");
  const reply = await nc.request(subject(size), payload, { headers: commit, timeout: 30_000 });
  const ack = reply.json<{ error?: { description?: string }; batch?: string; count?: number }>();
  if (ack.error) throw new Error(`atomic batch ${id} refused: ${ack.error.description}`);
  if (ack.batch !== id || ack.count !== size) throw new Error(`atomic batch ${id}: the commit acknowledged ${ack.count} messages of batch ${ack.batch}, expected ${size}`);
}

/** Facts/s of `count` facts as atomic batches of ATOMIC_BATCH, one batch in flight. */
async function atomicRate(nc: NatsConnection, run: string, count: number, payload: Uint8Array): Promise<number> {
  const batches = Math.ceil(count / ATOMIC_BATCH);
  const started = performance.now();
  for (let b = 0; b < batches; b++) {
    const size = Math.min(ATOMIC_BATCH, count - b * ATOMIC_BATCH);
    await publishAtomicBatch(nc, `${run}-${b}`, size, (seq) => `amortize.atomic.${seq % 1000}`, payload);
  }
  return count / ((performance.now() - started) / 1000);
}

/** The cases of one setting, against one server: raw baselines, ZoneStore.append, fsync amortization. */
function cases(deps: { js: JetStreamClient; lean: Publisher; nc: NatsConnection; store: ZoneStore; payload: Uint8Array; natsSync: NatsSync }): Case[] {
  const { js, lean, nc, store, payload, natsSync } = deps;
  const raw = (publish: (subject: string) => Promise<unknown>) => rateOf(facts, rawInFlight, (i) => publish(`raw.batch.${i % 1000}`));
  const amortize = (inFlight: number) => rateOf(amortizeFacts, inFlight, (i) => lean.publish(`amortize.raw.${i % 1000}`, payload));
  const append = async (round: number) => {
    const batches = Math.ceil(facts / batchSize);
    const prepared = Array.from({ length: batches }, (_, b) => Array.from({ length: batchSize }, (_, i) => sizedFact(`${natsSync}-r${round}`, b * batchSize + i, FACT_BYTES)));
    return rateOf(batches, batchesInFlight, (b) => store.append(prepared[b]!)).then((batchesPerSecond) => batchesPerSecond * batchSize);
  };
  // Two raw baselines: nats.js's own js.publish(), and the lean pipelined
  // publisher the append path uses, which shows what the server itself can take.
  return [
    { key: "raw-js", name: `raw nats.js js.publish(), ${rawInFlight} in flight`, run: () => raw((s) => js.publish(s, payload)) },
    { key: "raw-lean", name: `raw lean pipelined publish, ${rawInFlight} in flight`, run: () => raw((s) => lean.publish(s, payload)) },
    { key: "append", name: `ZoneStore.append, batches of ${batchSize} × ${batchesInFlight} in flight`, run: append },
    { key: "amortize-1", name: "fsync amortization: raw lean publish, 1 in flight", run: () => amortize(1) },
    { key: `amortize-${ATOMIC_BATCH}`, name: `fsync amortization: raw lean publish, ${ATOMIC_BATCH} in flight`, run: () => amortize(ATOMIC_BATCH) },
    { key: "atomic-batch", name: `fsync amortization: atomic batch, ${ATOMIC_BATCH} per commit, 1 batch in flight`, run: (round) => atomicRate(nc, `${natsSync}-r${round}`, amortizeFacts, payload) },
  ];
}

/** Starts a server with `natsSync`, runs every case `rounds` times, and disposes of it. */
async function runSetting(natsSync: NatsSync): Promise<SettingResult> {
  const server = await startNatsServer({ domain: "bench", syncInterval: syncIntervalFor(natsSync) });
  try {
    await assertServerSync(server.monitorUrl, natsSync);
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc, { domain: "bench" });
    const js = jetstream(nc, { domain: "bench" });
    const store = await openZoneStore(parseStorageConfig({ zone: "plant-a", domain: "bench", zones: ["enterprise"], streams: { operational: { maxBytes: "4GiB" }, audit: { maxBytes: "256MiB" }, documents: { maxBytes: "256MiB" } } }), { servers: server.url, durability: natsSync });
    await jsm.streams.add({ name: "raw", subjects: ["raw.>"], storage: StorageType.File, discard: DiscardPolicy.New, max_bytes: 4 * 2 ** 30 });
    // Its own stream, so the baselines above keep exactly the configuration they always had (and within
    // the server's default 10 GB max_file_store, which stream max_bytes reserve from).
    await jsm.streams.add({ name: "amortize", subjects: ["amortize.>"], storage: StorageType.File, discard: DiscardPolicy.New, max_bytes: 512 * 2 ** 20, allow_atomic: true });
    const payload = toBinary(FactMessageSchema, sizedFact("probe", 0, FACT_BYTES));
    const lean = publisher(nc, 10_000);
    const all = cases({ js, lean, nc, store, payload, natsSync });

    // Warm every path (JIT, file store blocks), then alternate rounds so drift hits all alike.
    await pipelined(2_000, rawInFlight, (i) => js.publish(`raw.warm.${i}`, payload));
    await pipelined(1_000, ATOMIC_BATCH, (i) => lean.publish(`amortize.warm.${i}`, payload));
    await publishAtomicBatch(nc, `${natsSync}-warm`, ATOMIC_BATCH, (seq) => `amortize.warm.${seq}`, payload);
    await store.append(Array.from({ length: batchSize }, (_, i) => sizedFact(`${natsSync}-warm`, i, FACT_BYTES)));
    const rates = new Map<string, number[]>(all.map((c) => [c.key, []]));
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? all : [...all].reverse();
      for (const c of order) {
        const rate = await c.run(round);
        rates.get(c.key)!.push(rate);
        console.error(`nats sync ${natsSync}, round ${round + 1}/${rounds}  ${c.name}: ${Math.round(rate).toLocaleString("en-US")} facts/s`);
      }
    }
    lean.close();
    await store.close();
    const natsServer = nc.info?.version;
    await nc.close();
    return { natsSync, natsServer, cases: all.map((c) => ({ key: c.key, name: c.name, natsSync, factsPerSecond: rates.get(c.key)! })) };
  } finally {
    await server.dispose();
  }
}

/** Table rows: every case of every setting, ratios against the raw rows of the same setting. */
function tableRows(results: readonly SettingResult[]): Row[] {
  const medianOf = (natsSync: NatsSync, key: string) => {
    const c = results.find((r) => r.natsSync === natsSync)?.cases.find((x) => x.key === key);
    return c === undefined ? undefined : median(c.factsPerSecond);
  };
  const both = results.length > 1;
  return results.flatMap((r) => r.cases.map((c) => {
    const rate = median(c.factsPerSecond);
    const interval = medianOf("interval", c.key);
    return {
      name: c.name,
      [SYNC_COLUMN]: c.natsSync,
      "facts/s (median)": Math.round(rate),
      rounds: c.factsPerSecond.map((x) => Math.round(x).toLocaleString("en-US")).join(" / "),
      "× js.publish": rate / medianOf(c.natsSync, "raw-js")!,
      "× lean raw": rate / medianOf(c.natsSync, "raw-lean")!,
      ...(both ? { "× same row, interval": c.natsSync === "always" && interval !== undefined ? rate / interval : "" } : {}),
    };
  }));
}

const started = performance.now();
const results: SettingResult[] = await eachSetting(settings, runSetting);
const rows = tableRows(results);
printTable(
  `Append of ${FACT_BYTES}-byte facts, ${facts.toLocaleString("en-US")} per round (fsync amortization cases: ${amortizeFacts.toLocaleString("en-US")}), nats-server ${results[0]?.natsServer}, ${rounds} round(s) (median).\n` +
    `nats sync: always = sync_interval always (fsync before every acknowledgement), interval = sync_interval ${syncIntervalFor("interval")}; each setting on its own server. ` +
    `Ratios against the raw rows of the same setting; "× same row, interval": the always row against its interval twin. Target: ZoneStore.append ≥ ${TARGET} × lean raw.`,
  rows,
);
const file = writeResults("storage-append", {
  facts, factBytes: FACT_BYTES, batchSize, batchesInFlight, rawInFlight, rounds, amortizeFacts, atomicBatchSize: ATOMIC_BATCH, target: TARGET,
  natsSync: settings, syncIntervals,
  runs: results.map((r) => {
    const rate = (key: string) => median(r.cases.find((c) => c.key === key)!.factsPerSecond);
    const series = (key: string) => r.cases.find((c) => c.key === key)!.factsPerSecond;
    return {
      natsSync: r.natsSync,
      syncInterval: syncIntervalFor(r.natsSync),
      natsServer: r.natsServer,
      rawClientFactsPerSecond: series("raw-js"),
      rawLeanFactsPerSecond: series("raw-lean"),
      storageFactsPerSecond: series("append"),
      ratioToClientPublish: rate("append") / rate("raw-js"),
      ratioToLeanPublish: rate("append") / rate("raw-lean"),
      fsyncAmortization: {
        rawLeanOneInFlight: series("amortize-1"),
        [`rawLean${ATOMIC_BATCH}InFlight`]: series(`amortize-${ATOMIC_BATCH}`),
        [`atomicBatch${ATOMIC_BATCH}PerCommit`]: series("atomic-batch"),
      },
      cases: r.cases,
    };
  }),
  elapsedSeconds: (performance.now() - started) / 1000,
});
console.log(`\nresults: ${file}`);
