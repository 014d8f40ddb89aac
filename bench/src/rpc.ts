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
 * All of it once per durability setting (--sync): a nats-server started with
 * that sync_interval and a zone configuration with the matching nats.sync;
 * every ratio is against the raw rows of the same setting.
 *
 *   pnpm bench:rpc [-- --facts 100000 --rounds 3 --read-facts 100000 --variants in-process,child --sync always,interval | --quick]
 *   pnpm bench:rpc -- --variants child --tracing    (the zone child traces every call, exported over OTLP/HTTP)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
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
import { createCertificateAuthority, issueCertificate, type CertificateAuthority, type IssuedCertificate } from "@bsfg/pki";
import { AppendStatus, FactMessageSchema, type AppendResult, type FactMessage } from "@bsfg/proto";
import { publisher } from "@bsfg/storage";
import { freePort, startNatsServer } from "@bsfg/testkit";
import { assertServerSync, eachSetting, parseSyncSettings, SYNC_COLUMN, syncIntervalFor, syncIntervals, syncOption, type NatsSync } from "./durability.js";
import { machineBusyMs, printTable, procCpuMs, secondsSince, selfCpuMs, waitForQuiet, writeResults, type Row, benchArgs } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string" },
  // Batch 1 costs one call per fact (~1 ms of CPU on client + server): fewer facts keep the run bounded.
  "facts-batch-1": { type: "string" },
  batches: { type: "string", default: "1,10,100" },
  concurrency: { type: "string", default: "64" },
  connections: { type: "string", default: "1" },
  "raw-in-flight": { type: "string", default: "256" },
  "read-facts": { type: "string" },
  "read-limit": { type: "string", default: "500" },
  rounds: { type: "string" },
  "warm-facts": { type: "string" },
  variants: { type: "string", default: "in-process,child" },
  "no-direct": { type: "boolean", default: false },
  "zone-bin": { type: "string" },
  "child-cpu-prof": { type: "string" },
  // Tracing on in the zone child: OTLP/HTTP export (batched) to a local sink that discards it.
  tracing: { type: "boolean", default: false },
  // The machine may be shared: before each case, wait (up to this many seconds) until other work uses < 0.25 cores; 0: never wait.
  "quiet-wait": { type: "string" },
  ...syncOption,
  // A small run to check that everything works: 5,000 facts per case (batch 1: 1,000), 5,000 read, one round, no quiet wait.
  quick: { type: "boolean", default: false },
} });
const quick = values.quick;
const facts = Number(values.facts ?? (quick ? 5_000 : 100_000));
const factsBatch1 = Math.min(Number(values["facts-batch-1"] ?? (quick ? 1_000 : 20_000)), facts);
const batchSizes = values.batches.split(",").map(Number);
const concurrency = Number(values.concurrency);
const connections = Number(values.connections);
const rawInFlight = Number(values["raw-in-flight"]);
const readFacts = Number(values["read-facts"] ?? (quick ? 5_000 : 100_000));
const readLimit = Number(values["read-limit"]);
const rounds = Number(values.rounds ?? (quick ? 1 : 3));
const warmFacts = Number(values["warm-facts"] ?? (quick ? 500 : 3_000));
const quietWait = Number(values["quiet-wait"] ?? (quick ? 0 : 60));
const settings = parseSyncSettings(values.sync);
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

/**
 * A zone run with nats.sync interval warns once at start that a power loss can
 * lose acknowledged facts: expected under that setting, not a sign that the
 * numbers are off the happy path.
 */
function expectedWarning(line: string, natsSync: NatsSync): boolean {
  try {
    const entry = JSON.parse(line) as { event?: string; sync?: string };
    return natsSync === "interval" && entry.event === "durability" && entry.sync === "interval";
  } catch {
    return false;
  }
}

// ---- the PKI: one CA and its certificates for the whole run ----
interface Pki {
  readonly ca: CertificateAuthority;
  readonly zone: IssuedCertificate;
  readonly producer: IssuedCertificate;
  readonly peer: IssuedCertificate;
}

async function createPki(): Promise<Pki> {
  const ca = await createCertificateAuthority({ name: "BSFG Bench CA" });
  return {
    ca,
    zone: await issueCertificate(ca, { identity: "plant-a-bsfg", usage: "both" }),
    producer: await issueCertificate(ca, { identity: "mes-producer", usage: "client" }),
    peer: await issueCertificate(ca, { identity: "enterprise-bsfg", usage: "client" }),
  };
}

interface Case { readonly key: string; readonly kind: "append" | "read"; readonly name: string; run(round: number | "warm"): Promise<Sample> }

/** Everything one durability setting measured, for the table and the JSON. */
interface SettingResult {
  readonly natsSync: NatsSync;
  readonly natsServer: string | undefined;
  readonly cases: readonly Case[];
  readonly samples: ReadonlyMap<string, Sample[]>;
  readonly memory: ReadonlyArray<{ round: number; natsRssMiB: number; driverHeapMiB: number; driverRssMiB: number; zoneChildRssMiB?: number | undefined }>;
  /** What the OTLP sink received (--tracing), proof that spans were really exported. */
  readonly tracing: { requests: number; bytes: number } | undefined;
}

// ---- the estate of one setting: nats-server, zone configuration, deployables ----
/**
 * One durability setting, start to end: a nats-server with its sync_interval,
 * the zone (in this process and as a child) with the matching nats.sync, every
 * case warmed up and measured `rounds` times, then everything stopped.
 */
async function runSetting(natsSync: NatsSync, pki: Pki): Promise<SettingResult> {
  const nats = await startNatsServer({ domain: "plant-a", maxFileStore: "40GB", syncInterval: syncIntervalFor(natsSync) });
  natsPid = () => nats.pid;
  childPid = undefined;
  const dir = mkdtempSync(join(tmpdir(), `bsfg-bench-rpc-${natsSync}-`));
  let child: ChildProcess | undefined;
  let traceSink: TraceSink | undefined;
  let inProcess: RunningDeployable | undefined;
  const clients: BsfgClient[] = [];
  try {
    await assertServerSync(nats.monitorUrl, natsSync);
    const { ca, zone: zoneCert, producer, peer } = pki;
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
      // nats.sync matches the server's sync_interval; with "always" the zone checks it on /varz before it is ready.
      nats: { servers: [nats.url], monitor: [nats.monitorUrl], sync: natsSync },
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
    console.error(`nats sync ${natsSync}: warmed up in ${secondsSince(t0)} s`);
    const memory: Array<SettingResult["memory"][number]> = [];
    const noteMemory = async (round: number) => {
      const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
      const childRss = childPid === undefined ? undefined : Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${childPid}/status`, "utf8"))?.[1] ?? 0) * 1024;
      const m = { round, natsRssMiB: mib(await nats.rssBytes()), driverHeapMiB: mib(process.memoryUsage().heapUsed), driverRssMiB: mib(process.memoryUsage().rss), zoneChildRssMiB: childRss === undefined ? undefined : mib(childRss) };
      memory.push(m);
      console.error(`nats sync ${natsSync}, memory before round ${round + 1}: nats-server RSS ${m.natsRssMiB} MiB, this process heap ${m.driverHeapMiB} MiB (RSS ${m.driverRssMiB} MiB)${m.zoneChildRssMiB === undefined ? "" : `, zone child RSS ${m.zoneChildRssMiB} MiB`}`);
    };
    for (let round = 0; round <= rounds; round++) {
      await noteMemory(round);
      if (round === rounds) break;
      const order = round % 2 === 0 ? cases : [...cases].reverse();
      for (const c of order) {
        // waitForQuiet samples for a second at least: --quiet-wait 0 skips it (--quick).
        const waited = quietWait > 0 ? await waitForQuiet(quietWait, oursCpuMs) : 0;
        if (waited > 2) console.error(`  (waited ${waited.toFixed(0)} s for other work on the machine to calm down)`);
        const sample = await c.run(round);
        samples.get(c.key)!.push(sample);
        console.error(`nats sync ${natsSync}, round ${round + 1}/${rounds}  ${c.name}: ${Math.round(sample.rate).toLocaleString("en-US")} facts/s`);
      }
    }
    lean.close();

    if (child) {
      // The child logs at warn: anything there (rejections, failures) would mean the numbers are not of the happy path.
      const logged = readFileSync(join(dir, "zone.log"), "utf8").split("\n").filter((l) => l.startsWith("{") && !expectedWarning(l, natsSync));
      if (logged.length > 0) console.error(`nats sync ${natsSync}: the zone child logged ${logged.length} warning/error line(s), first: ${logged[0]}`);
    }
    const natsServer = nc.info?.version;
    await nc.close();
    // The sink's own counters, not a copy: the child exports its last spans as it stops (below).
    return { natsSync, natsServer, cases, samples, memory, tracing: traceSink?.received };
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
}

// ---- report ----
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The median rate of each case of one setting. */
function rateOf(r: SettingResult, key: string): number {
  return median(r.samples.get(key)!.map((s) => s.rate));
}

/** The raw rows a case is compared with, under the same setting: [first ratio column, second]. */
function rawKeys(c: Case): [string, string] {
  return c.kind === "append" ? ["append-raw-lean", "append-raw-js"] : ["read-raw-ordered", "read-raw-pull"];
}

/** One row per case of one setting; ratios against the raw rows of that same setting. */
function tableRows(r: SettingResult): Row[] {
  const cpuOf = (key: string, which: "driver" | "zone" | "nats") => {
    const xs = r.samples.get(key)!.map((s) => s.cpu[which]).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  const ms = (x: number | undefined) => (x === undefined ? "" : x.toFixed(0));
  return r.cases.map((c) => {
    const rate = rateOf(r, c.key);
    const [a, b] = rawKeys(c);
    return {
      name: c.name,
      [SYNC_COLUMN]: r.natsSync,
      "facts/s (median)": Math.round(rate),
      rounds: r.samples.get(c.key)!.map((s) => Math.round(s.rate).toLocaleString("en-US")).join(" / "),
      "× lean|ordered": rate / rateOf(r, a),
      "× js.publish|pull": rate / rateOf(r, b),
      "CPU ms/1k: driver": ms(cpuOf(c.key, "driver")),
      zone: ms(cpuOf(c.key, "zone")),
      nats: ms(cpuOf(c.key, "nats")),
      "other cores (max)": Math.max(...r.samples.get(c.key)!.map((s) => s.otherCores ?? 0)).toFixed(2),
    };
  });
}

/** The JSON of one setting: every case and ratio carries the setting it ran under. */
function settingJson(r: SettingResult) {
  return {
    natsSync: r.natsSync,
    syncInterval: syncIntervalFor(r.natsSync),
    natsServer: r.natsServer,
    tracing: r.tracing ? { exporter: "OTLP/HTTP, BatchSpanProcessor (defaults)", exported: r.tracing } : false,
    memory: r.memory,
    cases: Object.fromEntries(r.cases.map((c) => {
      const samples = r.samples.get(c.key)!;
      return [c.key, { name: c.name, natsSync: r.natsSync, factsPerSecond: samples.map((s) => s.rate), cpuMsPer1kFacts: samples.map((s) => s.cpu), otherCores: samples.map((s) => s.otherCores) }];
    })),
    ratios: Object.fromEntries(r.cases.map((c) => {
      const [a, b] = rawKeys(c);
      return [c.key, { natsSync: r.natsSync, vsLeanOrOrdered: rateOf(r, c.key) / rateOf(r, a), vsJsPublishOrPull: rateOf(r, c.key) / rateOf(r, b) }];
    })),
  };
}

const started = performance.now();
const pki = await createPki();
const results: SettingResult[] = await eachSetting(settings, (natsSync) => runSetting(natsSync, pki));
printTable(
  `BSFG over RPC (HTTP/2 + mTLS 1.3 + Connect binary) vs raw JetStream, ${FACT_BYTES}-byte facts, nats-server ${results[0]?.natsServer}, ${rounds} round(s) (median), ` +
    `append ${facts.toLocaleString("en-US")} facts per case (batch 1: ${factsBatch1.toLocaleString("en-US")}) × ${concurrency} concurrent calls over ${connections} HTTP/2 connection(s), read ${readFacts.toLocaleString("en-US")} facts.\n` +
    `nats sync: always = sync_interval always (fsync before every acknowledgement) and the zone's nats.sync always; interval = sync_interval ${syncIntervalFor("interval")} and nats.sync interval; each setting on its own server and zone.\n` +
    `Ratios, against the raw rows of the same nats sync: append rows against the lean raw publisher | nats.js js.publish(); read rows against the raw ordered consumer | ephemeral pull consumer.\n` +
    `"in-process": the zone deployable runs in the benchmark's own Node process (client, server and driver share one event loop on ${cpus().length} cores); "child": apps/zone in its own process. ` +
    `CPU ms per 1,000 facts: driver = this process (client; plus the server when in-process), zone = the child, nats = nats-server; other cores = the most CPU anything else used during a round of the case (kernel threads, other workloads on the machine). Targets: AppendFact batch 100 ≥ 0.8 × js.publish, FetchFacts + ConfirmReceipt ≥ 0.5 × the ordered consumer.`,
  results.flatMap(tableRows),
);
// The relay issue's targets: AppendFact batch 100 ≥ 0.8 × js.publish; FetchFacts + ConfirmReceipt ≥ 0.5 × the ordered consumer.
for (const r of results) {
  for (const variant of variants) {
    const append = batchSizes.includes(100) ? rateOf(r, `append-${variant}-100`) / rateOf(r, "append-raw-js") : undefined;
    const read = rateOf(r, `read-${variant}`) / rateOf(r, "read-raw-ordered");
    if (append !== undefined) console.log(`nats sync ${r.natsSync}, ${variant}: AppendFact batch 100 = ${append.toFixed(3)} × js.publish (target ≥ 0.8): ${append >= 0.8 ? "met" : `MISSED by ${(0.8 / append).toFixed(2)}×`}`);
    console.log(`nats sync ${r.natsSync}, ${variant}: FetchFacts + ConfirmReceipt = ${read.toFixed(3)} × ordered consumer (target ≥ 0.5): ${read >= 0.5 ? "met" : `MISSED by ${(0.5 / read).toFixed(2)}×`}`);
  }
}
for (const r of results) {
  if (r.tracing) console.log(`nats sync ${r.natsSync}, tracing on in the zone child: ${r.tracing.requests} OTLP export requests, ${r.tracing.bytes.toLocaleString("en-US")} bytes received by the sink`);
}
const file = writeResults(values.tracing ? "rpc-tracing" : "rpc", {
  facts, factsBatch1, factBytes: FACT_BYTES, batchSizes, concurrency, connections, rawInFlight, readFacts, readLimit, rounds, variants,
  rawRead: { ordered: "js.consumers.get(stream, { deliver_policy: all }) + fetch({ max_messages })", pull: "jsm.consumers.add(ack_policy none, mem_storage) + fetch({ max_messages })" },
  natsSync: settings, syncIntervals,
  runs: results.map(settingJson),
  targets: { appendBatch100VsJsPublish: 0.8, readVsOrderedConsumer: 0.5 },
  elapsedSeconds: (performance.now() - started) / 1000,
});
console.log(`\nresults: ${file}`);
