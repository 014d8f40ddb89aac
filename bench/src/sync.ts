/**
 * Replication: the sync worker carrying facts PlantA → Enterprise, against the
 * raw substrate, in the same run.
 *
 * Throughput (facts/s), each case moving `--facts` facts of 256 bytes:
 *  - raw publish: the lean pipelined JetStream publisher of @bsfg/storage into a
 *    plain stream on a fresh nats-server — what one server takes in;
 *  - leaf-node sourcing: JetStream's own cross-domain replication. The facts
 *    are published into stream S in the PlantA domain, then a stream in the
 *    Enterprise domain sourcing S over a leaf-node connection is created and
 *    timed until it holds them all. BSFG deliberately does not join zones into
 *    one NATS network (see BRIEF §5/§6: an explicit, authenticated, receiver-
 *    driven boundary); this row is what that choice costs;
 *  - BSFG direct (Enterprise ← PlantA) and through the IDMZ (Enterprise ←
 *    IDMZ ← PlantA): the facts are appended in PlantA first (not timed), then
 *    the sync worker(s) start; the clock runs from the first fetch (the link
 *    pulling from PlantA became active) to the last confirm (the last hop's
 *    sender holds a cursor at its last fact). Each with the worker in this
 *    process ("in-process") or as apps/sync in its own process ("child").
 *
 * Crossing latency, direct link: a steady `--rate` facts/s for
 * `--latency-seconds` through AppendFact in PlantA, with a running worker; per
 * message_id, from the append's acknowledgement to the fact being appended in
 * Enterprise (seen by an ordered consumer on Enterprise's stream).
 *
 * --reverse runs PlantA outbound-only (issue 17): it dials the receiving worker's reverse
 * listener and that worker pulls over the connection PlantA opened. A worker's clock (and the
 * latency load) starts once its link has that connection.
 *
 * All of it once per durability setting (--sync): every nats-server of the
 * raw, leaf-node and BSFG cases started with that sync_interval, the estates'
 * zones with the matching nats.sync; every ratio is against the raw rows of
 * the same setting.
 *
 *   pnpm bench:sync [-- --facts 100000 --page-limit 500 --prefetch 1 --latency-seconds 20 --rate 1000 --rounds 3 --variants in-process,child --only throughput,latency --sync always,interval --reverse | --quick]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { DeliverPolicy, StorageType, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startTestEstate, threeZoneEstate, type EstateTopology, type SyncReplica, type TestEstate } from "@bsfg/estate-kit";
import { AppendStatus, FactMessageSchema, type AppendResult } from "@bsfg/proto";
import { factStreamName, isLinkMarker, linkMarkerSubject, publisher, type ZoneStore } from "@bsfg/storage";
import { freePort, pollUntil, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { assertServerSync, eachSetting, parseSyncSettings, SYNC_COLUMN, syncIntervalFor, syncIntervals, syncOption, type NatsSync } from "./durability.js";
import { benchArgs, machineBusyMs, printTable, procCpuMs, secondsSince, selfCpuMs, waitForQuiet, writeResults, type Row } from "./report.js";
import { pipelined, sizedFact } from "./workload.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  facts: { type: "string" },
  "latency-seconds": { type: "string" },
  rate: { type: "string", default: "1000" },
  rounds: { type: "string" },
  "warm-facts": { type: "string" },
  variants: { type: "string", default: "in-process,child" },
  "raw-in-flight": { type: "string", default: "256" },
  "sync-bin": { type: "string" },
  // The receiving workers' sync.pageLimit (default: the configuration's default).
  "page-limit": { type: "string" },
  // The receiving workers' sync.prefetch: pages read ahead while one is shipped.
  prefetch: { type: "string" },
  // Either part alone: throughput, latency.
  only: { type: "string", default: "throughput,latency" },
  // The machine may be shared: before each case, wait (up to this many seconds) until other work uses < 0.25 cores; 0: never wait.
  "quiet-wait": { type: "string" },
  ...syncOption,
  // PlantA outbound-only: the links from it run over the connections it dials.
  reverse: { type: "boolean", default: false },
  // A small run to check that everything works, under both settings well within two minutes:
  // 5,000 facts (1,000 to warm up), 3 s of latency, one round, no quiet wait.
  quick: { type: "boolean", default: false },
} });
const quick = values.quick;
const facts = Number(values.facts ?? (quick ? 5_000 : 100_000));
const latencySeconds = Number(values["latency-seconds"] ?? (quick ? 3 : 20));
const rate = Number(values.rate);
const rounds = Number(values.rounds ?? (quick ? 1 : 3));
const warmFacts = Number(values["warm-facts"] ?? Math.min(facts, quick ? 1_000 : 5_000));
const rawInFlight = Number(values["raw-in-flight"]);
const quietWait = Number(values["quiet-wait"] ?? (quick ? 0 : 60));
const settings = parseSyncSettings(values.sync);
const variants = values.variants.split(",").map((v) => v.trim()).filter((v) => v !== "") as Variant[];
for (const v of variants) if (v !== "in-process" && v !== "child") throw new Error(`--variants: unknown "${v}" (in-process, child)`);
const pageLimit = values["page-limit"] === undefined ? undefined : Number(values["page-limit"]);
const prefetch = values.prefetch === undefined ? undefined : Number(values.prefetch);
const syncExtra = { ...(pageLimit === undefined ? {} : { pageLimit }), ...(prefetch === undefined ? {} : { prefetch }) };
const syncBin = values["sync-bin"] ?? fileURLToPath(new URL("../../apps/sync/dist/main.js", import.meta.url));
type Variant = "in-process" | "child";
const parts = new Set(values.only.split(",").map((p) => p.trim()));
const reverse = values.reverse;
const outboundOnly = reverse ? { outboundOnly: ["plant-a"] } : {};
for (const p of parts) if (p !== "throughput" && p !== "latency") throw new Error(`--only: unknown "${p}" (throughput, latency)`);

const FACT_BYTES = 256;
/** Prefill appends: the storage limit per batch, a few in flight. */
const PREFILL_BATCH = 1_000;
/** The first second of the steady load warms the path and is left out of the latency figures. */
const LATENCY_WARM_MS = 1_000;
/** How often the end of a case (cursor, stream count) is checked: the resolution of the timings. */
const POLL_MS = 5;

/**
 * Facts in a zone's log so far: its last offset minus the links' position markers, which a
 * relaying zone writes into the same stream (one per shipped page).
 */
async function factsIn(store: ZoneStore, stream: string): Promise<number> {
  const markers = linkMarkerSubject(stream, ">");
  const info = await store.substrate.jsm.streams.info(factStreamName(stream), { subjects_filter: markers });
  const markerCount = Object.values(info.state.subjects ?? {}).reduce((sum, n) => sum + n, 0);
  return info.state.last_seq - markerCount;
}
const STREAM = "operational";

// ---- CPU accounting: this process, and its children by kind (nats-server, the sync children) ----
/** This process's child processes: every nats-server and sync child the run started. */
function childProcesses(): Array<{ pid: number; comm: string }> {
  const children: Array<{ pid: number; comm: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) children.push({ pid: Number(entry), comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) });
    } catch {
      // The process ended meanwhile.
    }
  }
  return children;
}

interface Cpu { readonly self: number; readonly nats: number; readonly sync: number; readonly machine: number | undefined }
function cpuNow(): Cpu {
  let nats = 0;
  let sync = 0;
  for (const child of childProcesses()) {
    const ms = procCpuMs(child.pid) ?? 0;
    if (child.comm === "nats-server") nats += ms;
    else sync += ms;
  }
  return { self: selfCpuMs(), nats, sync, machine: machineBusyMs() };
}
const oursCpuMs = () => {
  const c = cpuNow();
  return c.self + c.nats + c.sync;
};

/** CPU per process kind over a window, and what everything else on the machine used meanwhile. */
interface CpuUse {
  /** CPU ms per 1,000 facts: this process (zones' services; the worker when in-process), the sync children, every nats-server. */
  readonly cpu: { readonly self: number; readonly sync: number; readonly nats: number };
  /** Cores busy with anything else on the machine (other processes, kernel threads), averaged over the window. */
  readonly otherCores: number | undefined;
}

/** Starts counting CPU; the function returned ends the window and spreads it over `count` facts. */
function cpuWindow(): (count: number) => CpuUse {
  const c0 = cpuNow();
  const from = Date.now();
  return (count) => {
    const c1 = cpuNow();
    const per1k = (ms: number) => (ms * 1000) / count;
    const ours = (c1.self - c0.self) + (c1.sync - c0.sync) + (c1.nats - c0.nats);
    const otherMs = c0.machine !== undefined && c1.machine !== undefined ? c1.machine - c0.machine - ours : undefined;
    return {
      cpu: { self: per1k(c1.self - c0.self), sync: per1k(c1.sync - c0.sync), nats: per1k(c1.nats - c0.nats) },
      otherCores: otherMs === undefined ? undefined : Math.max(0, otherMs) / Math.max(1, Date.now() - from),
    };
  };
}

interface Sample extends CpuUse {
  readonly rate: number;
  readonly seconds: number;
}

/**
 * Times the part of `timed` between its call of `begin` and its end. `begin`
 * takes the moment the clock started (epoch ms) when the case learns it after
 * the fact, e.g. from a child's log line; CPU is counted from the call itself.
 */
async function measure(count: number, timed: (begin: (atMs?: number) => void) => Promise<void>): Promise<Sample> {
  let cpu: ((count: number) => CpuUse) | undefined;
  let t0 = 0;
  await timed((atMs) => {
    cpu = cpuWindow();
    t0 = atMs ?? Date.now();
  });
  const seconds = (Date.now() - t0) / 1000;
  if (cpu === undefined) throw new Error("the case never started its clock");
  return { rate: count / seconds, seconds, ...cpu(count) };
}

/** Before a measured case (warm-up runs skip it): see --quiet-wait. */
const settle = async (round: string) => {
  // waitForQuiet samples for a second at least: --quiet-wait 0 skips it (--quick).
  if (round === "warm" || quietWait <= 0) return;
  const waited = await waitForQuiet(quietWait, oursCpuMs);
  if (waited > 2) console.error(`  (waited ${waited.toFixed(0)} s for other work on the machine to calm down)`);
};

interface Case { readonly key: string; readonly name: string; run(round: string, count: number): Promise<Sample> }

/** Everything one durability setting measured, for the tables and the JSON. */
interface SettingResult {
  readonly natsSync: NatsSync;
  readonly natsServer: string | undefined;
  readonly pageLimit: number;
  readonly prefetch: number;
  readonly cases: readonly Case[];
  readonly samples: ReadonlyMap<string, Sample[]>;
  readonly latency: Readonly<Record<string, LatencyResult>>;
}

/** Every fact of the run, encoded once: the raw and leaf-node cases publish these bytes. */
const payloads = parts.has("throughput") ? Array.from({ length: Math.max(facts, warmFacts) }, (_, i) => toBinary(FactMessageSchema, sizedFact("raw", i, FACT_BYTES))) : [];

// ---- the servers and estates of one setting ----
/**
 * One durability setting, start to end: the raw server, the leaf-node pair and
 * both estates with its sync_interval (and nats.sync), every case warmed up
 * and measured `rounds` times, the latency run, then everything stopped.
 */
async function runSetting(natsSync: NatsSync): Promise<SettingResult> {
  const dir = mkdtempSync(join(tmpdir(), `bsfg-bench-sync-${natsSync}-`));
  const servers: NatsServerHandle[] = [];
  const estates: TestEstate[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  try {
    // (a) Raw publish into one server.
    const syncInterval = syncIntervalFor(natsSync);
    const rawServer = await startNatsServer({ domain: "raw", syncInterval });
    servers.push(rawServer);
    const rawNc = await connect({ servers: rawServer.url });
    closers.push(() => rawNc.close());
    const rawJsm = await jetstreamManager(rawNc, { domain: "raw" });
    const rawLean = publisher(rawNc, 10_000);
    closers.push(async () => rawLean.close());

    // (b) Two domains joined by a leaf-node connection: PlantA's server is the leaf of Enterprise's hub.
    const leafPort = await freePort();
    const hub = await startNatsServer({ domain: "enterprise", syncInterval, extraConfig: `leafnodes { listen: "127.0.0.1:${leafPort}" }` });
    servers.push(hub);
    const leaf = await startNatsServer({ domain: "plant-a", syncInterval, extraConfig: `leafnodes { remotes: [{ url: "nats-leaf://127.0.0.1:${leafPort}" }] }` });
    servers.push(leaf);
    for (const server of servers) await assertServerSync(server.monitorUrl, natsSync);
    await pollUntil(async () => ((await (await fetch(`http://127.0.0.1:${hub.monitorPort}/leafz`)).json()) as { leafnodes: number }).leafnodes > 0,
      { timeoutMs: 20_000, what: "the PlantA leaf node connected to the Enterprise hub" });
    const leafNc = await connect({ servers: leaf.url });
    closers.push(() => leafNc.close());
    const hubNc = await connect({ servers: hub.url });
    closers.push(() => hubNc.close());
    const leafJsm = await jetstreamManager(leafNc, { domain: "plant-a" });
    const hubJsm = await jetstreamManager(hubNc, { domain: "enterprise" });
    const leafLean = publisher(leafNc, 10_000);
    closers.push(async () => leafLean.close());

    // BSFG: a two-zone estate (the direct link) and the three-zone line, operational facts only.
    // Each estate's streams hold every fact of its cases (plus the latency run), under the 80 % backpressure mark.
    const retained = (rounds + 1) * variants.length * (facts + warmFacts) + variants.length * rate * (latencySeconds + 2);
    const operationalGiB = Math.max(1, Math.ceil((retained * 700) / 2 ** 30));
    const estateFor = async (name: string, topology: EstateTopology) => {
      mkdirSync(join(dir, name));
      const estate = await startTestEstate({
        dir: join(dir, name),
        topology,
        sync: false,
        storage: { streams: { operational: { maxBytes: `${operationalGiB}GiB` }, audit: { maxBytes: "128MiB" }, documents: { maxBytes: "128MiB" } }, quarantine: { maxBytes: "64MiB" } },
        maxFileStore: `${operationalGiB + 1}GB`,
        // Every zone's servers with the setting's sync_interval, and its nats.sync to match.
        natsSync,
        // Anonymous and plain, like the raw rows' servers: the ratio compares like with like.
        substrateAuth: false,
        ...(Object.keys(syncExtra).length === 0 ? {} : { extra: () => ({ sync: syncExtra }) }),
      });
      estates.push(estate);
      for (const zone of Object.values(estate.zones)) await assertServerSync(zone.nats.monitorUrl, natsSync);
      return estate;
    };
    const direct = await estateFor("direct", { ...threeZoneEstate, zones: ["enterprise", "plant-a"], categories: [STREAM], ...outboundOnly });
    const throughIdmz = await estateFor("idmz", { ...threeZoneEstate, categories: [STREAM], ...outboundOnly });
    const consumerName = (receiver: string, sender: string) => `${receiver}-from-${sender}-${STREAM}`;

    // ---- the cases ----
    const rawCase = async (round: string, count: number) => {
      await rawJsm.streams.add({ name: `raw-${round}`, subjects: [`raw-${round}.>`], storage: StorageType.File });
      await settle(round);
      const sample = await measure(count, async (begin) => {
        begin();
        await pipelined(count, rawInFlight, (i) => rawLean.publish(`raw-${round}.batch.${i % 1000}`, payloads[i]!));
      });
      await rawJsm.streams.delete(`raw-${round}`);
      return sample;
    };

    const leafCase = async (round: string, count: number) => {
      const source = `facts-${round}`;
      const sourced = `${source}-sourced`;
      await leafJsm.streams.add({ name: source, subjects: [`facts-${round}.>`], storage: StorageType.File });
      await pipelined(count, rawInFlight, (i) => leafLean.publish(`facts-${round}.batch.${i % 1000}`, payloads[i]!));
      await settle(round);
      const sample = await measure(count, async (begin) => {
        begin();
        // Sourcing starts when the stream is created: the Enterprise server creates a consumer in PlantA's domain through its API prefix.
        await hubJsm.streams.add({ name: sourced, storage: StorageType.File, sources: [{ name: source, external: { api: "$JS.plant-a.API", deliver: "" } }] });
        await pollUntil(async () => (await hubJsm.streams.info(sourced)).state.messages >= count,
          { timeoutMs: caseTimeoutMs(count), intervalMs: POLL_MS, what: `${count} facts sourced into ${sourced}` });
      });
      const held = (await hubJsm.streams.info(sourced)).state.messages;
      if (held !== count) throw new Error(`${sourced} holds ${held} facts, expected ${count}`);
      await hubJsm.streams.delete(sourced);
      await leafJsm.streams.delete(source);
      return sample;
    };

    const bsfgCase = async (path: "direct" | "idmz", variant: Variant, round: string, count: number) => {
      const estate = path === "direct" ? direct : throughIdmz;
      const store = (zone: string) => estate.zones[zone]!.services.store;
      // The hop that pulls from PlantA, and the last hop (into Enterprise), whose confirm ends the case.
      const firstHop = path === "direct" ? "enterprise" : "idmz";
      const lastSender = path === "direct" ? "plant-a" : "idmz";
      const lastConsumer = consumerName("enterprise", lastSender);
      const enterpriseBefore = await factsIn(store("enterprise"), STREAM);
      // The last hop's sender log grows by exactly these facts (nothing else crosses), plus its links' position markers.
      const senderTarget = (await factsIn(store(lastSender), STREAM)) + count;
      await prefill(store("plant-a"), `${path}-${variant}-${round}`, count);
      await settle(round);

      const replicas: SyncReplica[] = [];
      let sample: Sample;
      try {
        // Through the IDMZ, Enterprise's worker waits on its (empty) link first; the clock starts with IDMZ's pull from PlantA.
        if (path === "idmz") replicas.push((await startWorker(estate, "enterprise", "idmz", variant)).replica);
        sample = await measure(count, async (begin) => {
          const { replica, activeAt } = await startWorker(estate, firstHop, "plant-a", variant);
          replicas.push(replica);
          begin(activeAt);
          await pollUntil(async () => (await factsIn(store(lastSender), STREAM)) >= senderTarget && (await store(lastSender).cursor(lastConsumer)) >= (await store(lastSender).highWater(STREAM)),
            { timeoutMs: caseTimeoutMs(count), intervalMs: POLL_MS, what: `${lastConsumer} confirmed all ${count} facts` });
        });
      } finally {
        for (const replica of replicas.reverse()) await replica.stop();
      }
      // Nothing lost, nothing duplicated on the way.
      const arrived = (await factsIn(store("enterprise"), STREAM)) - enterpriseBefore;
      if (arrived !== count) throw new Error(`Enterprise appended ${arrived} facts, expected ${count}`);
      return sample;
    };

    const cases: Case[] = [
      { key: "raw-publish", name: `raw publish: lean pipelined, ${rawInFlight} in flight, one server`, run: rawCase },
      { key: "leaf-sourcing", name: "JetStream sourcing PlantA → Enterprise over a leaf node", run: leafCase },
    ];
    for (const path of ["direct", "idmz"] as const) {
      for (const variant of variants) {
        cases.push({
          key: `bsfg-${path}-${variant}`,
          name: `BSFG ${path === "direct" ? "PlantA → Enterprise" : "PlantA → IDMZ → Enterprise"}, sync ${variant}`,
          run: (round, count) => bsfgCase(path, variant, round, count),
        });
      }
    }

    const samples = new Map<string, Sample[]>(cases.map((c) => [c.key, []]));
    if (parts.has("throughput")) {
      const started = performance.now();
      // Warm-up: JIT, file store blocks, HTTP/2 sessions; child workers start cold every time, as a deployed one does.
      for (const c of cases) await c.run("warm", warmFacts);
      console.error(`nats sync ${natsSync}: warmed up in ${secondsSince(started)} s`);
      for (let round = 0; round < rounds; round++) {
        // Odd rounds run backwards so drift hits the raw cases and ours alike.
        const order = round % 2 === 0 ? cases : [...cases].reverse();
        for (const c of order) {
          const sample = await c.run(`r${round}`, facts);
          samples.get(c.key)!.push(sample);
          console.error(`nats sync ${natsSync}, round ${round + 1}/${rounds}  ${c.name}: ${Math.round(sample.rate).toLocaleString("en-US")} facts/s`);
        }
      }
    }

    // ---- crossing latency, direct link ----
    const latency: Record<string, LatencyResult> = {};
    if (parts.has("latency")) {
      for (const variant of variants) {
        await settle("latency");
        const l = (latency[variant] = await crossingLatency(direct, variant));
        console.error(`nats sync ${natsSync}, latency, sync ${variant}: p50 ${l.crossing.p50.toFixed(1)} ms, p99 ${l.crossing.p99.toFixed(1)} ms at ${Math.round(l.achievedRate)} facts/s`);
      }
    }

    return { natsSync, natsServer: rawNc.info?.version, pageLimit: direct.zones.enterprise!.config.sync.pageLimit, prefetch: direct.zones.enterprise!.config.sync.prefetch, cases, samples, latency };
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    for (const estate of estates) await estate.dispose();
    for (const server of servers) await server.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- report ----
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rateOf = (r: SettingResult, key: string) => median(r.samples.get(key)!.map((s) => s.rate));
const cpuColumns = (use: CpuUse[], child: boolean) => ({
  "CPU ms/1k: this process": median(use.map((u) => u.cpu.self)).toFixed(0),
  "sync child": child ? median(use.map((u) => u.cpu.sync)).toFixed(0) : "",
  "nats-servers": median(use.map((u) => u.cpu.nats)).toFixed(0),
  "other cores (max)": Math.max(...use.map((u) => u.otherCores ?? 0)).toFixed(2),
});
const cpuNote = `CPU ms per 1,000 facts: this process (the zones' services; the worker when in-process), the sync child(ren), all nats-servers; other cores = the most CPU anything else on the machine used meanwhile.`;
const syncNote = `nats sync: always = every nats-server with sync_interval always (fsync before every acknowledgement) and the zones' nats.sync always; interval = sync_interval ${syncIntervalFor("interval")} and nats.sync interval; each setting on its own servers and estates.`;

/** Throughput rows of one setting; ratios against the raw publish and leaf-node sourcing of that same setting. */
function throughputRows(r: SettingResult): Row[] {
  return r.cases.map((c) => ({
    name: c.name,
    [SYNC_COLUMN]: r.natsSync,
    "facts/s (median)": Math.round(rateOf(r, c.key)),
    rounds: r.samples.get(c.key)!.map((s) => Math.round(s.rate).toLocaleString("en-US")).join(" / "),
    "× raw publish": rateOf(r, c.key) / rateOf(r, "raw-publish"),
    "× leaf sourcing": rateOf(r, c.key) / rateOf(r, "leaf-sourcing"),
    ...cpuColumns(r.samples.get(c.key)!, c.key.endsWith("-child")),
  }));
}

function latencyRows(r: SettingResult): Row[] {
  return Object.entries(r.latency).map(([variant, l]) => ({
    name: `AppendFact in PlantA → appended in Enterprise, sync ${variant}`,
    [SYNC_COLUMN]: r.natsSync,
    "facts/s": Math.round(l.achievedRate),
    facts: l.facts,
    "p50 ms": l.crossing.p50,
    "p99 ms": l.crossing.p99,
    "max ms": l.crossing.max,
    "append ack p50 ms": l.append.p50,
    "append ack p99 ms": l.append.p99,
    ...cpuColumns([l], variant === "child"),
  }));
}

/** CPU ms per 1,000 facts, everything counted (services, sync worker, nats-servers). */
const totalCpu = (use: CpuUse[]) => median(use.map((u) => u.cpu.self + u.cpu.sync + u.cpu.nats));

/** The relay's targets (issue "relay as log shipping"), per setting, each against the raw figures of that same setting. */
function printTargets(r: SettingResult): void {
  const verdict = (measured: number, target: number, atLeast: boolean) => ((atLeast ? measured >= target : measured <= target) ? "met" : `MISSED by ${(atLeast ? target / measured : measured / target).toFixed(2)}×`);
  if (parts.has("throughput")) {
    for (const variant of variants) {
      const lines: [string, number, number, boolean][] = [
        ["direct × raw publish", rateOf(r, `bsfg-direct-${variant}`) / rateOf(r, "raw-publish"), 0.5, true],
        ["direct × leaf-node sourcing", rateOf(r, `bsfg-direct-${variant}`) / rateOf(r, "leaf-sourcing"), 0.3, true],
        ["via IDMZ × raw publish", rateOf(r, `bsfg-idmz-${variant}`) / rateOf(r, "raw-publish"), 0.35, true],
        ["CPU per 1k relayed facts (direct) × native sourcing", totalCpu(r.samples.get(`bsfg-direct-${variant}`)!) / totalCpu(r.samples.get("leaf-sourcing")!), 3, false],
      ];
      for (const [what, measured, target, atLeast] of lines) {
        console.log(`nats sync ${r.natsSync}, sync ${variant}: ${what} = ${measured.toFixed(3)} (target ${atLeast ? "≥" : "≤"} ${target}): ${verdict(measured, target, atLeast)}`);
      }
    }
  }
  for (const [variant, l] of Object.entries(r.latency)) {
    console.log(`nats sync ${r.natsSync}, sync ${variant}: crossing latency p99 = ${l.crossing.p99.toFixed(1)} ms (target ≤ 10 ms): ${verdict(l.crossing.p99, 10, false)}`);
  }
}

/** The JSON of one setting: every case, ratio and latency figure carries the setting it ran under. */
function settingJson(r: SettingResult) {
  return {
    natsSync: r.natsSync,
    syncInterval: syncIntervalFor(r.natsSync),
    natsServer: r.natsServer,
    pageLimit: r.pageLimit,
    prefetch: r.prefetch,
    cases: parts.has("throughput")
      ? Object.fromEntries(r.cases.map((c) => {
        const samples = r.samples.get(c.key)!;
        return [c.key, { name: c.name, natsSync: r.natsSync, factsPerSecond: samples.map((s) => s.rate), seconds: samples.map((s) => s.seconds), cpuMsPer1kFacts: samples.map((s) => s.cpu), otherCores: samples.map((s) => s.otherCores) }];
      }))
      : undefined,
    ratios: parts.has("throughput") ? Object.fromEntries(r.cases.map((c) => [c.key, { natsSync: r.natsSync, vsRawPublish: rateOf(r, c.key) / rateOf(r, "raw-publish"), vsLeafSourcing: rateOf(r, c.key) / rateOf(r, "leaf-sourcing") }])) : undefined,
    latency: parts.has("latency") ? { natsSync: r.natsSync, rate, seconds: latencySeconds, batch: latencyBatch(), warmMs: LATENCY_WARM_MS, byVariant: r.latency } : undefined,
  };
}

const started = performance.now();
const results: SettingResult[] = await eachSetting(settings, runSetting);
if (parts.has("throughput")) {
  printTable(
    `Replication of ${facts.toLocaleString("en-US")} facts of ${FACT_BYTES} bytes, PlantA → Enterprise, nats-server ${results[0]?.natsServer}, ${rounds} round(s) (median), ${cpus().length} cores.\n` +
      `BSFG: facts appended in PlantA first; timed from the first fetch to the last confirm; sync.pageLimit ${results[0]?.pageLimit}, sync.prefetch ${results[0]?.prefetch}. ` +
      `"in-process": the sync worker in this process, which also runs every zone's services; "child": apps/sync in its own process.\n` +
      `${syncNote} Ratios against the raw rows of the same nats sync.\n` +
      `${cpuNote} Targets: direct ≥ 0.5 × raw publish and ≥ 0.3 × leaf sourcing; via IDMZ ≥ 0.35 × raw publish; CPU ≤ 3 × native sourcing.`,
    results.flatMap(throughputRows),
  );
}
if (parts.has("latency")) {
  printTable(
    `Crossing latency, direct link: ${rate.toLocaleString("en-US")} facts/s for ${latencySeconds} s (batches of ${latencyBatch()} every ${latencyIntervalMs().toFixed(0)} ms, the first ${LATENCY_WARM_MS / 1000} s left out), ` +
      `from the AppendFact acknowledgement in PlantA to the fact in Enterprise's stream (an ordered consumer)${reverse ? "; PlantA outbound-only (--reverse): Enterprise pulls over the connection PlantA dialed" : ""}.\n${syncNote}\n${cpuNote} Target: p99 ≤ 10 ms.`,
    results.flatMap(latencyRows),
  );
}
for (const r of results) printTargets(r);
const file = writeResults(reverse ? "sync-reverse" : "sync", {
  reverse,
  facts, factBytes: FACT_BYTES, rounds, warmFacts, variants, rawInFlight, parts: [...parts],
  natsSync: settings, syncIntervals,
  runs: results.map(settingJson),
  targets: { directVsRawPublish: 0.5, directVsLeafSourcing: 0.3, idmzVsRawPublish: 0.35, cpuVsNativeSourcing: 3, crossingP99Ms: 10 },
  elapsedSeconds: (performance.now() - started) / 1000,
});
console.log(`\nresults: ${file}`);

/** Generous: a stalled case fails instead of hanging the run. */
function caseTimeoutMs(count: number): number {
  return Math.max(60_000, count * 2);
}

/** Appends `count` facts in PlantA through its zone store (batches of 1,000, 4 in flight). */
async function prefill(store: ZoneStore, run: string, count: number): Promise<void> {
  const batches = Math.ceil(count / PREFILL_BATCH);
  await pipelined(batches, 4, async (b) => {
    const size = Math.min(PREFILL_BATCH, count - b * PREFILL_BATCH);
    checkAppended(await store.append(Array.from({ length: size }, (_, i) => sizedFact(run, b * PREFILL_BATCH + i, FACT_BYTES))), size);
  });
}

function checkAppended(results: readonly AppendResult[], expected: number): void {
  if (results.length !== expected || results.some((r) => r.status !== AppendStatus.APPENDED)) {
    throw new Error(`append answered ${results.length} results, statuses ${[...new Set(results.map((r) => AppendStatus[r.status]))].join(", ")}`);
  }
}

/**
 * Starts a sync worker in `zone` and returns when its link from `peer` is
 * active, with the epoch ms it became so: it takes the link's lease and fetches
 * at once, so that is when its first fetch went out.
 */
async function startWorker(estate: TestEstate, zone: string, peer: string, variant: Variant): Promise<{ replica: SyncReplica; activeAt: number }> {
  if (reverse && peer === "plant-a") {
    // Outbound-only PlantA dials the worker's reverse listener (after its own backoff): the clock starts when the link has that connection.
    const replica = await estate.startSync(zone, variant === "child" ? { child: { syncBin } } : {});
    await pollUntil(async () => {
      const link = (await replica.status()).find((l) => l.peer === peer);
      return link?.state === "active" && link.connection.connectedAt !== undefined;
    }, { timeoutMs: 30_000, intervalMs: 2, what: `PlantA dialed the ${zone} worker's reverse listener` });
    return { replica, activeAt: Date.now() };
  }
  if (variant === "in-process") {
    // The links start as startSync resolves, with no I/O in between.
    const replica = await estate.startSync(zone);
    return { replica, activeAt: Date.now() };
  }
  // A child is ready after its probe answers, by when it may have pulled for a while: its log says since when.
  const replica = await estate.startSync(zone, { child: { syncBin } });
  const line = await pollUntil(() => replica.logLines.find((l) => l.event === "link_state" && l.to === "active" && l.peer === peer),
    { timeoutMs: 30_000, intervalMs: 2, what: `the ${zone} sync child's link from ${peer} active` });
  return { replica, activeAt: Number(line.time) };
}

interface Percentiles { readonly p50: number; readonly p99: number; readonly max: number; readonly mean: number }
interface LatencyResult extends CpuUse {
  readonly facts: number;
  readonly achievedRate: number;
  /** Append acknowledged in PlantA → appended in Enterprise, ms. */
  readonly crossing: Percentiles;
  /** The AppendFact call itself (sent → acknowledged), ms. */
  readonly append: Percentiles;
}

function latencyBatch(): number {
  return Math.max(1, Math.round(rate / 100));
}
function latencyIntervalMs(): number {
  return (latencyBatch() * 1000) / rate;
}

function percentiles(xs: number[]): Percentiles {
  const sorted = [...xs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN, mean: sorted.reduce((s, x) => s + x, 0) / sorted.length };
}

/**
 * A steady load through AppendFact in PlantA with Enterprise's worker running:
 * batches on a fixed schedule (not waiting for the previous one, as independent
 * producers would), each fact's acknowledgement time kept by message_id, and
 * its arrival seen by an ordered consumer on Enterprise's stream.
 */
async function crossingLatency(estate: TestEstate, variant: Variant): Promise<LatencyResult> {
  const { replica } = await startWorker(estate, "enterprise", "plant-a", variant);
  const nc = await connect({ servers: estate.zones.enterprise!.nats.url });
  try {
    const js = jetstream(nc, { domain: "enterprise" });
    const jsm: JetStreamManager = await jetstreamManager(nc, { domain: "enterprise" });
    const stream = `facts-${STREAM}`;
    const from = (await jsm.streams.info(stream)).state.last_seq + 1;
    const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
    const arrivals = new Map<string, number>();
    const messages = await consumer.consume();
    const watching = (async () => {
      for await (const m of messages) {
        if (isLinkMarker(m.subject)) continue;
        arrivals.set(fromBinary(FactMessageSchema, m.data).envelope!.messageId, performance.now());
      }
    })();

    const producer = estate.client("plant-a", "mes-producer");
    const run = `latency-${variant}`;
    const batch = latencyBatch();
    const interval = latencyIntervalMs();
    const sent = new Map<string, number>();
    const acked = new Map<string, number>();
    const inFlight: Array<Promise<void>> = [];
    const cpu = cpuWindow();
    const start = performance.now();
    const end = start + latencySeconds * 1000;
    let n = 0;
    for (let k = 0; ; k++) {
      const due = start + k * interval;
      if (due >= end) break;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const appended = Array.from({ length: batch }, () => sizedFact(run, n++, FACT_BYTES));
      const sentAt = performance.now();
      for (const m of appended) sent.set(m.envelope!.messageId, sentAt);
      inFlight.push(producer.appendFacts(appended).then((results) => {
        const at = performance.now();
        checkAppended(results, appended.length);
        for (const m of appended) acked.set(m.envelope!.messageId, at);
      }));
    }
    const seconds = (performance.now() - start) / 1000;
    await Promise.all(inFlight);
    await pollUntil(() => arrivals.size >= n, { timeoutMs: 60_000, intervalMs: 20, what: `${n} facts in Enterprise` });
    const used = cpu(n);
    messages.stop();
    await watching;

    // Facts sent during the warm-up second are left out.
    const counted = [...sent].filter(([, at]) => at - start >= LATENCY_WARM_MS).map(([id]) => id);
    return {
      facts: counted.length,
      achievedRate: n / seconds,
      crossing: percentiles(counted.map((id) => arrivals.get(id)! - acked.get(id)!)),
      append: percentiles(counted.map((id) => acked.get(id)! - sent.get(id)!)),
      ...used,
    };
  } finally {
    await replica.stop();
    await nc.close();
  }
}
