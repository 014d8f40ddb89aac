/**
 * The boundary services through the full RPC path — HTTP/2 + mutual TLS 1.3 +
 * Connect (binary) + policy + storage — against the raw substrate, same run,
 * same nats-server:
 *
 *  - AppendFact, batches of 1 / 10 / 100 facts of 256 bytes, N concurrent calls,
 *    vs raw pipelined JetStream publishes (nats.js js.publish() and the lean
 *    publisher of @bsfg/storage);
 *  - FetchFacts → ConfirmReceipt(last_offset) → FetchFacts … over a pre-filled
 *    stream, vs raw reads of the same stream (nats.js ordered consumer, and an
 *    ephemeral memory-only pull consumer), both `fetch({ max_messages })` in a loop.
 *
 * Two placements of the zone deployable:
 *  - in-process: startDeployable() in this Node process, which also runs the
 *    client and the driver — client and server share one event loop;
 *  - child: the real `apps/zone/dist/main.js --config zone.yaml` in its own process.
 * Also two references without RPC: ZoneStore.append / readNext + confirm
 * called directly (shows how much of the gap is RPC and how much storage).
 *
 *   pnpm bench:rpc [-- --facts 100000 --rounds 3 --read-facts 100000 --variants in-process,child]
 *   pnpm bench:rpc -- --variants child --tracing    (the zone child traces every call, exported over OTLP/HTTP)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startTraceSink, type TraceSink } from "./trace-sink.js";
import { toBinary } from "@bufbuild/protobuf";
import { AckPolicy, DeliverPolicy, DiscardPolicy, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startDeployable, type RunningDeployable } from "@bsfg/boundary";
import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import { parseZoneConfig } from "@bsfg/config";
import { createCertificateAuthority, issueCertificate } from "@bsfg/pki";
import { AppendStatus, FactMessageSchema, type AppendResult, type FactMessage } from "@bsfg/proto";
import { publisher } from "@bsfg/storage";
import { freePort, startNatsServer } from "@bsfg/testkit";
import { machineBusyMs, printTable, procCpuMs, selfCpuMs, waitForQuiet, writeResults, type Row, benchArgs } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string", default: "100000" },
  // Batch 1 costs one call per fact (~1 ms of CPU on client + server): fewer facts keep the run bounded.
  "facts-batch-1": { type: "string", default: "20000" },
  batches: { type: "string", default: "1,10,100" },
  concurrency: { type: "string", default: "64" },
  connections: { type: "string", default: "1" },
  "raw-in-flight": { type: "string", default: "256" },
  "read-facts": { type: "string", default: "100000" },
  "read-limit": { type: "string", default: "500" },
  rounds: { type: "string", default: "3" },
  "warm-facts": { type: "string", default: "3000" },
  variants: { type: "string", default: "in-process,child" },
  "no-direct": { type: "boolean", default: false },
  "zone-bin": { type: "string" },
  "child-cpu-prof": { type: "string" },
  // Tracing on in the zone child: OTLP/HTTP export (batched) to a local sink that discards it.
  tracing: { type: "boolean", default: false },
  // The machine may be shared: before each case, wait (up to this many seconds) until other work uses < 0.25 cores.
  "quiet-wait": { type: "string", default: "60" },
} });
const facts = Number(values.facts);
const factsBatch1 = Math.min(Number(values["facts-batch-1"]), facts);
const batchSizes = values.batches.split(",").map(Number);
const concurrency = Number(values.concurrency);
const connections = Number(values.connections);
const rawInFlight = Number(values["raw-in-flight"]);
const readFacts = Number(values["read-facts"]);
const readLimit = Number(values["read-limit"]);
const rounds = Number(values.rounds);
const warmFacts = Number(values["warm-facts"]);
const variants = values.variants.split(",").map((v) => v.trim()).filter((v) => v !== "") as Array<"in-process" | "child">;
const direct = !values["no-direct"];
for (const v of variants) if (v !== "in-process" && v !== "child") throw new Error(`--variants: unknown "${v}" (in-process, child)`);
const FACT_BYTES = 256;
const READ_PREDICATE = "bench_read";
const zoneBin = values["zone-bin"] ?? fileURLToPath(new URL("../../apps/zone/dist/main.js", import.meta.url));
const factsFor = (batch: number) => (batch === 1 ? factsBatch1 : facts);

// ---- CPU accounting: this process, the zone child, nats-server ----
interface Sample {
  readonly rate: number;
  /** CPU ms per 1,000 facts, per process. */
  readonly cpu: { driver: number; zone?: number | undefined; nats?: number | undefined };
  /** Cores busy with anything else on the machine (other processes, kernel threads), averaged over the case. */
  readonly otherCores: number | undefined;
}

let natsPid: () => number | undefined = () => undefined;
let childPid: number | undefined;

/** CPU ms of this process, the zone child and nats-server so far. */
const oursCpuMs = () => selfCpuMs() + (procCpuMs(childPid) ?? 0) + (procCpuMs(natsPid()) ?? 0);

/** Runs `work` (which handles `count` facts) and returns facts/s and CPU per 1k facts for each process. */
async function measure(count: number, zone: "in-process" | "child" | "none", work: () => Promise<void>): Promise<Sample> {
  const n0 = procCpuMs(natsPid());
  const c0 = zone === "child" ? procCpuMs(childPid) : undefined;
  const m0 = machineBusyMs();
  const d0 = selfCpuMs();
  const started = performance.now();
  await work();
  const seconds = (performance.now() - started) / 1000;
  const m1 = machineBusyMs();
  const d1 = selfCpuMs();
  const per1k = (ms: number) => (ms * 1000) / count;
  const n1 = procCpuMs(natsPid());
  const c1 = zone === "child" ? procCpuMs(childPid) : undefined;
  const zoneMs = c0 !== undefined && c1 !== undefined ? c1 - c0 : undefined;
  const natsMs = n0 !== undefined && n1 !== undefined ? n1 - n0 : undefined;
  const otherMs = m0 !== undefined && m1 !== undefined ? m1 - m0 - (d1 - d0) - (zoneMs ?? 0) - (natsMs ?? 0) : undefined;
  return {
    rate: count / seconds,
    cpu: { driver: per1k(d1 - d0), zone: zoneMs === undefined ? undefined : per1k(zoneMs), nats: natsMs === undefined ? undefined : per1k(natsMs) },
    otherCores: otherMs === undefined ? undefined : Math.max(0, otherMs) / (seconds * 1000),
  };
}

// ---- the estate: nats-server, PKI, zone configuration ----
const nats = await startNatsServer({ domain: "plant-a", maxFileStore: "40GB" });
natsPid = () => nats.pid;
const dir = mkdtempSync(join(tmpdir(), "bsfg-bench-rpc-"));
let child: ChildProcess | undefined;
let traceSink: TraceSink | undefined;
let inProcess: RunningDeployable | undefined;
const clients: BsfgClient[] = [];
try {
  const ca = await createCertificateAuthority({ name: "BSFG Bench CA" });
  const zoneCert = await issueCertificate(ca, { identity: "plant-a-bsfg", usage: "both" });
  const producer = await issueCertificate(ca, { identity: "mes-producer", usage: "client" });
  const peer = await issueCertificate(ca, { identity: "enterprise-bsfg", usage: "client" });
  writeFileSync(join(dir, "ca.crt"), ca.certPem);
  writeFileSync(join(dir, "zone.crt"), zoneCert.certPem);
  writeFileSync(join(dir, "zone.key"), zoneCert.keyPem, { mode: 0o600 });

  // One read consumer per (reader, round) and one for warming each reader: cursors only move forward.
  const readers = [...variants, ...(direct ? ["direct"] : [])];
  const readConsumer = (reader: string, round: number | "warm") => `bench-read-${reader}-${round}`;
  const readConsumers = readers.flatMap((reader) => [readConsumer(reader, "warm"), ...Array.from({ length: rounds }, (_, r) => readConsumer(reader, r))]);
  // The shape of @bsfg/boundary's testZoneConfig, sized for the run. Facts with
  // predicate bench_read go to the audit stream, which holds only the read set.
  const appendedFacts = (rounds + 1) * (variants.length + (direct ? 1 : 0)) * batchSizes.reduce((sum, b) => sum + factsFor(b), 0);
  const operationalBytes = Math.max(4 * 2 ** 30, Math.ceil((appendedFacts * 600) / 2 ** 30) * 2 ** 30);
  const document = {
    zone: "plant-a",
    nats: { servers: [nats.url] },
    storage: {
      zones: ["idmz", "enterprise"],
      streams: { operational: { maxBytes: operationalBytes }, audit: { maxBytes: "2GiB" }, documents: { maxBytes: "64MiB" } },
      routing: [{ predicate: READ_PREDICATE, stream: "audit" }],
      consumers: [
        { name: "enterprise-from-plant-a", stream: "operational", skipOrigins: ["enterprise"] },
        ...readConsumers.map((name) => ({ name, stream: "audit", skipOrigins: ["enterprise"] })),
      ],
      buckets: { "batch-files": {}, "document-files": {} },
    },
    tls: { ca: "ca.crt", cert: "zone.crt", key: "zone.key" },
    fetch: { maxLimit: Math.max(500, readLimit), maxWait: "5s" },
    policy: {
      "mes-producer": { assertFromZones: ["plant-a"], targetZones: ["enterprise", "idmz"], writeBuckets: ["batch-files"] },
      "enterprise-bsfg": { assertFromZones: ["enterprise"], targetZones: ["plant-a"], consumers: ["enterprise-from-plant-a", ...readConsumers], readBuckets: ["batch-files"] },
    },
    shutdownGrace: "5s",
    logLevel: "warn",
  };
  const config = parseZoneConfig(document, { baseDir: dir, source: "bench" });

  // The raw side: its own connection, as a producer would have.
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc, { domain: "plant-a" });
  const js = jetstream(nc, { domain: "plant-a" });
  await jsm.streams.add({ name: "raw", subjects: ["raw.>"], storage: StorageType.File, discard: DiscardPolicy.New, max_bytes: 4 * 2 ** 30 });
  const lean = publisher(nc, 10_000);
  const payload = toBinary(FactMessageSchema, sizedFact("probe", 0, FACT_BYTES));

  // ---- the zone deployables ----
  const endpoints: Partial<Record<"in-process" | "child", { producer: BsfgClient[]; peer: BsfgClient }>> = {};
  const clientsFor = (url: string) => {
    const make = (cert: { certPem: string; keyPem: string }) => {
      const client = createBsfgClient({ url, tls: { ca: ca.certPem, cert: cert.certPem, key: cert.keyPem }, retry: { attempts: 1 } });
      clients.push(client);
      return client;
    };
    return { producer: Array.from({ length: connections }, () => make(producer)), peer: make(peer) };
  };
  // Always started: the direct reference rows use its store, and it creates the topology.
  inProcess = await startDeployable("zone", config, { listen: "127.0.0.1:0" });
  const store = inProcess.store;
  if (variants.includes("in-process")) endpoints["in-process"] = clientsFor(inProcess.server.url);
  if (variants.includes("child")) {
    if (!existsSync(zoneBin)) throw new Error(`${zoneBin} is missing: build apps/zone first (pnpm build), or pass --zone-bin`);
    const port = await freePort();
    const configPath = join(dir, "zone.yaml");
    // JSON is YAML.
    writeFileSync(configPath, JSON.stringify({ ...document, listen: { zone: `127.0.0.1:${port}` } }, null, 2));
    const logPath = join(dir, "zone.log");
    const logFd = openSync(logPath, "a");
    const profile = values["child-cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${values["child-cpu-prof"]}`] : [];
    const env = values.tracing ? { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: (traceSink = await startTraceSink()).url } : process.env;
    child = spawn(process.execPath, [...profile, zoneBin, "--config", configPath], { stdio: ["ignore", logFd, logFd], env });
    closeSync(logFd);
    childPid = child.pid;
    const url = `https://127.0.0.1:${port}`;
    endpoints.child = clientsFor(url);
    // Ready when an authenticated call through the whole path answers.
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the zone child exited (${child.exitCode}):\n${readFileSync(logPath, "utf8").slice(-4000)}`);
      try {
        await endpoints.child.peer.fetchFacts("enterprise-from-plant-a", { limit: 1 });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`the zone child did not answer within 30 s (${(err as Error).message}):\n${readFileSync(logPath, "utf8").slice(-4000)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  // ---- append ----
  const rawAppend = (publish: (subject: string) => Promise<unknown>, count: number) =>
    measure(count, "none", () => pipelined(count, rawInFlight, (i) => publish(`raw.batch.${i % 1000}`)));
  const prepare = (run: string, count: number, batch: number): FactMessage[][] =>
    Array.from({ length: Math.ceil(count / batch) }, (_, b) => Array.from({ length: Math.min(batch, count - b * batch) }, (_, i) => sizedFact(run, b * batch + i, FACT_BYTES)));
  const check = (results: readonly AppendResult[], expected: number) => {
    if (results.length !== expected || results.some((r) => r.status !== AppendStatus.APPENDED)) {
      throw new Error(`append answered ${results.length} results, statuses ${[...new Set(results.map((r) => AppendStatus[r.status]))].join(", ")}`);
    }
  };
  const rpcAppend = async (variant: "in-process" | "child", run: string, batch: number, count: number) => {
    const producers = endpoints[variant]!.producer;
    const prepared = prepare(run, count, batch);
    return measure(count, variant, () => pipelined(prepared.length, concurrency, async (c) => {
      const messages = prepared[c]!;
      check(await producers[c % producers.length]!.appendFacts(messages), messages.length);
    }));
  };
  const directAppend = async (run: string, batch: number, count: number) => {
    const prepared = prepare(run, count, batch);
    return measure(count, "in-process", () => pipelined(prepared.length, concurrency, async (c) => {
      check(await store.append(prepared[c]!), prepared[c]!.length);
    }));
  };

  // ---- read ----
  // Pre-fill the audit stream (through the store, not timed) with the read set.
  const audit = "facts-audit";
  {
    const readSet = prepare("read", readFacts, 100).map((batch) => batch.map((m) => {
      m.fact!.predicate = READ_PREDICATE;
      return m;
    }));
    await pipelined(readSet.length, 8, async (b) => check(await store.append(readSet[b]!), readSet[b]!.length));
  }
  const auditInfo = await jsm.streams.info(audit);
  if (auditInfo.state.messages !== readFacts) throw new Error(`${audit} holds ${auditInfo.state.messages} facts, expected ${readFacts}`);

  /** Reads `count` facts (or until the stream ends) with fetch({ max_messages }) on a nats.js consumer. */
  const drain = async (consumer: { fetch(opts: { max_messages: number; expires: number }): Promise<AsyncIterable<{ data: Uint8Array }>> }, count: number) => {
    let got = 0;
    let bytes = 0;
    while (got < count) {
      const before = got;
      for await (const m of await consumer.fetch({ max_messages: Math.min(readLimit, count - got), expires: 2_000 })) {
        got++;
        bytes += m.data.length;
      }
      if (got === before) throw new Error(`raw read stalled at ${got} of ${count}`);
    }
    return bytes;
  };
  const rawOrderedRead = (count: number) => measure(count, "none", async () => {
    const consumer = await js.consumers.get(audit, { deliver_policy: DeliverPolicy.All });
    await drain(consumer, count);
    await consumer.delete().catch(() => undefined);
  });
  const rawPullRead = (count: number) => measure(count, "none", async () => {
    const info = await jsm.consumers.add(audit, { ack_policy: AckPolicy.None, mem_storage: true, deliver_policy: DeliverPolicy.All, inactive_threshold: 60_000_000_000 });
    const consumer = await js.consumers.get(audit, info.name);
    await drain(consumer, count);
    await jsm.consumers.delete(audit, info.name);
  });
  /** FetchFacts(limit) → ConfirmReceipt(last_offset) → … until `count` facts arrived. */
  const fetchLoop = async (page: () => Promise<{ facts: number; lastOffset: bigint; cursor: bigint }>, confirm: (offset: bigint) => Promise<unknown>, count: number) => {
    let got = 0;
    while (got < count) {
      const p = await page();
      if (p.lastOffset <= p.cursor) throw new Error(`read stalled at ${got} of ${count}`);
      got += p.facts;
      await confirm(p.lastOffset);
    }
    if (got !== count) throw new Error(`read ${got} facts, expected ${count}`);
  };
  const rpcRead = (variant: "in-process" | "child", consumer: string, count: number) => {
    const client = endpoints[variant]!.peer;
    return measure(count, variant, () => fetchLoop(async () => {
      const r = await client.fetchFacts(consumer, { limit: readLimit });
      return { facts: r.facts.length, lastOffset: r.lastOffset, cursor: r.cursor };
    }, (offset) => client.confirmReceipt(consumer, offset), count));
  };
  const directRead = (consumer: string, count: number) => measure(count, "in-process", () => fetchLoop(async () => {
    const r = await store.readNext(consumer, { limit: readLimit, maxBytes: config.fetch.maxBytes });
    return { facts: r.facts.length, lastOffset: BigInt(r.lastOffset), cursor: BigInt(r.cursor) };
  }, (offset) => store.confirm(consumer, Number(offset)), count));

  // ---- the cases, in a fixed order; odd rounds run it backwards so drift hits raw and ours alike ----
  interface Case { readonly key: string; readonly kind: "append" | "read"; readonly name: string; run(round: number | "warm"): Promise<Sample> }
  const cases: Case[] = [
    { key: "append-raw-js", kind: "append", name: `append: raw nats.js js.publish(), ${rawInFlight} in flight`, run: (r) => rawAppend((s) => js.publish(s, payload), r === "warm" ? warmFacts : facts) },
    { key: "append-raw-lean", kind: "append", name: `append: raw lean publisher, ${rawInFlight} in flight`, run: (r) => rawAppend((s) => lean.publish(s, payload), r === "warm" ? warmFacts : facts) },
  ];
  for (const batch of batchSizes) {
    if (direct) cases.push({ key: `append-direct-${batch}`, kind: "append", name: `append: ZoneStore.append direct (no RPC), batch ${batch}`, run: (r) => directAppend(`direct-${batch}-${r}`, batch, r === "warm" ? warmFacts : factsFor(batch)) });
    for (const variant of variants) {
      cases.push({ key: `append-${variant}-${batch}`, kind: "append", name: `append: AppendFact ${variant}, batch ${batch}`, run: (r) => rpcAppend(variant, `${variant}-${batch}-${r}`, batch, r === "warm" ? warmFacts : factsFor(batch)) });
    }
  }
  const warmReadFacts = Math.min(readFacts, 20 * readLimit);
  cases.push(
    { key: "read-raw-ordered", kind: "read", name: `read: raw nats.js ordered consumer, fetch ${readLimit}`, run: (r) => rawOrderedRead(r === "warm" ? warmReadFacts : readFacts) },
    { key: "read-raw-pull", kind: "read", name: `read: raw ephemeral pull consumer, fetch ${readLimit}`, run: (r) => rawPullRead(r === "warm" ? warmReadFacts : readFacts) },
  );
  if (direct) cases.push({ key: "read-direct", kind: "read", name: `read: ZoneStore.readNext + confirm direct (no RPC), limit ${readLimit}`, run: (r) => directRead(readConsumer("direct", r), r === "warm" ? warmReadFacts : readFacts) });
  for (const variant of variants) {
    cases.push({ key: `read-${variant}`, kind: "read", name: `read: FetchFacts + ConfirmReceipt ${variant}, limit ${readLimit}`, run: (r) => rpcRead(variant, readConsumer(variant, r), r === "warm" ? warmReadFacts : readFacts) });
  }

  const samples = new Map<string, Sample[]>(cases.map((c) => [c.key, []]));
  const t0 = performance.now();
  for (const c of cases) await c.run("warm");
  console.error(`warmed up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const memory: Array<{ round: number; natsRssMiB: number; driverHeapMiB: number; driverRssMiB: number; zoneChildRssMiB?: number | undefined }> = [];
  const noteMemory = async (round: number) => {
    const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
    const childRss = childPid === undefined ? undefined : Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${childPid}/status`, "utf8"))?.[1] ?? 0) * 1024;
    const m = { round, natsRssMiB: mib(await nats.rssBytes()), driverHeapMiB: mib(process.memoryUsage().heapUsed), driverRssMiB: mib(process.memoryUsage().rss), zoneChildRssMiB: childRss === undefined ? undefined : mib(childRss) };
    memory.push(m);
    console.error(`memory before round ${round + 1}: nats-server RSS ${m.natsRssMiB} MiB, this process heap ${m.driverHeapMiB} MiB (RSS ${m.driverRssMiB} MiB)${m.zoneChildRssMiB === undefined ? "" : `, zone child RSS ${m.zoneChildRssMiB} MiB`}`);
  };
  for (let round = 0; round <= rounds; round++) {
    await noteMemory(round);
    if (round === rounds) break;
    const order = round % 2 === 0 ? cases : [...cases].reverse();
    for (const c of order) {
      const waited = await waitForQuiet(Number(values["quiet-wait"]), oursCpuMs);
      if (waited > 2) console.error(`  (waited ${waited.toFixed(0)} s for other work on the machine to calm down)`);
      const sample = await c.run(round);
      samples.get(c.key)!.push(sample);
      console.error(`round ${round + 1}/${rounds}  ${c.name}: ${Math.round(sample.rate).toLocaleString("en-US")} facts/s`);
    }
  }
  lean.close();

  // ---- report ----
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rateOf = (key: string) => median(samples.get(key)!.map((s) => s.rate));
  const cpuOf = (key: string, which: "driver" | "zone" | "nats") => {
    const xs = samples.get(key)!.map((s) => s.cpu[which]).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  const rows: Row[] = cases.map((c) => {
    const rate = rateOf(c.key);
    const [a, b] = c.kind === "append" ? ["append-raw-lean", "append-raw-js"] : ["read-raw-ordered", "read-raw-pull"];
    const ms = (x: number | undefined) => (x === undefined ? "" : x.toFixed(0));
    return {
      name: c.name,
      "facts/s (median)": Math.round(rate),
      rounds: samples.get(c.key)!.map((s) => Math.round(s.rate).toLocaleString("en-US")).join(" / "),
      "× lean|ordered": rate / rateOf(a),
      "× js.publish|pull": rate / rateOf(b),
      "CPU ms/1k: driver": ms(cpuOf(c.key, "driver")),
      zone: ms(cpuOf(c.key, "zone")),
      nats: ms(cpuOf(c.key, "nats")),
      "other cores (max)": Math.max(...samples.get(c.key)!.map((s) => s.otherCores ?? 0)).toFixed(2),
    };
  });
  printTable(
    `BSFG over RPC (HTTP/2 + mTLS 1.3 + Connect binary) vs raw JetStream, ${FACT_BYTES}-byte facts, nats-server ${nc.info?.version}, ${rounds} rounds (median), ` +
      `append ${facts.toLocaleString("en-US")} facts per case (batch 1: ${factsBatch1.toLocaleString("en-US")}) × ${concurrency} concurrent calls over ${connections} HTTP/2 connection(s), read ${readFacts.toLocaleString("en-US")} facts.\n` +
      `Ratios: append rows against the lean raw publisher | nats.js js.publish(); read rows against the raw ordered consumer | ephemeral pull consumer.\n` +
      `"in-process": the zone deployable runs in the benchmark's own Node process (client, server and driver share one event loop on ${(await import("node:os")).cpus().length} cores); "child": apps/zone in its own process. ` +
      `CPU ms per 1,000 facts: driver = this process (client; plus the server when in-process), zone = the child, nats = nats-server; other cores = the most CPU anything else used during a round of the case (kernel threads, other workloads on the machine). Targets: AppendFact batch 100 ≥ 0.5 × raw, FetchFacts ≥ 0.5 × raw read.`,
    rows,
  );
  const results = Object.fromEntries(cases.map((c) => [c.key, { name: c.name, factsPerSecond: samples.get(c.key)!.map((s) => s.rate), cpuMsPer1kFacts: samples.get(c.key)!.map((s) => s.cpu), otherCores: samples.get(c.key)!.map((s) => s.otherCores) }]));
  if (traceSink) console.log(`tracing on in the zone child: ${traceSink.received.requests} OTLP export requests, ${traceSink.received.bytes.toLocaleString("en-US")} bytes received by the sink`);
  const file = writeResults(values.tracing ? "rpc-tracing" : "rpc", {
    tracing: traceSink ? { exporter: "OTLP/HTTP, BatchSpanProcessor (defaults)", exported: { ...traceSink.received } } : false,
    facts, factsBatch1, factBytes: FACT_BYTES, batchSizes, concurrency, connections, rawInFlight, readFacts, readLimit, rounds, variants,
    rawRead: { ordered: "js.consumers.get(stream, { deliver_policy: all }) + fetch({ max_messages })", pull: "jsm.consumers.add(ack_policy none, mem_storage) + fetch({ max_messages })" },
    natsServer: nc.info?.version,
    memory,
    cases: results,
    ratios: Object.fromEntries(rows.map((r, i) => [cases[i]!.key, { vsLeanOrOrdered: r["× lean|ordered"], vsJsPublishOrPull: r["× js.publish|pull"] }])),
    targets: { appendBatch100VsRaw: 0.5, readVsRaw: 0.5 },
  });
  console.log(`\nresults: ${file}`);
  if (child) {
    // The child logs at warn: anything there (rejections, failures) would mean the numbers are not of the happy path.
    const logged = readFileSync(join(dir, "zone.log"), "utf8").split("\n").filter((l) => l.startsWith("{"));
    if (logged.length > 0) console.error(`the zone child logged ${logged.length} warning/error line(s), first: ${logged[0]}`);
  }
  await nc.close();
} finally {
  for (const client of clients) client.close();
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child!.once("exit", resolve));
    child.kill("SIGTERM");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
  await inProcess?.stop();
  await traceSink?.close();
  await nats.dispose();
  rmSync(dir, { recursive: true, force: true });
}
