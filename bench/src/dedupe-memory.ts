/**
 * What the idempotency scheme costs the server: nats-server resident memory
 * per retained fact
 *   - for producer facts (AppendFact's path, with the dedupe index), inside the
 *     dedupe horizon and after it, in the same process;
 *   - for relayed facts (the link's shipment: the stored bytes and the link's
 *     position, no index entry);
 *   - under a sustained producer load for several horizons (RSS should be flat);
 * each against the same facts published plainly (no index) in the same run —
 * once per durability setting (--sync), every server started with that setting.
 *
 * Go frees memory lazily: after the index aged out, RSS is sampled until it
 * settles (--settle, default 8 min: the runtime's forced GC runs every 2 min
 * and returns pages a cycle or two later).
 *
 *   pnpm bench:memory [-- --facts 1000000 --horizon 4m --settle 8m --sustain 1m --sync always,interval | --quick]
 */
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { jetstreamManager, DiscardPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { encodeFactMessage, FactMessageSchema } from "@bsfg/proto";
import { durationMs, factSubject, MAX_FACTS_PER_SHIPMENT, openZoneStore, parseStorageConfig, publisher, readLinkPosition, shipPage } from "@bsfg/storage";
import { pollUntil, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { assertServerSync, eachSetting, parseSyncSettings, SYNC_COLUMN, syncIntervalFor, syncIntervals, syncOption, type NatsSync } from "./durability.js";
import { printTable, secondsSince, writeResults, benchArgs, type Row } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string" },
  horizon: { type: "string" },
  settle: { type: "string" },
  sustain: { type: "string" },
  ...syncOption,
  // A small run to check that everything works: 20,000 facts, a 10 s horizon.
  quick: { type: "boolean", default: false },
} });
const quick = values.quick;
const facts = Number(values.facts ?? (quick ? 20_000 : 1_000_000));
const horizon = values.horizon ?? (quick ? "10s" : "4m");
const settings = parseSyncSettings(values.sync);
const settleMs = durationMs.parse(values.settle ?? "8m");
/** Horizon of the sustained-load run; the load lasts five of them. */
const sustainHorizon = values.sustain ?? (quick ? "20s" : "1m");
const SUSTAINED_RATE = 1_000;
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

/** RSS sampled every 15 s until `settleMs` passed: the lowest, and when it was first within 5 % of it. */
async function settlingRss(server: NatsServerHandle): Promise<{ rss: number; seconds: number }> {
  const started = performance.now();
  const samples: { rss: number; seconds: number }[] = [];
  while (performance.now() - started < settleMs) {
    samples.push({ rss: await settledRss(server), seconds: (performance.now() - started) / 1_000 });
    await new Promise((resolve) => setTimeout(resolve, 15_000));
  }
  samples.push({ rss: await settledRss(server), seconds: (performance.now() - started) / 1_000 });
  const lowest = Math.min(...samples.map((sample) => sample.rss));
  return { rss: lowest, seconds: samples.find((sample) => sample.rss <= lowest * 1.05)!.seconds };
}

interface BsfgMemory {
  readonly baselineRss: number;
  readonly insideHorizonRss: number;
  readonly pastHorizonRss: number;
  /** Seconds after the index emptied until RSS was within 5 % of its lowest. */
  readonly pastHorizonSettleSeconds: number;
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
    const past = await settlingRss(server);
    await store.close();
    const restart = await timed(() => server.restart());
    const pastHorizonAfterRestartRss = await settledRss(server);
    return { baselineRss, insideHorizonRss, pastHorizonRss: past.rss, pastHorizonSettleSeconds: past.seconds, pastHorizonAfterRestartRss, storeSeconds: stored.seconds, restartSeconds: restart.seconds };
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

interface RelayedMemory {
  readonly baselineRss: number;
  readonly afterRss: number;
  readonly storeSeconds: number;
}

/**
 * A relaying zone's write: the facts as a peer stored them, shipped with the link's
 * position in fenced atomic batches of up to 999 (the shipper's exact path), no index entry.
 */
async function measureRelayed(natsSync: NatsSync): Promise<RelayedMemory> {
  const server = await startServer("relay", natsSync);
  try {
    const cfg = parseStorageConfig({ zone: "enterprise", domain: "relay", zones: ["plant-a"], streams: streamsConfig });
    const store = await openZoneStore(cfg, { servers: server.url });
    const baselineRss = await settledRss(server);
    const link = "plant-a/to-enterprise";
    const stored = await timed(async () => {
      let position = await readLinkPosition(store.substrate, "operational", link);
      for (let first = 1; first <= facts; first += MAX_FACTS_PER_SHIPMENT) {
        const count = Math.min(MAX_FACTS_PER_SHIPMENT, facts - first + 1);
        const shipment = Array.from({ length: count }, (_, i) => ({
          subject: factSubject("operational", "batch"),
          data: encodeFactMessage(sizedFact(`relay-${natsSync}`, first + i, FACT_BYTES)),
          headers: { "Bsfg-Origin": `plant-a/operational/${first + i}` },
        }));
        position = await shipPage(store.substrate, { category: "operational", link, peer: "plant-a", peerStream: "operational", peerOffset: first + count - 1, fence: position.fence, facts: shipment });
      }
    });
    const afterRss = await settledRss(server);
    await store.close();
    return { baselineRss, afterRss, storeSeconds: stored.seconds };
  } finally {
    await server.dispose();
  }
}

interface SustainedMemory {
  readonly horizon: string;
  readonly ratePerSecond: number;
  /** RSS (bytes) at the end of each horizon of the load: five of them. */
  readonly rssAtHorizon: number[];
  /** Index entries at the end (claims and commits): what the horizon holds. */
  readonly indexMessagesAtEnd: number;
}

/** Producer appends at a steady rate for five horizons: the index holds one horizon of ids, so RSS levels off. */
async function measureSustained(natsSync: NatsSync): Promise<SustainedMemory> {
  const server = await startServer("sustain", natsSync);
  try {
    const cfg = parseStorageConfig({ zone: "plant-a", domain: "sustain", zones: ["enterprise"], streams: streamsConfig, dedupe: { horizon: sustainHorizon } });
    const store = await openZoneStore(cfg, { servers: server.url });
    const horizonMs = cfg.dedupe.horizon;
    const rssAtHorizon: number[] = [];
    const started = performance.now();
    let n = 0;
    for (let h = 1; h <= 5; h++) {
      // Batches of 100 every 100 ms: SUSTAINED_RATE facts/s, on schedule.
      while (performance.now() - started < h * horizonMs) {
        const due = started + (n / SUSTAINED_RATE) * 1_000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        await store.append(Array.from({ length: 100 }, (_, i) => sizedFact(`sustain-${natsSync}`, n + i, FACT_BYTES)));
        n += 100;
      }
      rssAtHorizon.push(await server.rssBytes());
      console.error(`sustained load: horizon ${h}/5, ${n.toLocaleString("en-US")} facts, RSS ${(rssAtHorizon.at(-1)! / MiB).toFixed(1)} MiB`);
    }
    const nc = await connect({ servers: server.url });
    const indexMessagesAtEnd = (await (await jetstreamManager(nc, { domain: "sustain" })).streams.info("bsfg-dedupe")).state.messages;
    await nc.close();
    await store.close();
    return { horizon: sustainHorizon, ratePerSecond: Math.round(n / ((performance.now() - started) / 1_000)), rssAtHorizon, indexMessagesAtEnd };
  } finally {
    await server.dispose();
  }
}

interface SettingResult {
  readonly natsSync: NatsSync;
  readonly bsfg: BsfgMemory;
  readonly plain: PlainMemory;
  readonly relayed: RelayedMemory;
  readonly sustained: SustainedMemory;
}

const perFact = (after: number, before: number) => (after - before) / facts;

function bytesPerFact(r: SettingResult) {
  return {
    plain: perFact(r.plain.afterRss, r.plain.baselineRss),
    insideHorizon: perFact(r.bsfg.insideHorizonRss, r.bsfg.baselineRss),
    pastHorizon: perFact(r.bsfg.pastHorizonRss, r.bsfg.baselineRss),
    pastHorizonAfterRestart: perFact(r.bsfg.pastHorizonAfterRestartRss, r.bsfg.baselineRss),
    relayed: perFact(r.relayed.afterRss, r.relayed.baselineRss),
  };
}

/** Three rows per setting; "− plain" is what BSFG keeps per fact beyond the plain publish under the same setting. */
function tableRows(r: SettingResult): Row[] {
  const b = bytesPerFact(r);
  const rate = (seconds: number) => Math.round(facts / seconds);
  return [
    { name: "plain publish, 1,000 shared subjects", [SYNC_COLUMN]: r.natsSync, "store facts/s": rate(r.plain.storeSeconds), "RSS MiB": r.plain.afterRss / MiB, "bytes/fact": b.plain, "− plain": "", "after restart MiB": r.plain.afterRestartRss / MiB, "bytes/fact after restart": perFact(r.plain.afterRestartRss, r.plain.baselineRss), "restart s": r.plain.restartSeconds },
    { name: "BSFG, inside the dedupe horizon", [SYNC_COLUMN]: r.natsSync, "store facts/s": rate(r.bsfg.storeSeconds), "RSS MiB": r.bsfg.insideHorizonRss / MiB, "bytes/fact": b.insideHorizon, "− plain": b.insideHorizon - b.plain, "after restart MiB": "", "bytes/fact after restart": "", "restart s": "" },
    { name: `BSFG, past the dedupe horizon (settled after ${Math.round(r.bsfg.pastHorizonSettleSeconds)} s)`, [SYNC_COLUMN]: r.natsSync, "store facts/s": "", "RSS MiB": r.bsfg.pastHorizonRss / MiB, "bytes/fact": b.pastHorizon, "− plain": b.pastHorizon - b.plain, "after restart MiB": r.bsfg.pastHorizonAfterRestartRss / MiB, "bytes/fact after restart": b.pastHorizonAfterRestart, "restart s": r.bsfg.restartSeconds },
    { name: "BSFG, relayed facts (shipped with the link position)", [SYNC_COLUMN]: r.natsSync, "store facts/s": rate(r.relayed.storeSeconds), "RSS MiB": r.relayed.afterRss / MiB, "bytes/fact": b.relayed, "− plain": b.relayed - b.plain, "after restart MiB": "", "bytes/fact after restart": "", "restart s": "" },
  ];
}

const started = performance.now();
const results: SettingResult[] = await eachSetting(settings, async (natsSync) => ({
  natsSync, bsfg: await measureBsfg(natsSync), plain: await measurePlain(natsSync), relayed: await measureRelayed(natsSync), sustained: await measureSustained(natsSync),
}));
printTable(
  `nats-server ${results[0]?.plain.natsServer} resident memory for ${facts.toLocaleString("en-US")} retained ${FACT_BYTES}-byte facts (horizon ${horizon}). ` +
    `nats sync: always = sync_interval always (fsync before every acknowledgement), interval = sync_interval ${syncIntervalFor("interval")}; every server with the row's setting. ` +
    `"− plain": bytes per fact beyond the plain publish of the same setting; "store facts/s": how fast the facts went in (BSFG: ZoneStore.append, batches of 100 × 4 in flight; plain: lean publisher, 256 in flight).`,
  results.flatMap(tableRows),
);
printTable(
  `Sustained producer load: ${SUSTAINED_RATE.toLocaleString("en-US")} facts/s in batches of 100 for five dedupe horizons of ${sustainHorizon}: nats-server RSS at the end of each. ` +
    `The index holds one horizon of ids, so RSS should level off after the first; "growth 2→5" is the change from the second horizon's end to the fifth's.`,
  results.map((r) => ({
    name: "sustained AppendFact load", [SYNC_COLUMN]: r.natsSync, "facts/s": r.sustained.ratePerSecond,
    ...Object.fromEntries(r.sustained.rssAtHorizon.map((rss, i) => [`RSS MiB @${i + 1}h`, rss / MiB])),
    "growth 2→5": `${(((r.sustained.rssAtHorizon[4]! - r.sustained.rssAtHorizon[1]!) / r.sustained.rssAtHorizon[1]!) * 100).toFixed(1)} %`,
    "index entries at end": r.sustained.indexMessagesAtEnd,
  })),
);
// Issue targets (docs/storage.md, "Cost per fact"): relayed ≤ 20 B beyond plain, past the horizon ≤ 20 B beyond plain, producer inside ≤ 150 B.
printTable("Against the targets (bytes of server RSS per fact beyond the plain publish of the same setting)", results.flatMap((r) => {
  const b = bytesPerFact(r);
  const row = (name: string, measured: number, target: number) => ({ name, [SYNC_COLUMN]: r.natsSync, "measured B/fact": measured, "target B/fact": `≤ ${target}`, met: measured <= target ? "yes" : `no (${(measured / target).toFixed(1)}×)` });
  return [
    row("relayed facts", b.relayed - b.plain, 20),
    row("producer facts, inside the horizon", b.insideHorizon - b.plain, 150),
    row("producer facts, past the horizon (same process)", b.pastHorizon - b.plain, 20),
  ];
}));
const file = writeResults("dedupe-memory", {
  facts, factBytes: FACT_BYTES, horizon, settleMs, sustainHorizon, sustainedRate: SUSTAINED_RATE,
  natsSync: settings, syncIntervals,
  runs: results.map((r) => ({ natsSync: r.natsSync, syncInterval: syncIntervalFor(r.natsSync), natsServer: r.plain.natsServer, bsfg: r.bsfg, plain: r.plain, relayed: r.relayed, sustained: r.sustained, bytesPerFact: bytesPerFact(r) })),
  elapsedSeconds: (performance.now() - started) / 1000,
});
console.log(`\nresults: ${file}`);
