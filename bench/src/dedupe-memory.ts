/**
 * What the idempotency scheme costs the server: nats-server resident memory
 * per retained fact, with message ids inside the dedupe horizon and after they
 * aged out of it, against the same facts published plainly (no index) in the
 * same run — once per durability setting (--sync), every server started with
 * that setting.
 *
 *   pnpm bench:memory [-- --facts 1000000 --horizon 4m --sync always,interval | --quick]
 */
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { jetstreamManager, DiscardPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { FactMessageSchema } from "@bsfg/proto";
import { openZoneStore, parseStorageConfig, publisher } from "@bsfg/storage";
import { pollUntil, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { assertServerSync, eachSetting, parseSyncSettings, SYNC_COLUMN, syncIntervalFor, syncIntervals, syncOption, type NatsSync } from "./durability.js";
import { printTable, secondsSince, writeResults, benchArgs, type Row } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string" },
  horizon: { type: "string" },
  ...syncOption,
  // A small run to check that everything works: 20,000 facts, a 10 s horizon.
  quick: { type: "boolean", default: false },
} });
const quick = values.quick;
const facts = Number(values.facts ?? (quick ? 20_000 : 1_000_000));
const horizon = values.horizon ?? (quick ? "10s" : "4m");
const settings = parseSyncSettings(values.sync);
const FACT_BYTES = 256;
const MiB = 2 ** 20;
const streamsConfig = { operational: { maxBytes: "8GiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } };

const settledRss = async (server: NatsServerHandle) => {
  // Take the lowest of a few samples: the Go runtime returns freed pages lazily.
  let lowest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    lowest = Math.min(lowest, await server.rssBytes());
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return lowest;
};
const timed = async <T>(fn: () => Promise<T>) => {
  const started = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - started) / 1000 };
};

/** A server with the setting's sync_interval, checked before anything is measured on it. */
async function startServer(domain: string, natsSync: NatsSync): Promise<NatsServerHandle> {
  const server = await startNatsServer({ domain, maxFileStore: "40GB", syncInterval: syncIntervalFor(natsSync) });
  try {
    await assertServerSync(server.monitorUrl, natsSync);
  } catch (err) {
    await server.dispose();
    throw err;
  }
  return server;
}

interface BsfgMemory {
  readonly baselineRss: number;
  readonly insideHorizonRss: number;
  readonly pastHorizonRss: number;
  readonly pastHorizonAfterRestartRss: number;
  readonly storeSeconds: number;
  readonly restartSeconds: number;
}

/** BSFG's scheme: dedupe index with its own retention (the horizon). */
async function measureBsfg(natsSync: NatsSync): Promise<BsfgMemory> {
  const server = await startServer("bench", natsSync);
  try {
    const cfg = parseStorageConfig({ zone: "plant-a", domain: "bench", zones: ["enterprise"], streams: streamsConfig, dedupe: { horizon } });
    const store = await openZoneStore(cfg, { servers: server.url });
    const baselineRss = await settledRss(server);
    const batches = Math.ceil(facts / 100);
    const stored = await timed(() => pipelined(batches, 4, (b) => store.append(Array.from({ length: 100 }, (_, i) => sizedFact(`mem-${natsSync}`, b * 100 + i, FACT_BYTES)))));
    const insideHorizonRss = await settledRss(server);
    console.error(`nats sync ${natsSync}: stored ${facts} facts in ${stored.seconds.toFixed(1)} s; waiting for the dedupe horizon (${horizon}) to pass…`);
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc, { domain: "bench" });
    await pollUntil(async () => (await jsm.streams.info("bsfg-dedupe")).state.messages === 0, { timeoutMs: 30 * 60_000, intervalMs: 2_000, what: "the dedupe index to age out" });
    await nc.close();
    const pastHorizonRss = await settledRss(server);
    await store.close();
    const restart = await timed(() => server.restart());
    const pastHorizonAfterRestartRss = await settledRss(server);
    return { baselineRss, insideHorizonRss, pastHorizonRss, pastHorizonAfterRestartRss, storeSeconds: stored.seconds, restartSeconds: restart.seconds };
  } finally {
    await server.dispose();
  }
}

interface PlainMemory {
  readonly baselineRss: number;
  readonly afterRss: number;
  readonly afterRestartRss: number;
  readonly storeSeconds: number;
  readonly restartSeconds: number;
  readonly natsServer: string | undefined;
}

/** The same facts published plainly into one stream sharing 1,000 subjects: no idempotency. */
async function measurePlain(natsSync: NatsSync): Promise<PlainMemory> {
  const server = await startServer("raw", natsSync);
  try {
    const nc = await connect({ servers: server.url });
    await (await jetstreamManager(nc, { domain: "raw" })).streams.add({ name: "raw", subjects: ["raw.>"], storage: StorageType.File, discard: DiscardPolicy.New, max_bytes: 8 * 2 ** 30 });
    const baselineRss = await settledRss(server);
    const lean = publisher(nc, 10_000);
    const payload = toBinary(FactMessageSchema, sizedFact("raw", 0, FACT_BYTES));
    const stored = await timed(() => pipelined(facts, 256, (i) => lean.publish(`raw.batch.${i % 1000}`, payload)));
    const afterRss = await settledRss(server);
    lean.close();
    const natsServer = nc.info?.version;
    await nc.close();
    const restart = await timed(() => server.restart());
    const afterRestartRss = await settledRss(server);
    return { baselineRss, afterRss, afterRestartRss, storeSeconds: stored.seconds, restartSeconds: restart.seconds, natsServer };
  } finally {
    await server.dispose();
  }
}

interface SettingResult {
  readonly natsSync: NatsSync;
  readonly bsfg: BsfgMemory;
  readonly plain: PlainMemory;
}

const perFact = (after: number, before: number) => (after - before) / facts;

function bytesPerFact(r: SettingResult) {
  return {
    plain: perFact(r.plain.afterRss, r.plain.baselineRss),
    insideHorizon: perFact(r.bsfg.insideHorizonRss, r.bsfg.baselineRss),
    pastHorizon: perFact(r.bsfg.pastHorizonRss, r.bsfg.baselineRss),
    pastHorizonAfterRestart: perFact(r.bsfg.pastHorizonAfterRestartRss, r.bsfg.baselineRss),
  };
}

/** Three rows per setting; "− plain" is what BSFG keeps per fact beyond the plain publish under the same setting. */
function tableRows(r: SettingResult): Row[] {
  const b = bytesPerFact(r);
  const rate = (seconds: number) => Math.round(facts / seconds);
  return [
    { name: "plain publish, 1,000 shared subjects", [SYNC_COLUMN]: r.natsSync, "store facts/s": rate(r.plain.storeSeconds), "RSS MiB": r.plain.afterRss / MiB, "bytes/fact": b.plain, "− plain": "", "after restart MiB": r.plain.afterRestartRss / MiB, "bytes/fact after restart": perFact(r.plain.afterRestartRss, r.plain.baselineRss), "restart s": r.plain.restartSeconds },
    { name: "BSFG, inside the dedupe horizon", [SYNC_COLUMN]: r.natsSync, "store facts/s": rate(r.bsfg.storeSeconds), "RSS MiB": r.bsfg.insideHorizonRss / MiB, "bytes/fact": b.insideHorizon, "− plain": b.insideHorizon - b.plain, "after restart MiB": "", "bytes/fact after restart": "", "restart s": "" },
    { name: "BSFG, past the dedupe horizon", [SYNC_COLUMN]: r.natsSync, "store facts/s": "", "RSS MiB": r.bsfg.pastHorizonRss / MiB, "bytes/fact": b.pastHorizon, "− plain": b.pastHorizon - b.plain, "after restart MiB": r.bsfg.pastHorizonAfterRestartRss / MiB, "bytes/fact after restart": b.pastHorizonAfterRestart, "restart s": r.bsfg.restartSeconds },
  ];
}

const started = performance.now();
const results: SettingResult[] = await eachSetting(settings, async (natsSync) => ({ natsSync, bsfg: await measureBsfg(natsSync), plain: await measurePlain(natsSync) }));
printTable(
  `nats-server ${results[0]?.plain.natsServer} resident memory for ${facts.toLocaleString("en-US")} retained ${FACT_BYTES}-byte facts (horizon ${horizon}). ` +
    `nats sync: always = sync_interval always (fsync before every acknowledgement), interval = sync_interval ${syncIntervalFor("interval")}; every server with the row's setting. ` +
    `"− plain": bytes per fact beyond the plain publish of the same setting; "store facts/s": how fast the facts went in (BSFG: ZoneStore.append, batches of 100 × 4 in flight; plain: lean publisher, 256 in flight).`,
  results.flatMap(tableRows),
);
const file = writeResults("dedupe-memory", {
  facts, factBytes: FACT_BYTES, horizon,
  natsSync: settings, syncIntervals,
  runs: results.map((r) => ({ natsSync: r.natsSync, syncInterval: syncIntervalFor(r.natsSync), natsServer: r.plain.natsServer, bsfg: r.bsfg, plain: r.plain, bytesPerFact: bytesPerFact(r) })),
  elapsedSeconds: (performance.now() - started) / 1000,
});
console.log(`\nresults: ${file}`);
