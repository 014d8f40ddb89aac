import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace";
import type { BsfgClient } from "@bsfg/client";
import { startTestEstate, threeZoneEstate, type ChildTestZone, type EstateTopology, type SyncReplica, type TestEstate } from "@bsfg/estate-kit";
import type { LinkStatus } from "@bsfg/replication";
import { clientTracing, metricValue, parseExposition, startTracing, type Sample, type Tracing } from "@bsfg/telemetry";
import { pollUntil, type TcpProxy } from "@bsfg/testkit";
import { appendInTrace, checkCrossed, killIfWorking, logOf, produce, readAll, syncBin, withPrefix, type KillOutcome } from "./estate-support.js";

/**
 * PlantA accepts no connection (issue 17): it dials the reverse listeners of IDMZ's sync
 * replicas, and IDMZ pulls PlantA's facts over those connections as the HTTP/2 client.
 * PlantA runs as its all-in-one process (apps/zone) so that it can be killed and its
 * sockets read from /proc; IDMZ's two sync replicas are child processes too, each on a
 * reverse-listener slot that PlantA reaches through a proxy of its own.
 */
const topology: EstateTopology = { ...threeZoneEstate, outboundOnly: ["plant-a"] };
const zoneBin = fileURLToPath(new URL("../../apps/zone/dist/main.js", import.meta.url));
/** The reversed link: IDMZ pulls PlantA's operational facts over the connections PlantA dialed. */
const UP = "plant-a/idmz-from-plant-a-operational";
const UP_DOCUMENTS = "plant-a/idmz-from-plant-a-documents";

/** Waits until `zone` holds every fact with `prefix` that `origin` holds, then checks them: each once, unaltered, in order. */
async function expectCrossed(estate: TestEstate, origin: string, zone: string, prefix: string, count: number, stream = "operational", timeoutMs = 60_000) {
  await pollUntil(async () => withPrefix(await logOf(estate, zone, stream), prefix).length >= count, { timeoutMs, intervalMs: 200, what: `${count} ${prefix} facts in ${zone}` });
  const from = withPrefix(await logOf(estate, origin, stream), prefix);
  expect(from).toHaveLength(count);
  const crossed = checkCrossed(from, withPrefix(await logOf(estate, zone, stream), prefix));
  const counts = { missing: crossed.missing.length, duplicated: crossed.duplicated.length, altered: crossed.altered.length, outOfOrder: crossed.outOfOrder.length };
  expect(counts, `${origin} → ${zone}: ${JSON.stringify(crossed).slice(0, 300)}`).toEqual({ missing: 0, duplicated: 0, altered: 0, outOfOrder: 0 });
}

const linkOf = (statuses: LinkStatus[], name: string) => statuses.find((s) => s.link === name);

/** The replica of `replicas` whose link `name` is active (holds the lease and pulls), with that status. */
async function holding(replicas: readonly SyncReplica[], name: string): Promise<{ replica: SyncReplica; status: LinkStatus } | undefined> {
  for (const replica of replicas) {
    const status = linkOf(await replica.status().catch(() => []), name);
    if (status?.state === "active") return { replica, status };
  }
  return undefined;
}

async function scrape(probeUrl: string): Promise<Sample[]> {
  const response = await fetch(`${probeUrl}/metrics`);
  expect(response.status).toBe(200);
  return parseExposition(await response.text());
}

interface DialStatusJson { peer: string; url: string; state: string; connectedAtMs: number | undefined; dials: number; failures: number; lastError: string | undefined }
async function dialsOf(plant: ChildTestZone): Promise<DialStatusJson[]> {
  const response = await fetch(`${plant.healthUrl}/reverse`);
  expect(response.status).toBe(200);
  const body = (await response.json()) as { zone: string; dials: DialStatusJson[] };
  expect(body.zone).toBe("plant-a");
  return body.dials;
}

/** An artifact put in `zone` and a documents fact for `to` referencing it. */
async function artifact(client: BsfgClient, zone: string, to: string, prefix: string, i: number): Promise<{ key: string; digest: string; size: number }> {
  const content = randomBytes(20_000 + i * 7_000);
  const key = `${prefix}/A${i}.bin`;
  const digest = `sha256:${createHash("sha256").update(content).digest("hex")}`;
  const object = await client.putObject({ bucket: "document-files", key, mediaType: "application/octet-stream", fileName: `A${i}.bin` }, content);
  expect(object.digest).toBe(digest);
  await client.appendFact({
    envelope: { messageId: `${prefix}-${i}`, fromZone: zone, toZone: to, producedAtUnixMs: BigInt(Date.now()), objectMediaType: "application/octet-stream" },
    fact: { subject: `document:${zone}/A${i}`, predicate: "report_released", objectJson: JSON.stringify({ bucket: "document-files", key, digest, size: content.byteLength, media_type: "application/octet-stream" }) },
  });
  return { key, digest, size: content.byteLength };
}

/** A TCP socket a process listens on, from /proc: its local address and port. */
interface Listening { readonly address: string; readonly port: number; readonly loopback: boolean }

/** Every socket `pid` listens on (TCP LISTEN, state 0A), IPv4 and IPv6: its socket inodes matched against the namespace's tables. */
function listeningSockets(pid: number): Listening[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // Closed meanwhile.
    }
  }
  const found: Listening[] = [];
  for (const [table, v6] of [["tcp", false], ["tcp6", true]] as const) {
    const lines = readFileSync(`/proc/${pid}/net/${table}`, "utf8").split("\n").slice(1);
    for (const line of lines) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== "0A" || !inodes.has(cols[9]!)) continue;
      const [hex, port] = cols[1]!.split(":") as [string, string];
      // Each 32-bit word in host (little-endian) order.
      const bytes = Buffer.concat(Array.from({ length: hex.length / 8 }, (_, i) => Buffer.from(hex.slice(i * 8, i * 8 + 8), "hex").reverse()));
      const loopback = v6
        ? bytes.subarray(0, 15).every((b) => b === 0) && bytes[15] === 1 // ::1
          || (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff && bytes[12] === 127) // ::ffff:127.x.x.x
        : bytes[0] === 127;
      const address = v6 ? Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(":") : [...bytes].join(".");
      found.push({ address, port: parseInt(port, 16), loopback });
    }
  }
  return found;
}

describe("an outbound-only plant (PlantA dials IDMZ, which pulls over that connection)", () => {
  let dir: string;
  let estate: TestEstate;
  let plant: ChildTestZone;
  let relays: SyncReplica[];
  let producer: BsfgClient;
  const proxies = (): TcpProxy[] => estate.reverseProxies("idmz", "plant-a");
  /** PlantA's consumer for IDMZ confirmed to the end of PlantA's log: the reversed link has nothing left to move. */
  const confirmedAll = async () => (await plant.store.cursor("idmz-from-plant-a-operational")) >= (await plant.store.highWater("operational"));
  const idmzLink = (name = UP) => pollUntil(() => holding(relays, name), { timeoutMs: 30_000, intervalMs: 50, what: `an IDMZ replica holding ${name}` });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-e2e-outbound-"));
    const started = Date.now();
    estate = await startTestEstate({
      dir,
      topology,
      proxies: true,
      sync: false,
      childZones: { zones: ["plant-a"], zoneBin },
      // A short lease, so a killed IDMZ replica's link is taken over within seconds; a short
      // pending timeout, so claims of an append cut short by a kill are recovered within seconds.
      storage: { leaseTtl: "1500ms", dedupe: { pendingTimeout: "2s", inflightWindow: "10s" } },
      extra: () => ({ sync: { backoff: { initial: "100ms", max: "1s" }, pageLimit: 200 } }),
    });
    plant = estate.childZones["plant-a"]!;
    await estate.startSync("enterprise");
    relays = [await estate.startSync("idmz", { child: { syncBin } }), await estate.startSync("idmz", { child: { syncBin } })];
    producer = estate.client("plant-a", "mes-producer");
    console.info(`outbound-only estate up in ${Date.now() - started} ms`);
  }, 60_000);
  afterAll(async () => {
    await estate?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("listens on loopback only: every listening socket of the PlantA process is on 127.0.0.1 or ::1", () => {
    const pid = plant.pid!;
    expect(pid).toBeGreaterThan(0);
    const listening = listeningSockets(pid);
    // Its mTLS endpoint, its probe and its sync worker's probe, all on loopback (configured so); nothing else.
    const configured = [plant.config.listen.zone, plant.config.health.zone, plant.config.health.sync].map((a) => Number(a!.split(":").at(-1)));
    expect(listening.map((l) => l.port).sort()).toEqual(configured.sort());
    expect(listening.filter((l) => !l.loopback), JSON.stringify(listening)).toEqual([]);
    // The check reads the right process: IDMZ's replicas each listen on their reverse-listener slot.
    for (const relay of relays) {
      expect(listeningSockets(relay.pid!).map((l) => l.port)).toContain(Number(new URL(relay.reverseUrl!).port));
    }
  });

  it("carries facts and artifacts both ways — PlantA's pulled by IDMZ over the reversed connection — each once, never echoing them back", async () => {
    const upBytes = () => proxies().reduce((sum, p) => sum + p.bytes.upstream, 0);
    const upBefore = upBytes();
    const erp = estate.client("enterprise", "erp-producer");
    await Promise.all([
      produce(producer, "plant-a", "enterprise", 2_000, "up"),
      produce(erp, "enterprise", "plant-a", 2_000, "down"),
    ]);
    const upArtifacts = [];
    const downArtifacts = [];
    for (let i = 0; i < 3; i++) {
      upArtifacts.push(await artifact(producer, "plant-a", "enterprise", "doc-up", i));
      downArtifacts.push(await artifact(erp, "enterprise", "plant-a", "doc-down", i));
    }
    await expectCrossed(estate, "plant-a", "idmz", "up", 2_000);
    await expectCrossed(estate, "plant-a", "enterprise", "up", 2_000);
    await expectCrossed(estate, "enterprise", "idmz", "down", 2_000);
    await expectCrossed(estate, "enterprise", "plant-a", "down", 2_000);
    await expectCrossed(estate, "plant-a", "enterprise", "doc-up", 3, "documents");
    await expectCrossed(estate, "enterprise", "plant-a", "doc-down", 3, "documents");
    // Each artifact is where its fact went (and in IDMZ, which relayed it): copied before the fact.
    for (const [zones, list] of [[["idmz", "enterprise"], upArtifacts], [["idmz", "plant-a"], downArtifacts]] as const) {
      for (const zone of zones) {
        for (const a of list) {
          const object = await estate.store(zone).statObject("document-files", a.key);
          expect({ digest: object?.digest, size: object?.size }, `${a.key} in ${zone}`).toEqual({ digest: a.digest, size: BigInt(a.size) });
        }
      }
    }
    // PlantA's facts crossed the reversed connections: through the proxies PlantA dials, from it (upstream).
    expect(upBytes() - upBefore).toBeGreaterThan(2_000 * 200);

    // Let every link catch up, then nothing may come back to where it came from.
    const everyLink = async () => [
      ...(await Promise.all(relays.map((r) => r.status()))).flat(),
      ...(await estate.zones.enterprise!.syncs[0]!.status()),
      ...(await plant.status()),
    ];
    await pollUntil(async () => {
      const active = (await everyLink()).filter((s) => s.state === "active");
      // 4 links into IDMZ (held by one of its replicas each), 2 into Enterprise, 2 into PlantA.
      return active.length === 8 && active.every((s) => s.lagFacts === 0 && s.confirmLag === 0);
    }, { timeoutMs: 30_000, what: "every link active and caught up" });
    for (const [zone, own, foreign] of [["plant-a", "up", "down"], ["enterprise", "down", "up"]] as const) {
      const log = await logOf(estate, zone);
      expect(withPrefix(log, own), `${zone}'s own facts`).toHaveLength(2_000);
      expect(withPrefix(log, foreign), `${zone}'s received facts`).toHaveLength(2_000);
      expect(new Set(log.map((f) => f.message!.envelope!.messageId)).size, `${zone}: a message_id twice`).toBe(log.length);
      const documents = await readAll(estate.store(zone), "documents");
      expect(new Set(documents.map((f) => f.message!.envelope!.messageId)).size).toBe(documents.length);
    }
    const links = await everyLink();
    expect(links.reduce((sum, l) => sum + l.duplicates + l.conflicts + l.quarantined, 0)).toBe(0);
    // PlantA's artifacts, too, were fetched over the reversed connection (FetchObject), by the replica holding its documents link.
    expect(linkOf(links.filter((l) => l.state === "active"), UP_DOCUMENTS)).toMatchObject({ connection: { dial: "inbound" }, artifactsCopied: 3 });
  });

  it("shows the reversed connection in IDMZ's link status, PlantA's /reverse and both sides' metrics", async () => {
    const { replica, status } = await idmzLink();
    const now = Date.now();
    expect(status.connection).toMatchObject({ dial: "inbound", peerIdentity: "plant-a-bsfg" });
    // PlantA's all-in-one process dialed it: its replica name carries that process's pid.
    expect(status.connection.replica).toMatch(new RegExp(`:${plant.pid}:zone$`));
    expect(status.connection.remote).toMatch(/^(127\.0\.0\.1|::ffff:127\.0\.0\.1|::1):\d+$/);
    const connectedAt = Date.parse(status.connection.connectedAt!);
    expect(connectedAt).toBeLessThanOrEqual(now);
    expect(Math.abs(status.connection.ageSeconds! - (now - connectedAt) / 1000)).toBeLessThanOrEqual(2);
    // A link IDMZ dials itself says so, without a dialing replica.
    const outbound = linkOf(await replica.status(), "enterprise/idmz-from-enterprise-operational")!;
    expect(outbound.connection).toEqual({ dial: "outbound", peerIdentity: "enterprise-bsfg" });

    // PlantA keeps one connection to each of IDMZ's reverse-listener slots (through its proxy).
    const dials = await pollUntil(async () => {
      const now = await dialsOf(plant);
      return now.every((d) => d.state === "connected") ? now : undefined;
    }, { timeoutMs: 20_000, what: "PlantA connected to both slots" });
    expect(dials.map((d) => [d.peer, d.url, d.state])).toEqual(proxies().map((p) => ["idmz", `https://localhost:${p.port}`, "connected"]));
    for (const d of dials) expect(d.connectedAtMs).toBeLessThanOrEqual(Date.now());

    // Dialing side: one connected dial per dial that did not fail.
    const plantMetrics = await scrape(plant.healthUrl);
    expect(metricValue(plantMetrics, "bsfg_reverse_dials_total", { peer: "idmz", outcome: "connected" })).toBe(dials.reduce((sum, d) => sum + d.dials - d.failures, 0));
    expect(metricValue(plantMetrics, "bsfg_reverse_dials_total", { peer: "idmz", outcome: "failed" }) ?? 0).toBe(dials.reduce((sum, d) => sum + d.failures, 0));
    // Listening side: each replica holds exactly the one connection PlantA keeps to it.
    for (const relay of relays) {
      const samples = await scrape(relay.probeUrl!);
      const accepted = metricValue(samples, "bsfg_reverse_connections_total", { peer: "plant-a", event: "accepted" })!;
      expect(accepted).toBeGreaterThanOrEqual(1);
      expect(accepted - (metricValue(samples, "bsfg_reverse_connections_total", { peer: "plant-a", event: "closed" }) ?? 0)).toBe(1);
      expect(metricValue(samples, "bsfg_reverse_connections_total", { peer: "plant-a", event: "refused" }) ?? 0).toBe(0);
    }
  });

  it("holds PlantA's facts while the reversed link is cut, and delivers them once after it is restored", async () => {
    for (const p of proxies()) p.cut();
    await produce(producer, "plant-a", "enterprise", 2_000, "cut");
    const cut = await pollUntil(async () => {
      const statuses = await Promise.all(relays.map(async (r) => linkOf(await r.status(), UP)));
      return statuses.find((s) => s?.state === "backing_off" && s.lastError !== undefined);
    }, { timeoutMs: 30_000, what: "the cut link backing off" });
    expect(["unavailable", "aborted"]).toContain(cut.lastError!.code);
    // PlantA's dialer sees it too: no connection to either slot.
    await pollUntil(async () => (await dialsOf(plant)).every((d) => d.state !== "connected"), { timeoutMs: 10_000, what: "PlantA's dials down" });
    expect(withPrefix(await logOf(estate, "idmz"), "cut")).toEqual([]);

    const restoredAt = Date.now();
    for (const p of proxies()) p.restore();
    await expectCrossed(estate, "plant-a", "enterprise", "cut", 2_000);
    await expectCrossed(estate, "plant-a", "idmz", "cut", 2_000);
    // Over a new connection.
    const { status } = await idmzLink();
    expect(Date.parse(status.connection.connectedAt!)).toBeGreaterThanOrEqual(restoredAt);
  });

  it("survives a reconnect storm (the reversed link cut 30 times in a few seconds) with nothing lost or duplicated", async () => {
    // Both connections up for 2 s at least: PlantA then redials each at once when it is cut (a shorter one counts as a failed dial, and backs off).
    const before = await pollUntil(async () => {
      const dials = await dialsOf(plant);
      return dials.every((d) => d.state === "connected" && Date.now() - d.connectedAtMs! >= 2_500) ? dials : undefined;
    }, { timeoutMs: 30_000, what: "PlantA connected to both slots for 2.5 s" });
    const producing = produce(producer, "plant-a", "enterprise", 3_000, "storm", { batch: 50 });
    // The storm: cut and restore at random moments 20–150 ms apart (a flapping firewall).
    for (let i = 0; i < 30; i++) {
      for (const p of proxies()) p.cut();
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 130));
      for (const p of proxies()) p.restore();
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 130));
    }
    await producing;
    const during = await dialsOf(plant);
    const redials = during.reduce((sum, d) => sum + d.dials, 0) - before.reduce((sum, d) => sum + d.dials, 0);
    console.info(`reconnect storm: PlantA dialed ${redials} times (${during.reduce((sum, d) => sum + d.failures, 0) - before.reduce((sum, d) => sum + d.failures, 0)} failed)`);
    // The storm did break the connections: PlantA redialed each slot (then backed off, as a flapping link asks).
    expect(redials).toBeGreaterThanOrEqual(2);
    // After it, the link moves again (PlantA's backoff is 10 s at most) and everything arrives once.
    await expectCrossed(estate, "plant-a", "idmz", "storm", 3_000);
    await expectCrossed(estate, "plant-a", "enterprise", "storm", 3_000);
    await pollUntil(async () => (await dialsOf(plant)).every((d) => d.state === "connected"), { timeoutMs: 30_000, what: "PlantA connected to both slots again" });
    // The storm left no connections behind on the listeners: one per replica.
    for (const relay of relays) {
      await pollUntil(async () => {
        const samples = await scrape(relay.probeUrl!);
        const open = metricValue(samples, "bsfg_reverse_connections_total", { peer: "plant-a", event: "accepted" })! - (metricValue(samples, "bsfg_reverse_connections_total", { peer: "plant-a", event: "closed" }) ?? 0);
        return open === 1;
      }, { timeoutMs: 20_000, what: `one connection open on ${relay.holder}` });
    }
  });

  it("carries everything once over a slow reversed link (30 ms each way, 250 kB/s)", async () => {
    const BYTES_PER_SECOND = 250_000;
    for (const p of proxies()) p.shape({ delayMs: 30, bytesPerSecond: BYTES_PER_SECOND });
    try {
      const upBefore = proxies().reduce((sum, p) => sum + p.bytes.upstream, 0);
      const started = Date.now();
      await produce(producer, "plant-a", "enterprise", 1_500, "slow");
      await expectCrossed(estate, "plant-a", "idmz", "slow", 1_500);
      const seconds = (Date.now() - started) / 1000;
      const carried = proxies().reduce((sum, p) => sum + p.bytes.upstream, 0) - upBefore;
      console.info(`slow link: ${carried} bytes from PlantA in ${seconds.toFixed(1)} s (${Math.round(carried / seconds)} B/s)`);
      // The facts came through the shaped proxies, no faster than the cap allows (each connection is capped: two slots).
      expect(carried).toBeGreaterThan(1_500 * 200);
      expect(carried / seconds).toBeLessThanOrEqual(2 * BYTES_PER_SECOND * 1.1);
    } finally {
      for (const p of proxies()) p.shape({});
    }
    await expectCrossed(estate, "plant-a", "enterprise", "slow", 1_500);
  });

  it("loses and duplicates nothing when PlantA's dialing process is killed (SIGKILL) while IDMZ pulls over its connection", async () => {
    const total = 8_000;
    const KILLS = 3;
    // A backlog first (the link stalled, its connections kept), so the kills land mid-transfer.
    for (const p of proxies()) p.pause();
    await produce(producer, "plant-a", "enterprise", total, "plantkill", { batch: 500 });
    for (const p of proxies()) p.resume();
    const inIdmz = async () => withPrefix(await logOf(estate, "idmz"), "plantkill").length;
    const outcomes: Array<{ landed: boolean; missed?: string; pid: number; idmzHeld: number }> = [];
    const deadline = Date.now() + 60_000;
    while (outcomes.filter((o) => o.landed).length < KILLS && Date.now() < deadline) {
      const pid = plant.pid!;
      // IDMZ pulls over a connection of this PlantA process, and has moved facts over it...
      const { status: from } = await pollUntil(async () => {
        const held = await holding(relays, UP);
        return held?.status.connection.replica?.endsWith(`:${pid}:zone`) ? held : undefined;
      }, { timeoutMs: 30_000, intervalMs: 10, what: "IDMZ pulling over PlantA's connection" });
      const more = 1 + Math.floor(Math.random() * 300);
      const status = await pollUntil(async () => {
        const held = await holding(relays, UP);
        return held && (held.status.appended >= from.appended + more || (await confirmedAll())) ? held.status : undefined;
      }, { timeoutMs: 30_000, intervalMs: 10, what: `IDMZ pulling ${more} more facts` });
      // ...frozen, PlantA is checked: the link still used its connection and has facts left to move.
      plant.pause();
      const idmzHeld = await inIdmz();
      const missed = !status.connection.replica?.endsWith(`:${pid}:zone`) ? `link on ${status.connection.replica ?? "no connection"}`
        : status.appended <= from.appended ? "no facts moved"
          : idmzHeld >= total ? "transfer over"
            : undefined;
      if (missed !== undefined) {
        plant.resume();
        outcomes.push({ landed: false, missed, pid, idmzHeld });
        if (missed === "transfer over") break;
        continue;
      }
      await plant.kill();
      outcomes.push({ landed: true, pid, idmzHeld });
      await plant.restart();
      expect(plant.pid).not.toBe(pid);
    }
    const landed = outcomes.filter((o) => o.landed);
    console.info(`${landed.length} SIGKILLs landed on PlantA's process while IDMZ pulled over its connection (IDMZ held ${landed.map((o) => o.idmzHeld).join(", ")} of ${total}); missed: ${JSON.stringify(outcomes.filter((o) => !o.landed).map((o) => o.missed))}`);
    expect(landed.length).toBeGreaterThanOrEqual(KILLS);
    await expectCrossed(estate, "plant-a", "idmz", "plantkill", total);
    await expectCrossed(estate, "plant-a", "enterprise", "plantkill", total);
    // The restarted process dials again and serves the link.
    const { status } = await idmzLink();
    expect(status.connection.replica).toMatch(new RegExp(`:${plant.pid}:zone$`));
  });

  it("loses and duplicates nothing when the IDMZ sync replica holding the reversed link is killed (SIGKILL) while it pulls", async () => {
    const total = 8_000;
    const KILLS = 3;
    for (const p of proxies()) p.pause();
    await produce(producer, "plant-a", "enterprise", total, "relaykill", { batch: 500 });
    // A link capped at 256 kB/s (8,000 facts take some 8 s or more): the transfer outlasts three
    // kills and takeovers even on a loaded machine, where it once ended after two ("transfer over").
    for (const p of proxies()) p.shape({ bytesPerSecond: 256 * 1024 });
    for (const p of proxies()) p.resume();
    const inIdmz = async () => withPrefix(await logOf(estate, "idmz"), "relaykill").length;
    const outcomes: KillOutcome[] = [];
    const landed = () => outcomes.filter((o) => o.landed).length;
    const leases = estate.zones.idmz!.services.store.leases;
    const deadline = Date.now() + 90_000;
    while (landed() < KILLS && Date.now() < deadline) {
      // The replica holding the link and pulling over PlantA's connection…
      const { replica, status: from } = await idmzLink();
      const more = 1 + Math.floor(Math.random() * 300);
      const status = await pollUntil(async () => {
        const now = linkOf(await replica.status().catch(() => []), UP);
        return now && (now.state !== "active" || now.appended >= from.appended + more || (await confirmedAll())) ? now : undefined;
      }, { timeoutMs: 30_000, intervalMs: 10, what: `${replica.holder} pulling ${more} more facts` });
      // …killed only if it still holds the lease, moved facts and work is left.
      const outcome = await killIfWorking(replica, leases, UP, status, from.appended, async () => (await inIdmz()) < total);
      outcomes.push(outcome);
      if (outcome.landed) await replica.restart();
      else if (outcome.missed === "transfer over") break;
    }
    for (const p of proxies()) p.shape({});
    console.info(`${landed()} SIGKILLs landed on the IDMZ replica holding the reversed link (${outcomes.length} tries; missed: ${JSON.stringify(outcomes.filter((o) => !o.landed).map((o) => o.missed))})`);
    expect(landed()).toBeGreaterThanOrEqual(KILLS);
    await expectCrossed(estate, "plant-a", "idmz", "relaykill", total);
    await expectCrossed(estate, "plant-a", "enterprise", "relaykill", total);
    // The link runs on, over a connection PlantA dialed to a replica.
    const { status } = await idmzLink();
    expect(status.connection).toMatchObject({ dial: "inbound", peerIdentity: "plant-a-bsfg" });
    expect(status.connection.connectedAt).toBeDefined();
  });
});

describe("one trace across an outbound-only plant's reversed link", () => {
  let dir: string;
  let estate: TestEstate;
  let tracing: Tracing;
  const exporter = new InMemorySpanExporter();
  beforeAll(async () => {
    // Every zone runs in this process here: one provider collects all their spans.
    tracing = startTracing({ serviceName: "bsfg-e2e", zone: "estate", spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    dir = await mkdtemp(join(tmpdir(), "bsfg-e2e-outbound-trace-"));
    estate = await startTestEstate({ dir, topology, extra: () => ({ sync: { backoff: { initial: "100ms", max: "1s" } } }) });
  }, 60_000);
  afterAll(async () => {
    await estate?.dispose();
    await tracing?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it("follows a fact from its AppendFact in PlantA through IDMZ (which fetched it over PlantA's connection) to Enterprise", async () => {
    const producer = estate.client("plant-a", "mes-producer", { interceptors: [clientTracing("plant-a")] });
    const messageId = `traced-${Date.now()}`;
    const traceId = await appendInTrace(producer, messageId);
    await pollUntil(async () => (await logOf(estate, "enterprise")).some((f) => f.message!.envelope!.messageId === messageId), { timeoutMs: 30_000, what: "the fact in Enterprise" });
    const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const zoneOf = (s: ReadableSpan) => s.attributes["bsfg.zone"];
    await pollUntil(() => inTrace().some((s) => s.name === "relay append" && zoneOf(s) === "enterprise"), { what: "Enterprise's relay span in the producer's trace" });
    const spans = inTrace();
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? "");
    const root = spans.find((s) => s.name === "mes: batch step")!;
    for (const span of spans) if (span !== root) expect(parentOf(span), `${span.name} (${String(zoneOf(span))})`).toBeDefined();
    const server = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes["rpc.method"] === "AppendFact")!;
    const write = spans.find((s) => s.name === "jetstream append" && parentOf(s) === server)!;
    const idmz = spans.find((s) => s.name === "relay append" && zoneOf(s) === "idmz")!;
    expect(parentOf(idmz)).toBe(write);
    const enterprise = spans.find((s) => s.name === "relay append" && zoneOf(s) === "enterprise")!;
    expect(parentOf(enterprise)).toBe(idmz);

    // IDMZ's page: its FetchFacts went over the connection PlantA dialed, and PlantA served it
    // in the same trace, knowing the caller by IDMZ's listener certificate.
    const all = () => exporter.getFinishedSpans();
    const { append, page } = await pollUntil(() => {
      const spansNow = all();
      const append = spansNow.find((s) => s.spanContext().spanId === idmz.links[0]!.context.spanId);
      const page = spansNow.find((s) => s.spanContext().spanId === append?.parentSpanContext?.spanId);
      return append && page ? { append, page } : undefined;
    }, { what: "IDMZ's page span" });
    expect(append.name).toBe("append");
    expect(page.name).toBe("sync page");
    const fetches = all().filter((s) => s.parentSpanContext?.spanId === page.spanContext().spanId && s.name === "bsfg.v1.BoundaryService/FetchFacts");
    expect(fetches).toHaveLength(1);
    const fetch = fetches[0]!;
    const served = await pollUntil(() => all().find((s) => s.kind === SpanKind.SERVER && s.parentSpanContext?.spanId === fetch.spanContext().spanId), { what: "PlantA's FetchFacts server span under IDMZ's call" });
    expect(served.attributes).toMatchObject({ "bsfg.zone": "plant-a", "bsfg.peer.identity": "idmz-bsfg", "rpc.method": "FetchFacts" });
    expect(served.spanContext().traceId).toBe(fetch.spanContext().traceId);
  });
});
