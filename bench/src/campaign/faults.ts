import type { CampaignEstate, CampaignZone, ServiceRole } from "./estate.js";
import { SERVICE_ROLES } from "./estate.js";
import type { Random } from "./random.js";
import type { ChildDeployable } from "./processes.js";

/*
 * The faults, each a small function over the estate that reports what it did.
 * A sync kill counts only if it landed: the replica killed held a link's lease
 * (its status says "active") and that link had facts waiting at that moment.
 */

export type FaultKind = "sync_kill" | "service_kill" | "nats_kill" | "partition" | "connection_reset" | "slow_link" | "disk_full";

export interface FaultRecord {
  readonly kind: FaultKind;
  readonly target: string;
  readonly atMs: number;
  readonly durationMs: number;
  /** Sync kills: it hit the active holder of a link with facts waiting. Node kills in the three-node zone: it hit the fact log's leader. */
  readonly landed?: boolean;
  /**
   * The links ("<receiver>←<sender>") whose peer the fault made unreachable, for the
   * no-progress measure. A sync kill makes no peer unreachable: how long its link then
   * stands still (until another replica holds it) is what that measure is for.
   */
  readonly unreachable: readonly string[];
}

export interface LinkView {
  readonly link: string;
  readonly peer: string;
  readonly state: string;
  readonly cursor: number;
  readonly lagFacts: number;
}

export async function linksOf(sync: ChildDeployable): Promise<LinkView[]> {
  if (!sync.running) return [];
  try {
    const response = await fetch(`${sync.probeUrl}/links`, { signal: AbortSignal.timeout(2_000) });
    return ((await response.json()) as { links: LinkView[] }).links;
  } catch {
    return [];
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function faults(estate: CampaignEstate, random: Random, log: (line: string) => void) {
  const records: FaultRecord[] = [];
  const zones = Object.values(estate.zones);
  const pairs = [...new Set(estate.proxies.map((p) => `${p.receiver}←${p.sender}`))];
  const fromSender = (zone: string) => pairs.filter((pair) => pair.endsWith(`←${zone}`));
  const intoReceiver = (zone: string) => pairs.filter((pair) => pair.startsWith(`${zone}←`));
  /** The links the fault under way makes unreachable (until its record is written). */
  let underWay: readonly string[] = [];
  const record = (r: FaultRecord) => {
    underWay = [];
    records.push(r);
    log(`${new Date().toISOString()} ${r.kind} ${r.target}${r.landed === undefined || r.kind !== "sync_kill" ? "" : r.landed ? " (landed on the active holder mid-transfer)" : " (did not land: not the active holder of a moving link)"} ${Math.round(r.durationMs)} ms`);
  };

  /** SIGKILL the replica holding a link that has facts waiting, then start it again. */
  async function syncKill(): Promise<void> {
    const started = performance.now();
    const zone = random.pick(zones);
    // Read every replica's links: the holder is whoever says "active", not whoever we assume.
    // Facts arrive in batches: watch for up to 3 s for a link with facts waiting.
    let moving: { sync: ChildDeployable; link: LinkView }[] = [];
    for (const until = performance.now() + 3_000; moving.length === 0 && performance.now() < until;) {
      const views = await Promise.all(zone.syncs.map(async (sync) => ({ sync, links: await linksOf(sync) })));
      moving = views.flatMap(({ sync, links }) => links.filter((l) => l.state === "active" && l.lagFacts > 0).map((l) => ({ sync, link: l })));
      if (moving.length === 0) await pause(30);
    }
    const chosen = moving.length > 0 ? random.pick(moving) : { sync: random.pick(zone.syncs), link: undefined };
    await chosen.sync.kill();
    record({ kind: "sync_kill", target: `${chosen.sync.name}${chosen.link ? ` holding ${chosen.link.link} (${chosen.link.lagFacts} waiting)` : ""}`, atMs: Date.now(), durationMs: performance.now() - started, landed: chosen.link !== undefined, unreachable: [] });
    await pause(random.int(50, 500));
    await chosen.sync.start();
  }

  async function serviceKill(): Promise<void> {
    const started = performance.now();
    const zone = random.pick(zones);
    const role: ServiceRole = random.pick(SERVICE_ROLES);
    underWay = role === "ingest" ? [] : fromSender(zone.name);
    await zone.services[role].kill();
    await pause(random.int(0, 300));
    await zone.services[role].start();
    // Egress and ledger serve the zone's peers; ingest only its producers.
    record({ kind: "service_kill", target: `${zone.name}-${role}`, atMs: Date.now(), durationMs: performance.now() - started, unreachable: role === "ingest" ? [] : fromSender(zone.name) });
  }

  /**
   * kill -9 the zone's nats-server and start it again on its store. In the highly available
   * zone, kill the node leading the fact log (read from stream info, not assumed): the zone
   * must stay reachable, so its links' stall is measured through the leader election, and the
   * node restarts on its store and catches up.
   */
  async function natsKill(zone: CampaignZone = random.pick(zones)): Promise<void> {
    const started = performance.now();
    if (zone.nats.kind === "cluster") {
      const cluster = zone.nats.cluster;
      const leader = await cluster.streamLeader("facts-operational").catch(() => undefined);
      const node = leader ? cluster.node(leader) : random.pick(cluster.running());
      await node.kill();
      await pause(random.int(0, 500));
      await node.restart();
      record({ kind: "nats_kill", target: `${zone.name} nats-server ${node.name} (one of three${leader ? ", leading the fact log" : ""})`, atMs: Date.now(), durationMs: performance.now() - started, landed: leader !== undefined, unreachable: [] });
      return;
    }
    underWay = [...fromSender(zone.name), ...intoReceiver(zone.name)];
    await zone.nats.server.kill();
    await pause(random.int(0, 500));
    await zone.nats.server.restart();
    record({ kind: "nats_kill", target: `${zone.name} nats-server`, atMs: Date.now(), durationMs: performance.now() - started, unreachable: [...fromSender(zone.name), ...intoReceiver(zone.name)] });
  }

  /** Cut a link (both directions reset, new connections refused) for a while, then restore it. */
  async function partition(): Promise<void> {
    const started = performance.now();
    const { receiver, sender, role, proxy } = random.pick(estate.proxies);
    underWay = [`${receiver}←${sender}`];
    proxy.cut();
    await pause(random.int(200, 3_000));
    proxy.restore();
    record({ kind: "partition", target: `${receiver} ← ${sender} ${role}`, atMs: Date.now(), durationMs: performance.now() - started, unreachable: [`${receiver}←${sender}`] });
  }

  /** Reset the live connections of a link that is moving facts, in the middle of a page. */
  async function connectionReset(): Promise<void> {
    const started = performance.now();
    const { receiver, sender, role, proxy } = random.pick(estate.proxies.filter((p) => p.role === "egress"));
    underWay = [`${receiver}←${sender}`];
    proxy.cut();
    proxy.restore();
    record({ kind: "connection_reset", target: `${receiver} ← ${sender} ${role}`, atMs: Date.now(), durationMs: performance.now() - started, unreachable: [`${receiver}←${sender}`] });
  }

  /** A slow link for 1–4 s: every chunk 50–300 ms late, or the bandwidth capped at 16–128 KB/s. */
  async function slowLink(): Promise<void> {
    const started = performance.now();
    const { receiver, sender, role, proxy } = random.pick(estate.proxies);
    underWay = [`${receiver}←${sender}`];
    const shape = random.next() < 0.5 ? { delayMs: random.int(50, 300) } : { bytesPerSecond: random.int(16, 128) * 1024 };
    proxy.shape(shape);
    try {
      await pause(random.int(1_000, 4_000));
    } finally {
      proxy.shape({});
    }
    record({ kind: "slow_link", target: `${receiver} ← ${sender} ${role} ${"delayMs" in shape ? `+${shape.delayMs} ms` : `${Math.round(shape.bytesPerSecond! / 1024)} KB/s`}`, atMs: Date.now(), durationMs: performance.now() - started, unreachable: [`${receiver}←${sender}`] });
  }

  /**
   * The origin zone's store fills up: its operational stream's capacity is set to what it
   * holds, so every write is refused (the producers must get resource_exhausted, and
   * nothing acknowledged may be lost), then given back — once `hold.until()` says a
   * producer was refused, after `hold.minMs` at least and `hold.maxMs` at most.
   */
  async function diskFull(zone: CampaignZone, hold: { readonly minMs: number; readonly maxMs: number; readonly until: () => boolean }): Promise<void> {
    const started = performance.now();
    underWay = intoReceiver(zone.name);
    const store = await zone.store();
    const { jsm } = store.substrate;
    const info = await jsm.streams.info("facts-operational");
    const capacity = info.config.max_bytes;
    await jsm.streams.update("facts-operational", { ...info.config, max_bytes: Math.max(info.state.bytes, 1) });
    try {
      // At least minMs, and until a producer was refused (it may be between calls, or retrying another fault's refusal).
      const started = performance.now();
      while (performance.now() - started < hold.minMs || (!hold.until() && performance.now() - started < hold.maxMs)) await pause(50);
    } finally {
      const now = await jsm.streams.info("facts-operational");
      await jsm.streams.update("facts-operational", { ...now.config, max_bytes: capacity });
    }
    record({ kind: "disk_full", target: `${zone.name} facts-operational`, atMs: Date.now(), durationMs: performance.now() - started, unreachable: intoReceiver(zone.name) });
  }

  return { records, underWay: () => underWay, syncKill, serviceKill, natsKill, partition, connectionReset, slowLink, diskFull };
}
