import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import {
  bitFlipped, confirmAbuse, controlCharacters, corruptFraming, deepNesting, deniedVerbs, everyMethodEverywhere, hugeIdentifiers, impostor, invalidUtf8, loneSurrogates,
  malformedJson, numericEdges, oversizeBodies, oversizeFacts, randomBodies, truncatedBodies, unknownConsumers, type Group,
} from "./hostile-groups.js";
import { KNOWN_OBJECT_KEY, type IdSource } from "./hostile-inputs.js";
import { connectionLoad, measureAppends } from "./hostile-load.js";
import type { GroupContext, HostileGroupResult } from "./hostile-tally.js";
import { LogExpectations, silentChanges } from "./hostile-verify.js";
import { WirePool } from "./hostile-wire.js";
import { BUCKET, CONSUMER, ROLES, startHostileZone, type HostileZone } from "./hostile-zone.js";
import { seededRandom } from "./random.js";

/*
 * The hostile-input campaign: malformed, oversized, deeply nested, mis-encoded and
 * unauthorized calls at every method of every deployable of one zone, over Connect
 * (binary and JSON), gRPC and gRPC-Web, plus certificates that must be refused, idle
 * connections and a slowloris. Every answer must be a proper protocol error (or a
 * transport-level refusal), no process may exit, nothing refused may reach the log and
 * nothing acknowledged may be changed in it, and an honest producer keeps its latency.
 */

export type { HostileGroupResult } from "./hostile-tally.js";

export interface HostileResult {
  readonly groups: HostileGroupResult[];
  readonly inputs: number;
  /** Deployable child processes that exited during the campaign: must be 0. */
  readonly processCrashes: number;
  /** Sum over the groups: must be 0. */
  readonly internalErrors: number;
  /** Log facts refused, altered, unaccounted for or lost, plus cursors moved back: must be 0. */
  readonly silentDataChanges: number;
  /** Per deployable (ingest, egress, ledger), from /proc/<pid>/status. */
  readonly rss: Record<string, { beforeBytes: number; afterBytes: number }>;
  readonly legitimateAppendUnderLoad: { p50Ms: number; p99Ms: number; baselineP50Ms: number; baselineP99Ms: number; calls?: number; failures?: number };
}

export interface HostileOptions {
  readonly seed: number;
  readonly quick: boolean;
  readonly log: (line: string) => void;
}

/** The groups in the order they run: fuzzing first, then sizes, encodings, identities. */
function groupsInOrder(highWater: () => Promise<bigint>): Group[] {
  return [
    everyMethodEverywhere,
    randomBodies,
    truncatedBodies,
    bitFlipped("connect-proto", 1_000, 80),
    bitFlipped("grpc", 600, 50),
    bitFlipped("grpc-web", 600, 50),
    malformedJson,
    corruptFraming,
    oversizeFacts,
    oversizeBodies,
    deepNesting,
    invalidUtf8,
    loneSurrogates,
    numericEdges,
    hugeIdentifiers,
    controlCharacters,
    unknownConsumers,
    impostor("foreign", "foreign certificate"),
    impostor("expired", "expired certificate"),
    impostor("none", "missing certificate"),
    deniedVerbs,
    confirmAbuse(highWater),
  ];
}

const summary = (r: HostileGroupResult) =>
  `${r.inputs} inputs → ${Object.entries(r.responses).sort((a, b) => b[1] - a[1]).map(([code, n]) => `${code} ${n}`).join(", ")} (internal errors ${r.internalErrors})`;

async function rssOf(zone: HostileZone): Promise<Record<string, number>> {
  return Object.fromEntries(await Promise.all(ROLES.map(async (role) => [role, await zone.services[role].rssBytes()] as const)));
}

/** "ingest 130 MB, egress …", for the log: which group a deployable's memory grew in. */
const rssLine = (rss: Record<string, number>) => Object.entries(rss).map(([role, bytes]) => `${role} ${Math.round(bytes / 2 ** 20)} MB`).join(", ");

function typedClient(zone: HostileZone, role: "ingest" | "egress" | "ledger", who: "producer" | "reader"): BsfgClient {
  const { ca, cert, key } = zone.credentials(who);
  return createBsfgClient({ url: zone.urls[role], tls: { ca, cert: cert!, key: key! }, retry: { attempts: 1 }, timeoutMs: 10_000 });
}

/** The end of the log CONSUMER reads, as the zone says it now. */
async function highWaterOf(zone: HostileZone): Promise<bigint> {
  const egress = typedClient(zone, "egress", "reader");
  try {
    return (await egress.fetchFacts(CONSUMER, { limit: 1 })).highWater;
  } finally {
    egress.close();
  }
}

/** The zone's first state: the object FetchObject/StatObject find, and CONSUMER's cursor half-way through the baseline's facts. */
async function prepare(zone: HostileZone): Promise<bigint> {
  const producer = typedClient(zone, "ingest", "producer");
  const ledger = typedClient(zone, "ledger", "reader");
  try {
    await producer.putObject({ bucket: BUCKET, key: KNOWN_OBJECT_KEY, mediaType: "application/octet-stream" }, Buffer.from("the object hostile reads find"));
    return await ledger.confirmReceipt(CONSUMER, (await highWaterOf(zone)) / 2n);
  } finally {
    producer.close();
    ledger.close();
  }
}

export async function runHostileCampaign(options: HostileOptions): Promise<HostileResult> {
  const { seed, quick, log } = options;
  const started = Date.now();
  const rng = seededRandom(seed);
  let counter = 0;
  const ids: IdSource = { rng, nextId: () => `hostile-${seed}-${++counter}` };
  const expectations = new LogExpectations();
  const zone = await startHostileZone(log);
  const wire = new WirePool(20_000);
  let clean = false;
  try {
    const rssBefore = await rssOf(zone);
    const legitimateCalls = 200;
    const baseline = await measureAppends(zone, expectations, ids, legitimateCalls, log, 20);
    log(`hostile: baseline AppendFact p50 ${baseline.p50Ms} ms, p99 ${baseline.p99Ms} ms (${baseline.calls} calls, ${baseline.failures} failed)`);
    const cursor = await prepare(zone);
    const ctx: GroupContext = { rng, quick, zone, wire, expectations, ids, log, concurrency: 16, cursorRegressions: 0, highestCursor: cursor };

    const groups: HostileGroupResult[] = [];
    for (const group of groupsInOrder(() => highWaterOf(zone))) {
      // Fresh connections per group: a connection the server stopped serving (HTTP/2 refuses
      // new streams on a session whose memory budget oversized bodies used up) stays the
      // group's finding instead of turning every later group's answers into resets.
      wire.close();
      const result = await group(ctx);
      groups.push(result);
      log(`hostile: ${result.group}: ${summary(result)}; RSS ${rssLine(await rssOf(zone))}`);
    }

    const load = await connectionLoad(ctx, () => measureAppends(zone, expectations, ids, legitimateCalls, log, 20));
    for (const result of load.groups) {
      groups.push(result);
      log(`hostile: ${result.group}: ${summary(result)}`);
    }
    wire.close();
    log(`hostile: AppendFact under load p50 ${load.underLoad.p50Ms} ms, p99 ${load.underLoad.p99Ms} ms (${load.underLoad.failures} failed); baseline p50 ${baseline.p50Ms} ms, p99 ${baseline.p99Ms} ms`);
    const rssAfter = await rssOf(zone);
    log(`hostile: RSS before ${rssLine(rssBefore)}; after ${rssLine(rssAfter)}`);

    const store = await zone.openStore();
    const verdict = await expectations.verify(store, ["operational", "audit", "documents"]);
    for (const example of verdict.examples) log(`hostile: log check: ${example}`);
    const silentDataChanges = silentChanges(verdict) + ctx.cursorRegressions;
    log(`hostile: log check: ${verdict.factsInLog} facts in the log, ${expectations.acknowledgedCount} acknowledged; altered ${verdict.altered}, refused but stored ${verdict.refusedButStored}, unexpected ${verdict.unexpected}, lost ${verdict.lost}, ill-formed text acknowledged ${verdict.illFormedAcknowledged}; cursor regressions ${ctx.cursorRegressions}`);

    const processCrashes = zone.unexpectedExits();
    const internalErrors = groups.reduce((n, g) => n + g.internalErrors, 0);
    const result: HostileResult = {
      groups,
      inputs: groups.reduce((n, g) => n + g.inputs, 0),
      processCrashes,
      internalErrors,
      silentDataChanges,
      rss: Object.fromEntries(ROLES.map((role) => [role, { beforeBytes: rssBefore[role] ?? 0, afterBytes: rssAfter[role] ?? 0 }])),
      legitimateAppendUnderLoad: {
        p50Ms: load.underLoad.p50Ms,
        p99Ms: load.underLoad.p99Ms,
        baselineP50Ms: baseline.p50Ms,
        baselineP99Ms: baseline.p99Ms,
        calls: load.underLoad.calls,
        failures: load.underLoad.failures,
      },
    };
    log(`hostile: ${result.inputs} inputs in ${Math.round((Date.now() - started) / 1000)} s; internal errors ${internalErrors}, process crashes ${processCrashes}, silent data changes ${silentDataChanges}, load connections left open ${load.leftOpen}`);
    clean = internalErrors === 0 && processCrashes === 0 && silentDataChanges === 0;
    return result;
  } finally {
    wire.close();
    // The deployables' logs stay for a run that found something.
    if (!clean) log(`hostile: deployable logs kept in ${zone.dir}`);
    await zone.dispose(!clean);
  }
}
