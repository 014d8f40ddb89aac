/**
 * What the idempotency scheme costs the server: nats-server resident memory
 * per retained fact, with message ids inside the dedupe horizon and after they
 * aged out of it, against the same facts published plainly (no index) in the
 * same run.
 *
 *   pnpm bench:memory [-- --facts 1000000 --horizon 4m]
 */
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { jetstreamManager, DiscardPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { FactMessageSchema } from "@bsfg/proto";
import { openZoneStore, parseStorageConfig, publisher } from "@bsfg/storage";
import { pollUntil, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { printTable, writeResults, benchArgs } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string", default: "1000000" },
  horizon: { type: "string", default: "4m" },
} });
const facts = Number(values.facts);
const FACT_BYTES = 256;
const MiB = 2 ** 20;

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
const streamsConfig = { operational: { maxBytes: "8GiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } };

// 1. BSFG's scheme: dedupe index with its own retention (the horizon).
const ours = await startNatsServer({ domain: "bench", maxFileStore: "40GB" });
const cfg = parseStorageConfig({ zone: "plant-a", domain: "bench", zones: ["enterprise"], streams: streamsConfig, dedupe: { horizon: values.horizon } });
const store = await openZoneStore(cfg, { servers: ours.url });
const baseline = await settledRss(ours);
const batches = Math.ceil(facts / 100);
const stored = await timed(() => pipelined(batches, 4, (b) => store.append(Array.from({ length: 100 }, (_, i) => sizedFact("mem", b * 100 + i, FACT_BYTES)))));
const inside = await settledRss(ours);
console.log(`stored ${facts} facts in ${stored.seconds.toFixed(1)} s; waiting for the dedupe horizon (${values.horizon}) to pass…`);
const nc = await connect({ servers: ours.url });
const jsm = await jetstreamManager(nc, { domain: "bench" });
await pollUntil(async () => (await jsm.streams.info("bsfg-dedupe")).state.messages === 0, { timeoutMs: 30 * 60_000, intervalMs: 2_000, what: "the dedupe index to age out" });
await nc.close();
const past = await settledRss(ours);
await store.close();
const restart = await timed(() => ours.restart());
const pastAfterRestart = await settledRss(ours);
await ours.dispose();

// 2. The same facts published plainly into one stream sharing 1,000 subjects: no idempotency.
const raw = await startNatsServer({ domain: "raw", maxFileStore: "40GB" });
const rawNc = await connect({ servers: raw.url });
await (await jetstreamManager(rawNc, { domain: "raw" })).streams.add({ name: "raw", subjects: ["raw.>"], storage: StorageType.File, discard: DiscardPolicy.New, max_bytes: 8 * 2 ** 30 });
const rawBaseline = await settledRss(raw);
const lean = publisher(rawNc, 10_000);
const payload = toBinary(FactMessageSchema, sizedFact("raw", 0, FACT_BYTES));
const rawStored = await timed(() => pipelined(facts, 256, (i) => lean.publish(`raw.batch.${i % 1000}`, payload)));
const rawAfter = await settledRss(raw);
lean.close();
await rawNc.close();
const rawRestart = await timed(() => raw.restart());
const rawAfterRestart = await settledRss(raw);
await raw.dispose();

const perFact = (after: number, before: number) => (after - before) / facts;
const rows = [
  { name: "plain publish, 1,000 shared subjects", "RSS MiB": (rawAfter / MiB), "bytes/fact": perFact(rawAfter, rawBaseline), "after restart MiB": rawAfterRestart / MiB, "bytes/fact after restart": perFact(rawAfterRestart, rawBaseline), "restart s": rawRestart.seconds },
  { name: "BSFG, inside the dedupe horizon", "RSS MiB": inside / MiB, "bytes/fact": perFact(inside, baseline), "after restart MiB": "", "bytes/fact after restart": "", "restart s": "" },
  { name: "BSFG, past the dedupe horizon", "RSS MiB": past / MiB, "bytes/fact": perFact(past, baseline), "after restart MiB": pastAfterRestart / MiB, "bytes/fact after restart": perFact(pastAfterRestart, baseline), "restart s": restart.seconds },
];
printTable(`nats-server resident memory for ${facts.toLocaleString("en-US")} retained ${FACT_BYTES}-byte facts (horizon ${values.horizon})`, rows);
const file = writeResults("dedupe-memory", {
  facts, factBytes: FACT_BYTES, horizon: values.horizon,
  bsfg: { baselineRss: baseline, insideHorizonRss: inside, pastHorizonRss: past, pastHorizonAfterRestartRss: pastAfterRestart, storeSeconds: stored.seconds, restartSeconds: restart.seconds },
  plain: { baselineRss: rawBaseline, afterRss: rawAfter, afterRestartRss: rawAfterRestart, storeSeconds: rawStored.seconds, restartSeconds: rawRestart.seconds },
  bytesPerFact: { plain: perFact(rawAfter, rawBaseline), insideHorizon: perFact(inside, baseline), pastHorizon: perFact(past, baseline), pastHorizonAfterRestart: perFact(pastAfterRestart, baseline) },
});
console.log(`\nresults: ${file}`);
