import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTestEstate, type SyncReplica, type TestEstate } from "@bsfg/estate-kit";
import { parseZoneConfig } from "@bsfg/config";
import { startSyncDeployable, type LinkStatus } from "@bsfg/replication";
import { listQuarantine } from "@bsfg/storage";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, killIfWorking, logOf, produce, syncBin, withPrefix, type KillOutcome } from "./estate-support.js";

/** Waits until `zone` holds every fact with `prefix` that `origin` holds, then checks them. */
async function expectCrossed(estate: TestEstate, origin: string, zone: string, prefix: string, count: number, timeoutMs = 120_000) {
  await pollUntil(async () => withPrefix(await logOf(estate, zone), prefix).length >= count, { timeoutMs, intervalMs: 250, what: `${count} ${prefix} facts in ${zone}` });
  const from = withPrefix(await logOf(estate, origin), prefix);
  expect(from).toHaveLength(count);
  const crossed = checkCrossed(from, withPrefix(await logOf(estate, zone), prefix));
  const counts = { missing: crossed.missing.length, duplicated: crossed.duplicated.length, altered: crossed.altered.length, outOfOrder: crossed.outOfOrder.length };
  expect(counts, `${origin} → ${zone}: ${JSON.stringify(crossed).slice(0, 300)}`).toEqual({ missing: 0, duplicated: 0, altered: 0, outOfOrder: 0 });
}

const link = (statuses: LinkStatus[], name: string) => statuses.find((s) => s.link === name);

describe("replication under failure", () => {
  let dir: string;
  let estate: TestEstate | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-e2e-"));
  });
  afterEach(async () => {
    await estate?.dispose();
    estate = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps producers going while the PlantA → IDMZ link is cut, and delivers everything after it is restored", async () => {
    estate = await startTestEstate({ dir, proxies: true, extra: () => ({ sync: { backoff: { initial: "100ms", max: "1s" } } }) });
    const producer = estate.client("plant-a", "mes-producer");
    await produce(producer, "plant-a", "enterprise", 500, "before");
    await expectCrossed(estate, "plant-a", "enterprise", "before", 500);

    estate.proxy("idmz", "plant-a").cut();
    // Autonomous mode: every append is acknowledged while the peer cannot reach us.
    await produce(producer, "plant-a", "enterprise", 3_000, "during");
    const idmzSync = estate.zones.idmz!.syncs[0]!;
    const cutLink = await pollUntil(async () => {
      const status = link(await idmzSync.status(), "plant-a/idmz-from-plant-a-operational");
      return status?.state === "backing_off" && status.lastError !== undefined ? status : undefined;
    }, { timeoutMs: 30_000, what: "the cut link backing off" });
    // A reset connection reads as aborted, a refused one as unavailable: both are "the peer is unreachable".
    expect(["unavailable", "aborted"]).toContain(cutLink.lastError!.code);
    expect(withPrefix(await logOf(estate, "idmz"), "during")).toEqual([]);

    estate.proxy("idmz", "plant-a").restore();
    await expectCrossed(estate, "plant-a", "enterprise", "during", 3_000);
    await pollUntil(async () => link(await idmzSync.status(), "plant-a/idmz-from-plant-a-operational")?.state === "active", { what: "the link active again" });
  });

  it("loses and duplicates nothing when the relaying sync worker is killed with SIGKILL 20 times mid-transfer", async () => {
    // A short lease, so each restarted worker takes over within seconds of the kill, and a
    // short pending timeout, so claims of an append cut short are recovered within seconds too.
    estate = await startTestEstate({ dir, sync: false, storage: { leaseTtl: "1500ms", dedupe: { pendingTimeout: "2s", inflightWindow: "10s" } }, extra: () => ({ sync: { pageLimit: 200 } }) });
    await estate.startSync("plant-a");
    await estate.startSync("enterprise");
    // Enough facts that all 20 kills land while the relay still has work (it ships ~10k facts/s).
    const total = 30_000;
    const KILLS = 20;
    await produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", total, "killed", { batch: 500 });
    const relay = await estate.startSync("idmz", { child: { syncBin } });
    const relayed = "plant-a/idmz-from-plant-a-operational";
    const idmzLog = async () => withPrefix(await logOf(estate!, "idmz"), "killed").length;
    const outcomes: KillOutcome[] = [];
    const landed = () => outcomes.filter((o) => o.landed).length;
    const caughtUp = (status: LinkStatus) => status.pages > 0 && status.lagFacts === 0;
    const deadline = Date.now() + 120_000;
    while (landed() < KILLS && Date.now() < deadline) {
      // Only the lease holder moving facts is worth killing: wait until the (re)started worker took the lease and ships
      // (or has nothing left to ship)...
      const shipping = await pollUntil(async () => {
        const status = link(await relay.status(), relayed);
        return status?.state === "active" && (status.appended > 0 || caughtUp(status)) ? status : undefined;
      }, { timeoutMs: 30_000, intervalMs: 10, what: "the relaying worker holding its link and shipping" });
      // ...then kill it at a random moment of its work: after 1 to 600 more facts.
      const more = 1 + Math.floor(Math.random() * 600);
      const status = await pollUntil(async () => {
        const now = link(await relay.status(), relayed);
        return now && (now.state !== "active" || now.appended >= shipping.appended + more || caughtUp(now)) ? now : undefined;
      }, { timeoutMs: 30_000, intervalMs: 10, what: `the relaying worker shipping ${more} more facts` });
      const outcome = await killIfWorking(relay, estate.zones.idmz!.services.store.leases, relayed, status, shipping.appended, async () => (await idmzLog()) < total);
      outcomes.push(outcome);
      if (outcome.landed) await relay.restart();
      else if (outcome.missed === "transfer over") break;
    }
    const atLastKill = await idmzLog();
    const missed = Object.groupBy(outcomes.filter((o) => !o.landed), (o) => o.missed ?? "");
    console.info(`${landed()} SIGKILLs landed on the relaying worker while it held the link and shipped (${outcomes.length} tries; not killed: ${JSON.stringify(Object.fromEntries(Object.entries(missed).map(([why, list]) => [why, list?.length])))}); IDMZ held ${atLastKill} of ${total} facts after the last one`);
    expect(landed()).toBeGreaterThanOrEqual(KILLS);
    if (process.env.DEBUG_SYNC) {
      const t = setInterval(async () => console.log(JSON.stringify((await relay.status().catch(() => [])).map((l) => [l.link, l.state, l.cursor, l.highWater, l.lastError?.message])), relay.logLines.filter((l) => l.level !== 30).slice(-3)), 5000);
      setTimeout(() => clearInterval(t), 120_000);
    }
    await expectCrossed(estate, "plant-a", "idmz", "killed", total);
    await expectCrossed(estate, "plant-a", "enterprise", "killed", total);
  }, 300_000);

  it("loses and duplicates nothing when the receiving zone's nats-server restarts mid-transfer", async () => {
    estate = await startTestEstate({ dir, extra: () => ({ sync: { backoff: { initial: "100ms", max: "1s" } } }) });
    const producer = estate.client("plant-a", "mes-producer");
    const producing = produce(producer, "plant-a", "enterprise", 8_000, "restart");
    await pollUntil(async () => withPrefix(await logOf(estate!, "enterprise"), "restart").length > 500, { timeoutMs: 60_000, intervalMs: 50, what: "the transfer under way" });
    await estate.zones.enterprise!.nats.restart();
    await producing;
    await expectCrossed(estate, "plant-a", "enterprise", "restart", 8_000);
  });

  it("loses and duplicates nothing when the receiving zone's nats-server is killed (SIGKILL) mid-transfer and restarted on its store", async () => {
    estate = await startTestEstate({ dir, extra: () => ({ sync: { backoff: { initial: "100ms", max: "1s" } } }) });
    const total = 8_000;
    const producing = produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", total, "sigkill");
    await pollUntil(async () => withPrefix(await logOf(estate!, "enterprise"), "sigkill").length > 500, { timeoutMs: 60_000, intervalMs: 50, what: "the transfer under way" });
    const nats = estate.zones.enterprise!.nats;
    // The kill lands mid-transfer: Enterprise holds some of the facts, not all.
    const before = withPrefix(await logOf(estate, "enterprise"), "sigkill").length;
    const killedPid = nats.pid;
    await nats.kill();
    expect(before).toBeLessThan(total);
    await nats.restart();
    expect(nats.pid).not.toBe(killedPid);
    await producing;
    await expectCrossed(estate, "plant-a", "enterprise", "sigkill", total);
  });

  it("carries facts both ways once, never echoing them back", async () => {
    estate = await startTestEstate({ dir });
    await Promise.all([
      produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", 2_000, "up"),
      produce(estate.client("enterprise", "erp-producer"), "enterprise", "plant-a", 2_000, "down"),
    ]);
    await expectCrossed(estate, "plant-a", "enterprise", "up", 2_000);
    await expectCrossed(estate, "enterprise", "plant-a", "down", 2_000);
    await expectCrossed(estate, "plant-a", "idmz", "up", 2_000);
    await expectCrossed(estate, "enterprise", "idmz", "down", 2_000);
    // Let the links run a little longer: nothing may come back.
    for (const zone of ["enterprise", "idmz", "plant-a"]) {
      await pollUntil(async () => (await estate!.zones[zone]!.syncs[0]!.status()).every((s) => s.lagFacts === 0), { timeoutMs: 30_000, what: `${zone}'s links caught up` });
    }
    for (const [zone, prefix] of [["plant-a", "up"], ["enterprise", "down"]] as const) {
      const log = await logOf(estate, zone);
      expect(withPrefix(log, prefix)).toHaveLength(2_000);
      expect(new Set(log.map((f) => f.message!.envelope!.messageId)).size).toBe(log.length);
    }
    const links = (await Promise.all(["enterprise", "idmz", "plant-a"].map((z) => estate!.zones[z]!.syncs[0]!.status()))).flat();
    expect(links.reduce((sum, l) => sum + l.duplicates + l.conflicts, 0)).toBe(0);
  });

  it("runs one active replica per link; when it dies another takes over and the transfer completes exactly once", async () => {
    estate = await startTestEstate({ dir, sync: false, storage: { leaseTtl: "2s" } });
    await estate.startSync("plant-a");
    await estate.startSync("idmz");
    const replicas: SyncReplica[] = [await estate.startSync("enterprise", { child: { syncBin } }), await estate.startSync("enterprise", { child: { syncBin } })];
    const name = "idmz/enterprise-from-idmz-operational";
    const activeOf = async () => {
      const states = await Promise.all(replicas.map(async (r) => link(await r.status().catch(() => []), name)?.state));
      return states;
    };
    await pollUntil(async () => (await activeOf()).filter((s) => s === "active").length === 1 && (await activeOf()).includes("standby"), { timeoutMs: 20_000, what: "one active replica and one standby" });

    const producing = produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", 6_000, "failover");
    await pollUntil(async () => withPrefix(await logOf(estate!, "enterprise"), "failover").length > 1_000, { timeoutMs: 60_000, intervalMs: 50, what: "the transfer under way" });
    const states = await activeOf();
    const active = replicas[states.indexOf("active")]!;
    const standby = replicas[states.indexOf("standby")]!;
    // The kill lands on the lease holder while its link moves facts, before the transfer is over.
    const before = link(await active.status(), name)!;
    const shipping = await pollUntil(async () => {
      const now = link(await active.status(), name);
      return now && now.appended > before.appended ? now : undefined;
    }, { timeoutMs: 15_000, intervalMs: 10, what: "the active replica shipping" });
    const killedAt = Date.now();
    const kill = await killIfWorking(active, estate.zones.enterprise!.services.store.leases, name, shipping, before.appended, async () => withPrefix(await logOf(estate!, "enterprise"), "failover").length < 6_000);
    console.info(`kill of the active replica: ${JSON.stringify(kill)}`);
    expect(kill).toMatchObject({ landed: true });
    await pollUntil(async () => link(await standby.status(), name)?.state === "active", { timeoutMs: 15_000, intervalMs: 50, what: "the standby taking over" });
    // The lease is 2 s: the standby must take over within a few seconds of the kill.
    expect(Date.now() - killedAt).toBeLessThan(6_000);
    await producing;
    await expectCrossed(estate, "plant-a", "enterprise", "failover", 6_000);
  });

  it("reports permission_denied for a consumer its certificate may not read, backing off instead of spinning", async () => {
    estate = await startTestEstate({ dir, sync: false });
    // Enterprise asks IDMZ for PlantA's consumer: enterprise-bsfg is not bound to it.
    const doc = JSON.parse(readFileSync(estate.zones.enterprise!.configPath, "utf8")) as Record<string, Record<string, unknown>>;
    doc.sync = { links: [{ peer: "idmz", consumer: "plant-a-from-idmz-operational" }], backoff: { initial: "200ms", max: "5s" } };
    const config = parseZoneConfig(doc, { baseDir: dir });
    const lines: Array<Record<string, unknown>> = [];
    const logStream = new Writable({ write(chunk: Buffer, _e, done) { for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
    const sync = await startSyncDeployable(config, { logStream, healthListen: "127.0.0.1:0" });
    try {
      const status = await pollUntil(() => {
        const s = sync.worker.status()[0];
        return s?.lastError ? s : undefined;
      }, { timeoutMs: 15_000, what: "the link's error" });
      expect(status.lastError).toMatchObject({ code: "permission_denied", reason: "consumer_not_allowed" });
      // The probe port shows the error's code and reason to whoever reaches it, not its text.
      const probed = ((await (await fetch(`${sync.probeUrl!}/links`)).json()) as { links: Array<{ lastError?: Record<string, unknown> }> }).links[0]!.lastError!;
      expect(probed).toMatchObject({ code: "permission_denied", reason: "consumer_not_allowed" });
      expect(probed).not.toHaveProperty("message");
      expect(status.lastError!.message).toMatch(/consumer/);
      // Without spinning, and without giving up: it keeps trying, and after the n-th failure in a row
      // it waits at least half its step, 200 ms · 2ⁿ⁻¹ (100, 200, 400, 800 ms, …), before the next attempt.
      const errors = await pollUntil(() => {
        const logged = lines.filter((l) => l.event === "link_error");
        return logged.length >= 5 ? logged.slice(0, 5) : undefined;
      }, { timeoutMs: 15_000, what: "five failed attempts" });
      const gaps = errors.slice(1).map((line, n) => Number(line.time) - Number(errors[n]!.time));
      const leastWaits = gaps.map((_, n) => Math.min(5_000, 200 * 2 ** n) / 2);
      expect(gaps.map((gap, n) => Math.min(gap, leastWaits[n]!)), `gaps between attempts ${JSON.stringify(gaps)} ms`).toEqual(leastWaits);
      expect(errors.map((l) => l.code)).toEqual(Array(5).fill("permission_denied"));
      expect(sync.worker.status()[0]!.lastError).toMatchObject({ code: "permission_denied" });
    } finally {
      await sync.stop();
    }
  });

  it("appends relayed facts only as far as the relaying peer's policy allows, and sets the others aside in the quarantine", async () => {
    estate = await startTestEstate({ dir, sync: false });
    await estate.startSync("idmz");
    // Enterprise lets IDMZ relay only IDMZ's own facts, not PlantA's.
    const doc = JSON.parse(readFileSync(estate.zones.enterprise!.configPath, "utf8")) as { policy: Record<string, Record<string, unknown>> } & Record<string, unknown>;
    doc.policy["idmz-bsfg"] = { ...doc.policy["idmz-bsfg"], assertFromZones: ["idmz"] };
    doc.sync = { links: [{ peer: "idmz", consumer: "enterprise-from-idmz-operational" }], backoff: { initial: "200ms", max: "2s" } };
    const sync = await startSyncDeployable(parseZoneConfig(doc, { baseDir: dir }), { logStream: new Writable({ write: (_c, _e, done) => done() }) });
    try {
      await produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", 10, "relayed");
      await pollUntil(async () => withPrefix(await logOf(estate!, "idmz"), "relayed").length === 10, { what: "the facts in IDMZ" });
      const idmz = estate.zones.idmz!.services.store;
      // The link confirms past them: nothing waits behind a fact this zone will never take as it is.
      await pollUntil(async () => (await idmz.cursor("enterprise-from-idmz-operational")) === (await idmz.highWater("operational")), { timeoutMs: 15_000, what: "the link past the refused facts" });
      const status = sync.worker.status()[0]!;
      expect(status).toMatchObject({ appended: 0, quarantined: 10, lastError: undefined });
      expect(withPrefix(await logOf(estate, "enterprise"), "relayed")).toEqual([]);
      const parked = await listQuarantine(estate.store("enterprise").substrate);
      expect(parked.map((e) => [e.reason, e.link])).toEqual(Array.from({ length: 10 }, () => ["from_zone_not_allowed", "idmz/enterprise-from-idmz-operational"]));
      expect(parked.map((e) => e.messageId)).toEqual(withPrefix(await logOf(estate, "idmz"), "relayed").map((f) => f.message!.envelope!.messageId));
    } finally {
      await sync.stop();
    }
  });
});
