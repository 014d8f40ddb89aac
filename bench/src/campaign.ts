/**
 * The fault and hostile-input campaign the project runs on itself (docs/reliability.md).
 *
 * Faults: a real estate (PlantA — IDMZ — Enterprise, every deployable a child
 * process, two sync replicas per zone, links through TCP proxies) moves facts
 * and artifacts both ways while a seeded schedule kills lease holders mid-
 * transfer, services and nats-servers (SIGKILL, restarted on their stores),
 * cuts, resets and slows links, and fills a store. Then everything acknowledged
 * must be in every zone on its path once, byte for byte, in order per subject.
 *
 * Hostile inputs: malformed, oversized and unauthorized calls at every method
 * of every deployable (campaign/hostile.ts).
 *
 * One table, printed and written to bench/results/campaign.json; exits 1 when a
 * "must be 0" cell is not 0 or a count was not reached.
 *
 *   pnpm campaign [-- --seed N --quick --only faults,hostile --ha-zone enterprise|none]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runHostileCampaign, type HostileResult } from "./campaign/hostile.js";
import { startCampaignEstate, type CampaignEstate } from "./campaign/estate.js";
import { faults, type FaultKind } from "./campaign/faults.js";
import { producer, type Producer } from "./campaign/load.js";
import { progressWatch, type StallEpisode } from "./campaign/progress.js";
import { seededRandom } from "./campaign/random.js";
import { checkCrossing, factsOf, type Crossing } from "./campaign/verify.js";
import { benchArgs, printTable, writeResults } from "./report.js";

const { values } = parseArgs({ args: benchArgs(), options: {
  seed: { type: "string" },
  quick: { type: "boolean", default: false },
  only: { type: "string", default: "faults,hostile" },
  "keep-dir": { type: "boolean", default: false },
  /** The zone run on a three-node JetStream cluster, whose node kills hit the fact log's leader. */
  "ha-zone": { type: "string", default: "enterprise" },
} });
const quick = values.quick;
const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));
const parts = new Set(values.only.split(","));
const haZone = values["ha-zone"] === "none" ? undefined : values["ha-zone"];

/** What the run must reach; the full run's are the issue's. */
const targets = quick
  ? { facts: 5_000, factsPerSecond: 100, landedSyncKills: 4, natsKillsPerZone: 1, partitions: 4, serviceKills: 3, slowLinks: 1 }
  : { facts: 100_000, factsPerSecond: 150, landedSyncKills: 50, natsKillsPerZone: 10, partitions: 50, serviceKills: 15, slowLinks: 10 };

const log = (line: string) => console.log(line);

interface FaultsResult {
  readonly facts: number;
  readonly artifacts: number;
  readonly faults: Record<FaultKind, number>;
  readonly landedSyncKills: number;
  readonly natsKillsByZone: Record<string, number>;
  readonly haZone: string | undefined;
  /** Node kills in the three-node zone that hit the fact log's leader. */
  readonly leaderKills: number;
  readonly crossings: Record<string, Crossing>;
  readonly longestStallMs: number;
  readonly longestStallLink: string;
  readonly stalls: ReadonlyArray<StallEpisode>;
  readonly storeFullRefusals: number;
  readonly unexpectedExits: number;
  readonly seconds: number;
}

async function runFaults(dir: string): Promise<FaultsResult> {
  const random = seededRandom(seed);
  const started = performance.now();
  log(`estate: starting in ${dir}`);
  const estate: CampaignEstate = await startCampaignEstate({ dir, operationalBytes: "2GiB", syncReplicas: 2, haZone });
  const stop = new AbortController();
  try {
    log(`estate: up in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const injector = faults(estate, random, log);
    const watch = progressWatch(estate, injector.records, injector.underWay, 3_000);
    const count = (kind: FaultKind, landed?: boolean) => injector.records.filter((r) => r.kind === kind && (landed === undefined || r.landed === landed)).length;
    const natsKillsOf = (zone: string) => injector.records.filter((r) => r.kind === "nats_kill" && r.target.startsWith(`${zone} `)).length;
    const reached = () =>
      count("sync_kill", true) >= targets.landedSyncKills &&
      Object.keys(estate.zones).every((z) => natsKillsOf(z) >= targets.natsKillsPerZone) &&
      count("partition") + count("connection_reset") >= targets.partitions &&
      count("service_kill") >= targets.serviceKills &&
      count("slow_link") >= targets.slowLinks &&
      count("disk_full") >= 1;
    let faultsDone = false;
    const producers: Producer[] = [
      producer({ client: estate.client("plant-a", "mes-producer"), from: "plant-a", to: "enterprise", prefix: `pa-${seed}`, facts: targets.facts / 2, keepGoing: () => !faultsDone, factsPerSecond: targets.factsPerSecond, batch: 50, subjects: 20, artifactEvery: 40, random: seededRandom(seed + 1), signal: stop.signal }),
      producer({ client: estate.client("enterprise", "erp-producer"), from: "enterprise", to: "plant-a", prefix: `en-${seed}`, facts: targets.facts / 2, keepGoing: () => !faultsDone, factsPerSecond: targets.factsPerSecond, batch: 50, subjects: 20, artifactEvery: 40, random: seededRandom(seed + 2), signal: stop.signal }),
    ];
    const producing = Promise.all(producers.map((p) => p.run()));
    producing.catch(() => undefined);

    // The schedule: a fault at a time, chosen by weight; nats-server kills go round the zones
    // until each has its share; the store fills up once, halfway, with nothing else going on.
    const zoneNames = Object.keys(estate.zones);
    let diskFullDone = false;
    let storeFullRefusals = 0;
    const faultStarted = performance.now();
    while (!reached()) {
      const acknowledged = producers.reduce((n, p) => n + p.acknowledged.length, 0);
      if (!diskFullDone && acknowledged >= targets.facts / 4) {
        const before = producers[0]!.refusals.get(`8/store_full`) ?? 0;
        await injector.diskFull(estate.zones["plant-a"]!, { minMs: 3_000, maxMs: 30_000, until: () => (producers[0]!.refusals.get(`8/store_full`) ?? 0) > before });
        storeFullRefusals = (producers[0]!.refusals.get(`8/store_full`) ?? 0) - before;
        diskFullDone = true;
        continue;
      }
      const behind = zoneNames.find((z) => natsKillsOf(z) < targets.natsKillsPerZone && natsKillsOf(z) <= Math.min(...zoneNames.map(natsKillsOf)));
      // Drawn by weight among the kinds still short of their count, so that no kind is starved.
      const unmet: Array<[Exclude<FaultKind, "disk_full">, number]> = ([
        ["sync_kill", 0.45, count("sync_kill", true) < targets.landedSyncKills],
        ["partition", 0.15, count("partition") + count("connection_reset") < targets.partitions],
        ["connection_reset", 0.12, count("partition") + count("connection_reset") < targets.partitions],
        ["service_kill", 0.1, count("service_kill") < targets.serviceKills],
        ["nats_kill", 0.1, behind !== undefined],
        ["slow_link", 0.08, count("slow_link") < targets.slowLinks],
      ] as const).filter(([, , short]) => short).map(([kind, weight]) => [kind, weight]);
      if (unmet.length === 0) continue;
      let roll = random.next() * unmet.reduce((sum, [, weight]) => sum + weight, 0);
      const fault = unmet.find(([, weight]) => (roll -= weight) < 0)?.[0] ?? unmet.at(-1)![0];
      if (fault === "sync_kill") await injector.syncKill();
      else if (fault === "partition") await injector.partition();
      else if (fault === "connection_reset") await injector.connectionReset();
      else if (fault === "service_kill") await injector.serviceKill();
      else if (fault === "nats_kill") await injector.natsKill(behind ? estate.zones[behind] : undefined);
      else await injector.slowLink();
      await new Promise((resolve) => setTimeout(resolve, random.int(100, 1_200)));
      if (performance.now() - faultStarted > (quick ? 150_000 : 25 * 60_000)) {
        log("schedule: out of time before every count was reached");
        break;
      }
    }
    faultsDone = true;
    await producing;
    log(`faults: done; ${producers.map((p) => `${p.from} → ${p.to}: ${p.acknowledged.length} acknowledged`).join(", ")}`);

    // Converge: everything acknowledged reaches its destination (every fault is over).
    const stores = Object.fromEntries(await Promise.all(zoneNames.map(async (z) => [z, await estate.zones[z]!.store()] as const)));
    const converged = performance.now();
    const deadline = converged + (quick ? 120_000 : 300_000);
    for (const p of producers) {
      const prefix = p === producers[0] ? `pa-${seed}` : `en-${seed}`;
      while ((await factsOf(stores[p.to]!, prefix)).length < p.acknowledged.length && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    log(`converged in ${((performance.now() - converged) / 1000).toFixed(1)} s`);
    watch.stop();
    // The longest stalls with the faults around them: what an explanation starts from.
    for (const stall of watch.stalls.slice(0, 5)) {
      const around = injector.records.filter((r) => r.atMs >= stall.fromMs - 5_000 && r.atMs - r.durationMs <= stall.toMs);
      log(`stall ${(stall.ms / 1000).toFixed(1)} s on ${stall.link} from ${new Date(stall.fromMs).toISOString()}: ${stall.holders}; faults around it: ${around.map((r) => `${new Date(r.atMs - r.durationMs).toISOString().slice(11, 23)} ${r.kind} ${r.target} ${Math.round(r.durationMs)} ms`).join(" | ") || "none"}`);
    }

    const crossings: Record<string, Crossing> = {};
    for (const [i, p] of producers.entries()) {
      const prefix = i === 0 ? `pa-${seed}` : `en-${seed}`;
      crossings[`${p.from} → ${p.to}`] = await checkCrossing(p.acknowledged, prefix, stores[p.from]!, [stores.idmz!, stores[p.to]!], stores[p.to]!);
    }
    const faultCounts = {} as Record<FaultKind, number>;
    for (const kind of ["sync_kill", "service_kill", "nats_kill", "partition", "connection_reset", "slow_link", "disk_full"] as const) faultCounts[kind] = count(kind);
    return {
      facts: producers.reduce((n, p) => n + p.acknowledged.length, 0),
      artifacts: producers.reduce((n, p) => n + p.artifacts, 0),
      faults: faultCounts,
      landedSyncKills: count("sync_kill", true),
      natsKillsByZone: Object.fromEntries(zoneNames.map((z) => [z, natsKillsOf(z)])),
      haZone,
      leaderKills: injector.records.filter((r) => r.kind === "nats_kill" && r.landed).length,
      crossings,
      longestStallMs: watch.longestStallMs,
      longestStallLink: watch.longestStallLink,
      stalls: watch.stalls.slice(0, 10),
      storeFullRefusals,
      unexpectedExits: estate.unexpectedExits(),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    stop.abort();
    await estate.dispose();
  }
}

const dir = mkdtempSync(join(tmpdir(), "bsfg-campaign-"));
log(`campaign: seed ${seed} (replay with --seed ${seed})${quick ? ", quick" : ""}`);
let faultsResult: FaultsResult | undefined;
let hostile: HostileResult | undefined;
try {
  if (parts.has("faults")) faultsResult = await runFaults(dir);
  if (parts.has("hostile")) hostile = await runHostileCampaign({ seed, quick, log });
} finally {
  if (!values["keep-dir"]) rmSync(dir, { recursive: true, force: true });
}

const failures: string[] = [];
const mustBeZero = (name: string, value: number) => {
  if (value !== 0) failures.push(`${name} = ${value} (must be 0)`);
};
const atLeast = (name: string, value: number, target: number) => {
  if (value < target) failures.push(`${name} = ${value} (target ≥ ${target})`);
};

if (faultsResult) {
  const r = faultsResult;
  printTable("What crossed (each must be 0)", Object.entries(r.crossings).map(([direction, c]) => ({
    name: direction, lost: c.lost, duplicated: c.duplicated, altered: c.altered, "reordered per subject": c.reordered, "artifacts missing": c.artifactsMissing,
  })));
  printTable("Faults injected", [
    ...Object.entries(r.faults).map(([fault, count]) => ({ name: fault, count })),
    { name: "sync kills that landed on the active holder mid-transfer", count: r.landedSyncKills },
    ...Object.entries(r.natsKillsByZone).map(([zone, count]) => ({ name: `nats-server kills: ${zone}${zone === r.haZone ? " (a node of three)" : ""}`, count })),
    ...(r.haZone ? [{ name: `… of which hit the leader of ${r.haZone}'s fact log`, count: r.leaderKills }] : []),
    { name: "appends refused while the store was full (resource_exhausted)", count: r.storeFullRefusals },
  ]);
  log(`facts moved: ${r.facts.toLocaleString("en-US")} (${r.artifacts} with artifacts) in ${r.seconds.toFixed(0)} s; longest time a link made no progress while its peer was reachable: ${(r.longestStallMs / 1000).toFixed(1)} s (${r.longestStallLink || "none"}); unexpected process exits: ${r.unexpectedExits}`);
  for (const [direction, c] of Object.entries(r.crossings)) for (const [cell, value] of Object.entries(c)) mustBeZero(`${direction} ${cell}`, value);
  mustBeZero("unexpected process exits", r.unexpectedExits);
  atLeast("facts moved", r.facts, targets.facts);
  atLeast("landed sync kills", r.landedSyncKills, targets.landedSyncKills);
  for (const [zone, n] of Object.entries(r.natsKillsByZone)) atLeast(`nats-server kills in ${zone}`, n, targets.natsKillsPerZone);
  atLeast("partitions and connection resets", r.faults.partition + r.faults.connection_reset, targets.partitions);
  atLeast("service kills", r.faults.service_kill, targets.serviceKills);
  atLeast("slow links", r.faults.slow_link, targets.slowLinks);
  atLeast("appends refused while the store was full", r.storeFullRefusals, 1);
}
if (hostile) {
  printTable("Hostile inputs", hostile.groups.map((g) => ({
    name: g.group, inputs: g.inputs, "responses by code": Object.entries(g.responses).map(([code, n]) => `${code} ${n}`).join(", "), "internal errors": g.internalErrors,
  })));
  log(`hostile inputs: ${hostile.inputs.toLocaleString("en-US")}; process crashes ${hostile.processCrashes}; internal errors ${hostile.internalErrors}; silent data changes ${hostile.silentDataChanges}; legitimate append under load p50 ${hostile.legitimateAppendUnderLoad.p50Ms.toFixed(1)} ms, p99 ${hostile.legitimateAppendUnderLoad.p99Ms.toFixed(1)} ms (before: ${hostile.legitimateAppendUnderLoad.baselineP50Ms.toFixed(1)} / ${hostile.legitimateAppendUnderLoad.baselineP99Ms.toFixed(1)} ms)`);
  for (const [name, rss] of Object.entries(hostile.rss)) log(`rss ${name}: ${(rss.beforeBytes / 2 ** 20).toFixed(0)} MiB before, ${(rss.afterBytes / 2 ** 20).toFixed(0)} MiB after`);
  mustBeZero("process crashes", hostile.processCrashes);
  mustBeZero("internal errors", hostile.internalErrors);
  mustBeZero("silent data changes", hostile.silentDataChanges);
  atLeast("hostile inputs", hostile.inputs, quick ? 1_000 : 10_000);
}

writeResults("campaign", { seed, quick, at: new Date().toISOString(), targets, faults: faultsResult, hostile, failures });
if (failures.length > 0) {
  log(`campaign FAILED (seed ${seed}):\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
log(`campaign passed (seed ${seed})`);
process.exit(0);
