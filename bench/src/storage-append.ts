/**
 * Storage-level AppendFact throughput against raw pipelined JetStream
 * publishes into the same server, in the same run.
 *
 *   pnpm bench:storage [-- --facts 100000]
 */
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager, DiscardPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { FactMessageSchema } from "@bsfg/proto";
import { openZoneStore, parseStorageConfig, publisher } from "@bsfg/storage";
import { startNatsServer } from "@bsfg/testkit";
import { printTable, writeResults, benchArgs } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string", default: "100000" },
  batch: { type: "string", default: "100" },
  "raw-in-flight": { type: "string", default: "256" },
  "batches-in-flight": { type: "string", default: "4" },
  rounds: { type: "string", default: "3" },
} });
const facts = Number(values.facts);
const batchSize = Number(values.batch);
const rawInFlight = Number(values["raw-in-flight"]);
const batchesInFlight = Number(values["batches-in-flight"]);
const rounds = Number(values.rounds);
const FACT_BYTES = 256;

const server = await startNatsServer({ domain: "bench" });
try {
  const nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc, { domain: "bench" });
  const js = jetstream(nc, { domain: "bench" });
  const store = await openZoneStore(parseStorageConfig({ zone: "plant-a", domain: "bench", zones: ["enterprise"], streams: { operational: { maxBytes: "4GiB" }, audit: { maxBytes: "256MiB" }, documents: { maxBytes: "256MiB" } } }), { servers: server.url });
  await jsm.streams.add({ name: "raw", subjects: ["raw.>"], storage: StorageType.File, discard: DiscardPolicy.New, max_bytes: 4 * 2 ** 30 });

  const payload = toBinary(FactMessageSchema, sizedFact("probe", 0, FACT_BYTES));
  // Two raw baselines: nats.js's own js.publish(), and the lean pipelined
  // publisher the append path uses, which shows what the server itself can take.
  const lean = publisher(nc, 10_000);
  const rawRate = async (publish: (subject: string) => Promise<unknown>) => {
    const started = performance.now();
    await pipelined(facts, rawInFlight, (i) => publish(`raw.batch.${i % 1000}`));
    return facts / ((performance.now() - started) / 1000);
  };
  const clientRate = () => rawRate((subject) => js.publish(subject, payload));
  const leanRate = () => rawRate((subject) => lean.publish(subject, payload));
  const storageRate = async (round: number) => {
    const batches = Math.ceil(facts / batchSize);
    const prepared = Array.from({ length: batches }, (_, b) => Array.from({ length: batchSize }, (_, i) => sizedFact(`r${round}`, b * batchSize + i, FACT_BYTES)));
    const started = performance.now();
    await pipelined(batches, batchesInFlight, (b) => store.append(prepared[b]!));
    return facts / ((performance.now() - started) / 1000);
  };

  // Warm both paths (JIT, file store blocks), then alternate rounds so drift hits both alike.
  await pipelined(2_000, rawInFlight, (i) => js.publish(`raw.warm.${i}`, payload));
  await store.append(Array.from({ length: batchSize }, (_, i) => sizedFact("warm", i, FACT_BYTES)));
  const raw: number[] = [];
  const rawLean: number[] = [];
  const ours: number[] = [];
  for (let round = 0; round < rounds; round++) {
    raw.push(await clientRate());
    rawLean.push(await leanRate());
    ours.push(await storageRate(round));
  }
  lean.close();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rawMedian = median(raw);
  const leanMedian = median(rawLean);
  const oursMedian = median(ours);
  const row = (name: string, rates: number[]) => ({
    name,
    "facts/s (median)": Math.round(median(rates)),
    rounds: rates.map((r) => Math.round(r)).join(" / "),
    "× js.publish": median(rates) / rawMedian,
    "× lean raw": median(rates) / leanMedian,
  });
  const rows = [
    row(`raw nats.js js.publish(), ${rawInFlight} in flight`, raw),
    row(`raw lean pipelined publish, ${rawInFlight} in flight`, rawLean),
    row(`ZoneStore.append, batches of ${batchSize} × ${batchesInFlight} in flight`, ours),
  ];
  printTable(`Append of ${FACT_BYTES}-byte facts, ${facts.toLocaleString("en-US")} per round, nats-server ${nc.info?.version} (target ratio ≥ 0.7)`, rows);
  const file = writeResults("storage-append", { facts, factBytes: FACT_BYTES, batchSize, batchesInFlight, rawInFlight, rawClientFactsPerSecond: raw, rawLeanFactsPerSecond: rawLean, storageFactsPerSecond: ours, ratioToClientPublish: oursMedian / rawMedian, ratioToLeanPublish: oursMedian / leanMedian, target: 0.7 });
  console.log(`\nresults: ${file}`);
  await store.close();
  await nc.close();
} finally {
  await server.dispose();
}
