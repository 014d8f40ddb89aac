import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AppendStatus, Code, ConnectError, reasonOf, type StoredFact } from "@bsfg/proto";
import type { BsfgClient, BsfgClientOptions } from "@bsfg/client";
import { startTestEstate, type EstateTopology, type SyncReplica, type TestEstate } from "@bsfg/estate-kit";
import type { LinkStatus } from "@bsfg/replication";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, killIfWorking, logOf, numberedFact, syncBin, withPrefix } from "./estate-support.js";

/**
 * Enterprise runs highly available: a three-node JetStream cluster (streams and KV at
 * replicas 3), two in-process replicas of ingest, egress and ledger, two sync replicas as
 * child processes. PlantA is an ordinary zone; each pulls the other's operational facts,
 * so one link runs into the HA zone (Enterprise's sync replicas pulling from PlantA) and
 * one out of it (PlantA's worker pulling through Enterprise's egress and ledger replicas).
 */
const topology: EstateTopology = {
  zones: ["enterprise", "plant-a"],
  categories: ["operational"],
  producers: { enterprise: ["erp-producer"], "plant-a": ["mes-producer"] },
  buckets: ["batch-files"],
};
const INTO_HA = "plant-a/enterprise-from-plant-a-operational";
const OUT_OF_HA = "enterprise/plant-a-from-enterprise-operational";

/**
 * The producers' retry budget: 20 attempts, 100 ms doubling to 3 s with full jitter (≈ 22 s
 * of waiting on average, up to 45 s), each retry on the next ingest replica. It has to
 * outlast what the cluster takes to elect new leaders after losing a node (4–11 s measured
 * on 2.9.10), during which appends fail at once (503, no stream answered), plus the
 * storage's pending timeout for claims a cut-off append left behind (3 s here). With 12
 * attempts up to 2 s (≈ 7.5 s), 2 of 5 runs had a call fail after its retries.
 */
const PRODUCER_RETRY = { attempts: 20, initialDelayMs: 100, maxDelayMs: 3_000 };

const LEASE_TTL_MS = 2_000;

async function startHaEstate(dir: string): Promise<TestEstate> {
  const started = Date.now();
  const estate = await startTestEstate({
    dir,
    topology,
    ha: { zone: "enterprise", syncBin },
    storage: {
      leaseTtl: `${LEASE_TTL_MS}ms`,
      // A node killed mid-append leaves claims pending; they are recovered after this.
      dedupe: { pendingTimeout: "3s", inflightWindow: "10s" },
      streams: { operational: { maxBytes: "512MiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } },
    },
    extra: () => ({ sync: { backoff: { initial: "100ms", max: "1s" }, maxWait: "2s" } }),
  });
  console.info(`HA estate up in ${Date.now() - started} ms`);
  return estate;
}

/**
 * Counts the attempts that failed under the client's retries (by Connect code), whether the
 * call then succeeded on a retry or not: what the failover cost the producers.
 */
type Interceptor = NonNullable<BsfgClientOptions["interceptors"]>[number];

class AttemptLog {
  readonly failed = new Map<string, number>();
  readonly interceptor: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const code = Code[ConnectError.from(err).code];
      this.failed.set(code, (this.failed.get(code) ?? 0) + 1);
      throw err;
    }
  };

  toString(): string {
    return this.failed.size === 0 ? "none" : [...this.failed].map(([code, n]) => `${n} ${code}`).join(", ");
  }
}

/** Appends batches in a loop until stopped; records what was acknowledged and which calls failed after the client's retries. */
class Producer {
  readonly acked = new Map<string, bigint>();
  readonly failures: Array<{ code: string; reason: string | undefined; message: string }> = [];
  calls = 0;
  /** When the call now in flight started (for diagnosing a stalled producer). */
  private callStartedAt = 0;
  private n = 0;
  private stopped = false;
  private readonly running: Promise<void>;

  constructor(private readonly client: BsfgClient, private readonly zone: string, private readonly to: string, readonly prefix: string, private readonly batch = 50, private readonly pauseMs = 0) {
    this.running = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const messages = Array.from({ length: this.batch }, () => numberedFact(this.zone, this.to, this.n++, 10, this.prefix));
      this.calls++;
      this.callStartedAt = Date.now();
      try {
        const results = await this.client.appendFacts(messages);
        for (const r of results) {
          if (r.status === AppendStatus.CONFLICTING_DUPLICATE) this.failures.push({ code: "conflicting_duplicate", reason: undefined, message: r.messageId });
          else this.acked.set(r.messageId, r.offset);
        }
      } catch (err) {
        const error = ConnectError.from(err);
        this.failures.push({ code: Code[error.code], reason: reasonOf(error), message: error.rawMessage });
      }
      if (this.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, this.pauseMs)); // pacing, not synchronization
    }
  }

  /** Resolves once `count` more facts than now were acknowledged. */
  async progress(count: number, timeoutMs = 60_000): Promise<void> {
    const target = this.acked.size + count;
    await pollUntil(() => this.acked.size >= target, { timeoutMs, intervalMs: 20, what: `${this.prefix}: ${target} acknowledged facts` }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message} (${this.acked.size} now, ${this.failures.length} failed calls; the call in flight started ${Date.now() - this.callStartedAt} ms ago)`);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

const idOf = (f: StoredFact) => f.message!.envelope!.messageId;

/** Every acknowledged message_id of `producer` is in `zone`'s log exactly once (at the acknowledged offset, in the zone it was appended to). */
async function expectExactlyOnce(estate: TestEstate, zone: string, producer: Producer, opts: { atAckedOffsets?: boolean; timeoutMs?: number } = {}) {
  const log = await pollUntil(async () => {
    const facts = withPrefix(await logOf(estate, zone), producer.prefix);
    const ids = new Set(facts.map(idOf));
    return [...producer.acked.keys()].every((id) => ids.has(id)) ? facts : undefined;
  }, { timeoutMs: opts.timeoutMs ?? 90_000, intervalMs: 250, what: `${producer.acked.size} acknowledged ${producer.prefix} facts in ${zone}` });
  const count = new Map<string, number>();
  for (const f of log) count.set(idOf(f), (count.get(idOf(f)) ?? 0) + 1);
  const duplicated = [...count].filter(([, n]) => n > 1).map(([id]) => id);
  expect(duplicated, `${zone}: message ids stored more than once`).toEqual([]);
  if (opts.atAckedOffsets) {
    const moved = log.filter((f) => producer.acked.has(idOf(f)) && producer.acked.get(idOf(f)) !== f.offset).map(idOf);
    expect(moved, `${zone}: facts not at their acknowledged offset`).toEqual([]);
  }
  return log;
}

/** Two producers appending into the HA zone, one starting on each ingest replica (each fails over to the other). */
function producersInto(estate: TestEstate, attempts: AttemptLog): Producer[] {
  return [0, 1].map((replica) => new Producer(estate.client("enterprise", "erp-producer", { retry: PRODUCER_RETRY, replica, interceptors: [attempts.interceptor] }), "enterprise", "plant-a", `ent${replica + 1}`));
}

/**
 * A producer in PlantA whose facts Enterprise's sync replicas pull into the HA zone: paced
 * (≈ 400 facts/s at most), so that on a 2-core machine PlantA does not starve the cluster.
 */
function producerOutOf(estate: TestEstate, prefix: string): Producer {
  return new Producer(estate.client("plant-a", "mes-producer", { retry: PRODUCER_RETRY }), "plant-a", "enterprise", prefix, 20, 50);
}

/** Everything acknowledged is once in the zone it was appended to (at its offset) and once in the zone it was replicated to. */
async function expectAllExactlyOnce(estate: TestEstate, intos: Producer[], outOf: Producer) {
  for (const into of intos) {
    await expectExactlyOnce(estate, "enterprise", into, { atAckedOffsets: true });
    await expectExactlyOnce(estate, "plant-a", into);
  }
  await expectExactlyOnce(estate, "enterprise", outOf);
  await expectExactlyOnce(estate, "plant-a", outOf, { atAckedOffsets: true });
  // And nothing at all is stored twice in either log.
  for (const zone of ["enterprise", "plant-a"]) {
    const ids = (await logOf(estate, zone)).map(idOf);
    expect(ids.length - new Set(ids).size, `${zone}: duplicated message ids`).toBe(0);
  }
}

/** A stream's state as one node holds it (its monitoring port's /jsz). */
async function streamStateOn(monitorPort: number, stream: string): Promise<{ messages: number; last_seq: number } | undefined> {
  const jsz = (await (await fetch(`http://127.0.0.1:${monitorPort}/jsz?streams=true`)).json()) as { account_details?: Array<{ stream_detail?: Array<{ name: string; state: { messages: number; last_seq: number } }> }> };
  return jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === stream)?.state;
}

const link = (statuses: LinkStatus[], name: string) => statuses.find((s) => s.link === name);

/** Both links are pulling again: PlantA's out of the HA zone, and one of Enterprise's sync replicas into it. */
async function expectLinksActive(estate: TestEstate): Promise<void> {
  await pollUntil(async () => {
    const out = link(await estate.zones["plant-a"]!.syncs[0]!.status(), OUT_OF_HA);
    const into = (await Promise.all(estate.ha!.syncs.map(async (r) => link(await r.status(), INTO_HA)?.state))).filter((state) => state === "active");
    return out?.state === "active" && into.length === 1;
  }, { timeoutMs: 30_000, intervalMs: 100, what: "both links active (one replica on the link into Enterprise)" });
}

/** The replica that is active on `name`, and the others. */
async function activeReplica(replicas: SyncReplica[], name: string): Promise<{ active: SyncReplica; standby: SyncReplica[] }> {
  return pollUntil(async () => {
    const states = await Promise.all(replicas.map(async (r) => link(await r.status().catch(() => []), name)?.state));
    const active = states.filter((s) => s === "active").length === 1 ? replicas[states.indexOf("active")] : undefined;
    return active ? { active, standby: replicas.filter((r) => r !== active) } : undefined;
  }, { timeoutMs: 20_000, intervalMs: 50, what: `one active replica on ${name}` });
}

describe("a highly available zone: three JetStream voters, two replicas of every service", () => {
  let dir: string;
  let estate: TestEstate | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-ha-"));
  });
  afterEach(async () => {
    await estate?.dispose();
    estate = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it("loses no acknowledged fact when the stream leader's node is killed (SIGKILL) during appends and replication", async () => {
    estate = await startHaEstate(dir);
    const ha = estate.ha!;
    // The cluster is the zone's alone, as a single server is: every node asks clients for TLS and the zone's login.
    for (const node of ha.cluster.nodes) expect(await serverInfo(node.port), node.name).toMatchObject({ auth_required: true, tls_required: true });
    const attempts = new AttemptLog();
    const intos = producersInto(estate, attempts);
    const outOf = producerOutOf(estate, "plant");
    await Promise.all([...intos.map((p) => p.progress(500)), outOf.progress(500)]);
    // Both links are moving before the kill.
    await pollUntil(async () => (await logOf(estate!, "plant-a")).some((f) => idOf(f).startsWith("ent")) && withPrefix(await logOf(estate!, "enterprise"), "plant").length > 0, { timeoutMs: 30_000, what: "both links replicating" });

    const leaderName = await pollUntil(() => ha.cluster.streamLeader("facts-operational"), { what: "the fact stream's leader" });
    const leader = ha.cluster.node(leaderName);
    // What else the node leads: whatever it is, the kill takes it down with the fact stream.
    const others = ["bsfg-dedupe", "KV_bsfg-cursors", "KV_bsfg-leases", "KV_bsfg-consumers", "KV_bsfg-link-controls"];
    const alsoLed = (await Promise.all(others.map(async (stream) => ((await ha.cluster.streamLeader(stream)) === leaderName ? stream : undefined)))).filter(Boolean);
    const metaLeader = await ha.cluster.metaLeader();
    const ackedBefore = intos.reduce((sum, p) => sum + p.acked.size, 0);
    const killedAt = Date.now();
    await leader.kill();
    const newLeader = await pollUntil(async () => {
      const name = await ha.cluster.streamLeader("facts-operational").catch(() => undefined);
      return name !== undefined && name !== leaderName ? name : undefined;
    }, { timeoutMs: 30_000, intervalMs: 100, what: "a new leader of facts-operational" });
    const electedAfterMs = Date.now() - killedAt;
    // Appends and replication carry on with two of three nodes.
    await Promise.all([...intos.map((p) => p.progress(500)), outOf.progress(300)]);
    const resumedAfterMs = Date.now() - killedAt;
    await leader.restart();
    await Promise.all(intos.map((p) => p.progress(200)));
    await Promise.all([...intos.map((p) => p.stop()), outOf.stop()]);
    const failures = [...intos, outOf].flatMap((p) => p.failures);

    console.info(`killed ${leaderName} (leader of facts-operational${alsoLed.length ? `, ${alsoLed.join(", ")}` : ""}${metaLeader === leaderName ? ", the meta group" : ""}) after ${ackedBefore} acknowledged appends; new leader ${newLeader} after ${electedAfterMs} ms; `
      + `500 more through each ingest replica ${resumedAfterMs} ms after the kill; calls: ${intos.map((p) => p.calls).join(" + ")} into Enterprise, ${outOf.calls} into PlantA; attempts that failed and were retried: ${attempts}; calls failed after retries: ${JSON.stringify(failures)}`);
    expect(failures).toEqual([]);
    // Every acknowledged fact is stored once where it was appended, and once where it was replicated to.
    await expectAllExactlyOnce(estate, intos, outOf);
    await expectLinksActive(estate);
    // The restarted node caught up: all three nodes hold the same fact stream and dedupe index.
    await ha.cluster.waitUntilHealthy();
    for (const stream of ["facts-operational", "bsfg-dedupe"]) {
      const states = await pollUntil(async () => {
        const each = await Promise.all(ha.cluster.nodes.map((node) => streamStateOn(node.monitorPort, stream)));
        return each.every((s) => s !== undefined && s.messages === each[0]!.messages && s.last_seq === each[0]!.last_seq) ? each : undefined;
      }, { timeoutMs: 30_000, intervalMs: 200, what: `${stream} identical on the three nodes` });
      expect(states[0]!.messages).toBeGreaterThan(0);
    }
  }, 150_000);

  it("keeps producers and both links going through a rolling restart of every service replica, with no failed call", async () => {
    estate = await startHaEstate(dir);
    const ha = estate.ha!;
    const attempts = new AttemptLog();
    const intos = producersInto(estate, attempts);
    const outOf = producerOutOf(estate, "plant");
    const producers = [...intos, outOf];
    const progress = (count: number) => Promise.all(producers.map((p) => p.progress(count)));
    await progress(200);
    /**
     * Both links carry new facts: each receiving zone confirmed more of its peer's log than before
     * (a confirm follows the append; reading the cursors, not the whole logs, keeps the poll cheap).
     */
    const confirmed = () => Promise.all([estate!.store("plant-a").cursor("enterprise-from-plant-a-operational"), estate!.store("enterprise").cursor("plant-a-from-enterprise-operational")]);
    const linksMoving = async () => {
      const [fromPlant, fromEnterprise] = await confirmed();
      await pollUntil(async () => {
        const [plant, enterprise] = await confirmed();
        return plant > fromPlant && enterprise > fromEnterprise;
      }, { timeoutMs: 30_000, intervalMs: 100, what: "both links moving" });
    };

    const restarted: string[] = [];
    const started = Date.now();
    for (const replica of [...ha.services.ingest, ...ha.services.egress, ...ha.services.ledger]) {
      await replica.restart();
      restarted.push(replica.name);
      // The restarted replica serves again, and everything moves before the next one goes.
      expect((await fetch(`${replica.healthUrl}/readyz`)).status).toBe(200);
      await Promise.all([progress(100), linksMoving()]);
    }
    for (const sync of ha.syncs) {
      await sync.stop();
      await sync.restart();
      restarted.push(sync.holder);
      await Promise.all([progress(100), linksMoving()]);
    }
    const rolledInMs = Date.now() - started;
    await Promise.all(producers.map((p) => p.stop()));
    const failures = producers.flatMap((p) => p.failures);

    console.info(`rolling restart of ${restarted.join(", ")} in ${rolledInMs} ms; calls: ${intos.map((p) => p.calls).join(" + ")} into Enterprise, ${outOf.calls} into PlantA; `
      + `attempts into Enterprise that failed and were retried: ${attempts}; calls failed after retries: ${JSON.stringify(failures)}`);
    expect(failures).toEqual([]);
    await expectAllExactlyOnce(estate, intos, outOf);
    await expectLinksActive(estate);
  }, 150_000);

  it("fails the sync worker over within the lease time when the active replica is killed; the transfer completes exactly once, in order", async () => {
    estate = await startHaEstate(dir);
    const ha = estate.ha!;
    const { active, standby } = await activeReplica(ha.syncs, INTO_HA);
    expect(standby).toHaveLength(1);
    await pollUntil(async () => link(await standby[0]!.status(), INTO_HA)?.state === "standby", { timeoutMs: 10_000, intervalMs: 50, what: "the other replica standing by" });

    const outOf = producerOutOf(estate, "failover");
    await pollUntil(async () => withPrefix(await logOf(estate!, "enterprise"), "failover").length > 500, { timeoutMs: 60_000, intervalMs: 50, what: "the transfer into Enterprise under way" });
    // The kill lands on the lease holder while its link moves facts (the producer goes on until stopped: there is always work left).
    const before = link(await active.status(), INTO_HA)!;
    const shipping = await pollUntil(async () => {
      const now = link(await active.status(), INTO_HA);
      return now && now.appended > before.appended ? now : undefined;
    }, { timeoutMs: 15_000, intervalMs: 10, what: "the active replica shipping" });
    const killedAt = Date.now();
    const kill = await killIfWorking(active, ha.store.leases, INTO_HA, shipping, before.appended, async () => true);
    expect(kill, JSON.stringify(kill)).toMatchObject({ landed: true });
    await pollUntil(async () => link(await standby[0]!.status(), INTO_HA)?.state === "active", { timeoutMs: 20_000, intervalMs: 25, what: "the standby taking over" });
    const takeoverMs = Date.now() - killedAt;
    // The killed replica comes back as the standby.
    await active.restart();
    await pollUntil(async () => link(await active.status(), INTO_HA)?.state === "standby", { timeoutMs: 20_000, what: "the restarted replica standing by" });
    await outOf.progress(500);
    await outOf.stop();

    console.info(`sync failover: the standby was active ${takeoverMs} ms after the kill (leaseTtl ${LEASE_TTL_MS} ms); ${outOf.acked.size} facts, ${outOf.calls} calls, failed: ${JSON.stringify(outOf.failures)}`);
    // A standby tries every TTL/4 and the dead holder's lease ages out of the bucket TTL after its last renewal.
    expect(takeoverMs).toBeLessThan(LEASE_TTL_MS + LEASE_TTL_MS / 4 + 2_500);
    expect(outOf.failures).toEqual([]);
    const received = await expectExactlyOnce(estate, "enterprise", outOf);
    const origin = withPrefix(await logOf(estate, "plant-a"), "failover");
    const crossed = checkCrossed(origin, received);
    expect({ missing: crossed.missing.length, duplicated: crossed.duplicated.length, altered: crossed.altered.length, outOfOrder: crossed.outOfOrder.length }).toEqual({ missing: 0, duplicated: 0, altered: 0, outOfOrder: 0 });
    const totals = (await Promise.all(ha.syncs.map((r) => r.status()))).flat().filter((l) => l.link === INTO_HA);
    expect(totals.reduce((sum, l) => sum + l.conflicts, 0)).toBe(0);
  }, 150_000);
});

/** The INFO a nats-server greets a client with: what it demands before anything else. */
async function serverInfo(port: number): Promise<Record<string, unknown>> {
  const socket = createConnection({ host: "127.0.0.1", port });
  try {
    const [line] = (await once(socket, "data")) as [Buffer];
    // "INFO {…} \r\n"
    return JSON.parse(/^INFO (\{.*\})\s*$/.exec(line.toString("utf8"))![1]!) as Record<string, unknown>;
  } finally {
    socket.destroy();
  }
}
