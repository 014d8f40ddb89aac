import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { NATS_SERVER_IDENTITY, substrateLogin, type SubstrateLogin } from "./substrate-login.js";
import { join } from "node:path";
import { Writable } from "node:stream";
import { startDeployable, type RunningDeployable } from "@bsfg/boundary";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { createBsfgClient, type BsfgClient, type BsfgClientOptions } from "@bsfg/client";
import { loadZoneConfig, type ZoneConfig } from "@bsfg/config";
import { ensureDevPki, type DevPki } from "@bsfg/pki";
import { startSyncDeployable, type LinkStatus, type RunningSync } from "@bsfg/replication";
import { freePort, pollUntil, startNatsCluster, startNatsServer, startTcpProxy, type NatsClusterHandle, type NatsServerHandle, type TcpProxy } from "@bsfg/testkit";
import { createWriteStream, readFileSync } from "node:fs";
import { estateDocuments, type ZoneEndpoints } from "./documents.js";
import { estateIdentities, estateLinks, threeZoneEstate, type EstateTopology } from "./topology.js";

/** The certificate every test zone's nats-server presents (localhost, 127.0.0.1). */

export interface TestEstateOptions {
  /** Scratch directory: PKI and zone files. */
  readonly dir: string;
  readonly topology?: EstateTopology;
  /** A TCP proxy between every receiver and sender, to stall or cut links. */
  readonly proxies?: boolean;
  /** Start a sync worker in each zone's process right away (default true). */
  readonly sync?: boolean;
  /** Each in-process sync replica also serves the zone console over mTLS on a port of its own (`SyncReplica.consoleUrl`). */
  readonly consoles?: boolean;
  /** Merged into every zone's storage section (e.g. stream capacities). */
  readonly storage?: Record<string, unknown>;
  /** More configuration per zone (e.g. sync.pageLimit). */
  readonly extra?: (zone: string) => Record<string, unknown>;
  /** nats-server file store limit per zone (JetStream reserves each stream's max_bytes from it). */
  readonly maxFileStore?: string;
  /**
   * Each zone's nats-server (the HA zone's cluster too) takes only TLS connections that log in as the zone's
   * user (default true, as the generated estates run); false: anonymous and plain, for a
   * benchmark that compares with a raw substrate run the same way.
   */
  readonly substrateAuth?: boolean;
  /** Every zone's `nats.sync`, and its servers' `sync_interval` to match (default "always"). */
  readonly natsSync?: "always" | "interval";
  /**
   * Run one zone highly available: on a JetStream cluster (streams and KV at replicas 3)
   * with replicas of every boundary service and of the sync worker (see `HaZoneOptions`).
   * That zone is then `estate.ha`, not in `estate.zones`.
   */
  readonly ha?: HaZoneOptions;
  /**
   * Topologies with outbound-only zones: reverse-listener slots of each zone that pulls from
   * one (default 2). Each sync replica of that zone started (with the estate or `startSync`)
   * listens on the next free slot; the outbound-only zone dials every slot (`serve.<zone>.urls`),
   * through a proxy of its own per slot with `proxies` (see `reverseProxies`).
   */
  readonly reverseSlots?: number;
  /**
   * Zones run as the all-in-one process (`node <zoneBin> --config <zone>.yaml`: services and
   * sync worker), which a test can kill; they are `estate.childZones`, not in `estate.zones`.
   * Their sync worker runs from the start (`sync: false` does not hold it back).
   */
  readonly childZones?: { readonly zones: readonly string[]; readonly zoneBin: string };
}

export interface HaZoneOptions {
  /** The zone that runs highly available, e.g. "enterprise". */
  readonly zone: string;
  /** Nodes of its JetStream cluster (default 3); streams, KV and object buckets get replicas 3. */
  readonly nodes?: number;
  /** In-process replicas of each boundary service — ingest, egress, ledger (default 2). */
  readonly serviceReplicas?: number;
  /**
   * Sync replicas started with the estate (default 2; 0 to start them yourself with
   * `startSync`). With `syncBin` each runs in a child process (`node <syncBin> --config …`),
   * which a test can kill; without, in this process.
   */
  readonly syncReplicas?: number;
  readonly syncBin?: string;
  /** nats-server file store limit per node; each node holds a replica of every stream. */
  readonly maxFileStore?: string;
}

/** A sync worker replica: in this process or a child process. */
export interface SyncReplica {
  readonly holder: string;
  /** The process it runs in: this one (in-process), or its child's while that runs (else undefined). */
  readonly pid: number | undefined;
  /** Its probe server ("http://127.0.0.1:<port>": /healthz, /readyz, /links, and /metrics unless it reports into the zone's). */
  readonly probeUrl: string | undefined;
  /** Its reverse listener ("https://localhost:<port>", the slot it took), when its zone pulls from an outbound-only zone. */
  readonly reverseUrl: string | undefined;
  /** Its zone console over mTLS ("https://127.0.0.1:<port>"), with `consoles`. */
  readonly consoleUrl?: string | undefined;
  status(): Promise<LinkStatus[]>;
  /** Graceful stop (in-process) or SIGTERM and wait (child). */
  stop(): Promise<void>;
  /** Child replicas only: SIGKILL and wait. */
  kill(): Promise<void>;
  /** Child replicas only: start the process again after it ended; resolves when it is ready. */
  restart(): Promise<void>;
  /** Child replicas only: SIGSTOP (a process that stalls: a long GC pause, a frozen VM). */
  pause(): void;
  /** Child replicas only: SIGCONT after pause(). */
  resume(): void;
  /** Child replicas only: its JSON log lines so far. */
  readonly logLines: Array<Record<string, unknown>>;
  /**
   * Reads its client certificate files now: in this process, resolves with the outcome;
   * a child gets SIGHUP (and logs `tls_reloaded` or `tls_reload_rejected`).
   */
  reloadTls(): Promise<string>;
}

/** One replica of a boundary service of the highly available zone, in this process. */
export interface ServiceReplica {
  readonly role: "ingest" | "egress" | "ledger";
  /** e.g. "enterprise-ingest-2" */
  readonly name: string;
  /** Its mTLS endpoint ("https://localhost:<port>"), the same across restarts. */
  readonly url: string;
  /** Its probe port (/healthz, /readyz, /metrics), the same across restarts. */
  readonly healthUrl: string;
  /** The running deployable; undefined while stopped. */
  readonly deployable: RunningDeployable | undefined;
  /** Graceful stop: drains (new calls get unavailable / shutting_down), then closes. */
  stop(): Promise<void>;
  /** Starts it again on the same ports (with a store connection of its own). */
  start(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * The highly available zone: a JetStream cluster, `serviceReplicas` replicas of ingest,
 * egress and ledger (each with its own store connection listing every node in
 * `nats.servers`) and sync replicas sharing one lease per link.
 */
export interface HaTestZone {
  readonly name: string;
  readonly cluster: NatsClusterHandle;
  readonly configPath: string;
  readonly config: ZoneConfig;
  readonly services: { readonly ingest: ServiceReplica[]; readonly egress: ServiceReplica[]; readonly ledger: ServiceReplica[] };
  /** Every replica's endpoint per service: what a client's `urls` and a peer's `peers.<zone>.urls` list. */
  readonly endpoints: { readonly ingest: string[]; readonly egress: string[]; readonly ledger: string[] };
  readonly syncs: SyncReplica[];
  /** A store connection of the harness's own, for reading the zone's log in tests (no service uses it). */
  readonly store: ZoneStore;
}

export interface TestZone {
  readonly name: string;
  readonly nats: NatsServerHandle;
  readonly configPath: string;
  readonly config: ZoneConfig;
  /** The all-in-one services (ingest, egress, ledger) of the zone, in this process; /metrics on `services.server.healthUrl`. */
  readonly services: RunningDeployable;
  readonly url: string;
  readonly syncs: SyncReplica[];
}

/**
 * A zone run as the all-in-one process (`childZones`): ingest, egress, ledger and the sync
 * worker in a child process of its own, on the same ports across restarts.
 */
export interface ChildTestZone {
  readonly name: string;
  readonly nats: NatsServerHandle;
  readonly configPath: string;
  readonly config: ZoneConfig;
  /** Its mTLS endpoint ("https://localhost:<port>"). */
  readonly url: string;
  /** Its services' probe port: /healthz, /readyz, /metrics (the whole process), /reverse (outbound-only). */
  readonly healthUrl: string;
  /** Its sync worker's probe port: /links. */
  readonly syncUrl: string;
  /** The running process's pid; undefined while it is not running. */
  readonly pid: number | undefined;
  /** Its sync worker's links (GET /links). */
  status(): Promise<LinkStatus[]>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  /** Starts the process again after it ended; resolves when it is ready. */
  restart(): Promise<void>;
  /** SIGSTOP. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Its JSON log lines so far (every start). */
  readonly logLines: Array<Record<string, unknown>>;
  /** A store connection of the harness's own, for reading the zone's log in tests. */
  readonly store: ZoneStore;
}

export interface ClientOptions extends Pick<BsfgClientOptions, "interceptors" | "retry" | "timeoutMs"> {
  /** HA zone: start with this replica of each service (0-based; the lists are rotated), so several clients spread over the replicas. */
  readonly replica?: number;
}

export interface TestEstate {
  /** Every zone but the highly available one. */
  readonly zones: Readonly<Record<string, TestZone>>;
  /** The highly available zone (with `ha`). */
  readonly ha: HaTestZone | undefined;
  /** Zones run as a child process (with `childZones`). */
  readonly childZones: Readonly<Record<string, ChildTestZone>>;
  /** A store connection of `zone` (any zone, the HA one included), for reading its log in tests. */
  store(zone: string): ZoneStore;
  readonly pki: DevPki;
  /** The proxy `receiver` reaches `sender` through (with `proxies: true`). */
  proxy(receiver: string, sender: string): TcpProxy;
  /**
   * The proxies the outbound-only zone `dialer` reaches `receiver`'s reverse listeners
   * through, one per slot (with `proxies: true`): what cuts, stalls or slows the reversed link.
   */
  reverseProxies(receiver: string, dialer: string): TcpProxy[];
  /**
   * A client of `zone` as `identity` (a producer, or a zone's own identity). For the HA
   * zone it lists every replica of each service, so it fails over between them.
   */
  client(zone: string, identity: string, options?: ClientOptions): BsfgClient;
  /** Starts one more sync replica for `zone`; `child` runs `syncBin` in a child process. */
  startSync(zone: string, opts?: { holder?: string; child?: { syncBin: string } }): Promise<SyncReplica>;
  dispose(): Promise<void>;
}

/**
 * A whole estate on this machine: a nats-server per zone, the zone's services in this
 * process, dev PKI, links as configured by the topology. With `ha`, one zone runs on a
 * JetStream cluster with replicas of every service instead (see `HaZoneOptions`).
 */
export async function startTestEstate(opts: TestEstateOptions): Promise<TestEstate> {
  const topology = opts.topology ?? threeZoneEstate;
  const haZone = opts.ha?.zone;
  const natsSync = opts.natsSync ?? "always";
  // What the zones promise and what their servers do, set together.
  const syncInterval = natsSync === "always" ? "always" : "2m";
  if (haZone !== undefined && !topology.zones.includes(haZone)) throw new Error(`ha.zone "${haZone}" is not a zone of the topology (${topology.zones.join(", ")})`);
  // Every single-server zone's nats-server speaks only TLS and lets in only its zone's user, as in
  // the generated estates (docs/security.md, "The substrate"): its certificate from the estate's CA.
  const pki = await ensureDevPki(join(opts.dir, "pki"), { identities: [...estateIdentities(topology), { identity: NATS_SERVER_IDENTITY, usage: "server" }] });
  const natsLogins = new Map<string, SubstrateLogin["zone"]>();
  const nats: Record<string, NatsServerHandle> = {};
  let cluster: NatsClusterHandle | undefined;
  const endpoints: Record<string, ZoneEndpoints> = {};
  const proxies = new Map<string, TcpProxy>();
  const clients: BsfgClient[] = [];
  const zones: Record<string, TestZone> = {};
  let ha: HaTestZone | undefined;
  const haReplicas: HaServiceReplica[] = [];
  const haEndpoints = { ingest: [] as string[], egress: [] as string[], ledger: [] as string[] };
  const disposers: Array<() => Promise<unknown>> = [];
  const childZoneNames = new Set(opts.childZones?.zones ?? []);
  for (const zone of childZoneNames) if (!topology.zones.includes(zone) || zone === haZone) throw new Error(`childZones: "${zone}" is not an ordinary zone of the topology (${topology.zones.join(", ")})`);
  const childZones: Record<string, ChildTestZone> = {};
  // Outbound-only zones dial the zones that pull from them: each of those gets reverse-listener slots.
  const outboundOnly = new Set(topology.outboundOnly ?? []);
  const reverseLinks = estateLinks(topology).filter((l) => outboundOnly.has(l.sender));
  const slots = new Map<string, ReverseSlot[]>();
  const reverseProxies = new Map<string, TcpProxy[]>();
  const tls = (identity: string) => {
    const files = pki.files[identity];
    if (!files) throw new Error(`no certificate for ${identity}`);
    return { ca: readFileSync(pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key) };
  };

  const dispose = async () => {
    for (const client of clients.splice(0)) client.close();
    for (const zone of [...Object.values(zones), ...(ha ? [ha] : [])]) await Promise.allSettled(zone.syncs.splice(0).map((s) => s.stop()));
    await Promise.allSettled(Object.values(childZones).map((z) => z.stop()));
    await Promise.allSettled([...Object.values(zones).map((z) => z.services.stop()), ...haReplicas.map((r) => r.stop())]);
    await ha?.store.close().catch(() => undefined);
    await Promise.allSettled(Object.values(childZones).map((z) => z.store.close()));
    await Promise.allSettled([...proxies.values(), ...[...reverseProxies.values()].flat()].map((p) => p.close()));
    await Promise.allSettled([...Object.values(nats).map((n) => n.dispose()), ...(cluster ? [cluster.dispose()] : [])]);
    await Promise.allSettled(disposers.map((d) => d()));
  };

  /** The zone's nats-server(s) take only TLS clients that log in as the zone's user (unless substrateAuth is false). */
  const closedSubstrate = async (zone: string) => {
    if (!(opts.substrateAuth ?? true)) return {};
    const login = await substrateLogin(pki, opts.dir, zone);
    natsLogins.set(zone, login.zone);
    return login.server;
  };

  try {
    for (const zone of topology.zones) {
      if (zone === haZone) {
        cluster = await startNatsCluster({ domain: zone, nodes: opts.ha!.nodes ?? 3, maxFileStore: opts.ha!.maxFileStore ?? opts.maxFileStore ?? "4GB", syncInterval, ...await closedSubstrate(zone) });
        const replicas = opts.ha!.serviceReplicas ?? 2;
        for (const role of ["ingest", "egress", "ledger"] as const) {
          for (let i = 1; i <= replicas; i++) {
            const port = await freePort();
            haReplicas.push(new HaServiceReplica(role, `${zone}-${role}-${i}`, `127.0.0.1:${port}`, `127.0.0.1:${await freePort()}`));
            haEndpoints[role].push(`https://localhost:${port}`);
          }
        }
        const first = (role: string) => haReplicas.find((r) => r.role === role)!;
        endpoints[zone] = {
          nats: cluster.urls,
          natsMonitor: cluster.monitorUrls,
          // The replicas' own addresses are passed to each at start; the document names the first ones.
          listen: { zone: first("ingest").listen, ingest: first("ingest").listen, egress: first("egress").listen, ledger: first("ledger").listen },
          health: { zone: first("ingest").health, ingest: first("ingest").health, egress: first("egress").health, ledger: first("ledger").health, sync: "127.0.0.1:0" },
        };
        continue;
      }
      nats[zone] = await startNatsServer({ domain: zone, maxFileStore: opts.maxFileStore ?? "4GB", syncInterval, ...await closedSubstrate(zone) });
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      endpoints[zone] = {
        nats: nats[zone].url,
        natsMonitor: nats[zone].monitorUrl,
        // The all-in-one service serves every verb; the split addresses are not started.
        listen: { zone: address, ingest: address, egress: address, ledger: address },
        // A child zone's sync worker serves /links on a port known in advance.
        health: { zone: `127.0.0.1:${await freePort()}`, ingest: address, egress: address, ledger: address, sync: childZoneNames.has(zone) ? `127.0.0.1:${await freePort()}` : "127.0.0.1:0" },
      };
    }
    for (const receiver of new Set(reverseLinks.map((l) => l.receiver))) {
      const zoneSlots: ReverseSlot[] = [];
      for (let i = 0; i < (opts.reverseSlots ?? 2); i++) zoneSlots.push({ port: await freePort(), holder: undefined });
      if (zoneSlots.length === 0) throw new Error(`reverseSlots must be at least 1: ${receiver} pulls from an outbound-only zone`);
      slots.set(receiver, zoneSlots);
      // The document names the first slot; each replica is given its own (see startSync).
      endpoints[receiver] = { ...endpoints[receiver]!, listen: { ...endpoints[receiver]!.listen, reverse: `127.0.0.1:${zoneSlots[0]!.port}` } };
      for (const dialer of new Set(reverseLinks.filter((l) => l.receiver === receiver).map((l) => l.sender))) {
        if (opts.proxies) reverseProxies.set(`${receiver}<-${dialer}`, await Promise.all(zoneSlots.map((slot) => startTcpProxy({ targetPort: slot.port }))));
      }
    }
    for (const receiver of topology.zones) {
      for (const sender of topology.zones) {
        // The HA zone's replicas are reached directly (a proxy per replica is not built); an
        // outbound-only zone is reached by no one (it dials: see reverseProxies).
        if (!opts.proxies || receiver === sender || sender === haZone || outboundOnly.has(sender)) continue;
        const target = Number(endpoints[sender]!.listen.zone.split(":")[1]);
        proxies.set(`${receiver}<-${sender}`, await startTcpProxy({ targetPort: target }));
      }
    }
    const peerUrl = (receiver: string, sender: string) => {
      if (sender === haZone) return { egress: haEndpoints.egress, ledger: haEndpoints.ledger };
      const proxy = proxies.get(`${receiver}<-${sender}`);
      return `https://localhost:${proxy ? proxy.port : endpoints[sender]!.listen.zone.split(":")[1]}`;
    };
    const reverseUrls = (receiver: string, dialer: string) => {
      const through = reverseProxies.get(`${receiver}<-${dialer}`);
      return (slots.get(receiver) ?? []).map((slot, i) => `https://localhost:${through ? through[i]!.port : slot.port}`);
    };
    const documents = estateDocuments({
      topology, endpoints, peerUrl, reverseUrls, pki: { caCert: pki.caCert, files: pki.files }, natsSync,
      natsLogin: (zone) => natsLogins.get(zone),
      // JetStream reserves each stream's max_bytes from the file store limit.
      storage: { streams: { operational: { maxBytes: "1GiB" }, audit: { maxBytes: "128MiB" }, documents: { maxBytes: "512MiB" } }, ...opts.storage },
      extra: (zone) => ({ shutdownGrace: "3s", logLevel: process.env.BSFG_TEST_LOG_LEVEL ?? "warn", ...opts.extra?.(zone) }),
    });
    for (const zone of topology.zones) {
      const doc = documents[zone]!;
      if (zone === haZone) doc.storage = { ...(doc.storage as object), replicas: 3 };
      if (childZoneNames.has(zone)) {
        doc.logLevel = "info";
        // A child zone that pulls from an outbound-only zone listens on a slot for good.
        const slot = slots.get(zone)?.[0];
        if (slot) slot.holder = `${zone}-zone`;
      }
      const configPath = join(opts.dir, `${zone}.yaml`);
      await writeFile(configPath, JSON.stringify(doc, null, 2));
      const config = loadZoneConfig(configPath);
      if (childZoneNames.has(zone)) {
        childZones[zone] = await startChildZone({ name: zone, nats: nats[zone]!, configPath, config, zoneBin: opts.childZones!.zoneBin });
        continue;
      }
      if (zone === haZone) {
        // One after another: the first creates the zone's streams, the others find them.
        for (const replica of haReplicas) await replica.startWith(config);
        const store = await openZoneStore(config.storage, { servers: config.nats.servers, auth: config.nats.auth, tls: config.nats.tls, name: "bsfg-test-reader", durability: config.nats.sync });
        const byRole = (role: ServiceReplica["role"]) => haReplicas.filter((r) => r.role === role);
        ha = { name: zone, cluster: cluster!, configPath, config, services: { ingest: byRole("ingest"), egress: byRole("egress"), ledger: byRole("ledger") }, endpoints: haEndpoints, syncs: [], store };
        continue;
      }
      const services = await startDeployable("zone", config, { logStream: sink(`${zone}-zone`) });
      zones[zone] = { name: zone, nats: nats[zone]!, configPath, config, services, url: services.server.url.replace("127.0.0.1", "localhost"), syncs: [] };
    }
  } catch (err) {
    await dispose();
    throw err;
  }

  const estate: TestEstate = {
    zones,
    ha,
    childZones,
    pki,
    store(zone) {
      if (zone === haZone) return ha!.store;
      if (childZones[zone]) return childZones[zone].store;
      const found = zones[zone];
      if (!found) throw new Error(`no zone ${zone}`);
      return found.services.store;
    },
    proxy(receiver, sender) {
      const proxy = proxies.get(`${receiver}<-${sender}`);
      if (!proxy && outboundOnly.has(sender)) throw new Error(`no proxy ${receiver} <- ${sender}: ${sender} is outbound-only and dials ${receiver} (see reverseProxies)`);
      if (!proxy) throw new Error(`no proxy ${receiver} <- ${sender} (start the estate with proxies: true; the HA zone has none)`);
      return proxy;
    },
    reverseProxies(receiver, dialer) {
      const found = reverseProxies.get(`${receiver}<-${dialer}`);
      if (!found) throw new Error(`no reverse proxies ${receiver} <- ${dialer} (start the estate with proxies: true; ${dialer} must be outbound-only and pulled from by ${receiver})`);
      return [...found];
    },
    client(zone, identity, { replica = 0, ...options } = {}) {
      const rotated = (list: string[]) => [...list.slice(replica % list.length), ...list.slice(0, replica % list.length)];
      const where = zone === haZone
        ? { urls: { ingest: rotated(haEndpoints.ingest), egress: rotated(haEndpoints.egress), ledger: rotated(haEndpoints.ledger) } }
        : { url: (zones[zone] ?? childZones[zone])!.url };
      const client = createBsfgClient({ ...where, tls: tls(identity), ...options });
      clients.push(client);
      return client;
    },
    async startSync(zoneName, { holder, child } = {}) {
      if (childZones[zoneName]) throw new Error(`${zoneName} runs as a child process with its own sync worker`);
      const zone: SyncHost = zoneName === haZone ? ha! : zones[zoneName]!;
      const name = holder ?? `${zoneName}-sync-${zone.syncs.length + 1}`;
      // The first in-process replica of an all-in-one zone reports into the zone's metrics, as in the all-in-one process.
      const sharedMetrics = zoneName !== haZone && zone.syncs.length === 0 ? zones[zoneName]!.services.metrics : undefined;
      const slot = claimSlot(slots.get(zoneName), zoneName, name);
      try {
        const replica = child ? await childSync(zone, name, child.syncBin, opts.dir, slot) : await inProcessSync(zone, name, sharedMetrics, slot, opts.consoles === true);
        zone.syncs.push(replica);
        return replica;
      } catch (err) {
        slot?.release();
        throw err;
      }
    },
    dispose,
  };
  try {
    if (opts.sync !== false) for (const zone of topology.zones) if (zone !== haZone && !childZoneNames.has(zone)) await estate.startSync(zone);
    if (haZone !== undefined) {
      const syncBin = opts.ha!.syncBin;
      for (let i = 0; i < (opts.ha!.syncReplicas ?? 2); i++) await estate.startSync(haZone, syncBin ? { child: { syncBin } } : {});
    }
  } catch (err) {
    await dispose();
    throw err;
  }
  return estate;
}

/** A reverse-listener port of a zone that pulls from an outbound-only zone, and the replica listening on it. */
interface ReverseSlot {
  readonly port: number;
  holder: string | undefined;
}

/** The slot a sync replica listens on: its address, and how it gives it back (stop) or takes it again (restart). */
interface ClaimedSlot {
  readonly listen: string;
  readonly url: string;
  release(): void;
  reclaim(): void;
}

/** The next free slot of `zone` for `holder`, or undefined when the zone has none (no outbound-only peer). */
function claimSlot(zoneSlots: ReverseSlot[] | undefined, zone: string, holder: string): ClaimedSlot | undefined {
  if (!zoneSlots) return undefined;
  const slot = zoneSlots.find((s) => s.holder === undefined);
  if (!slot) throw new Error(`${zone}: every reverse-listener slot is taken (${zoneSlots.map((s) => `${s.port}: ${s.holder}`).join(", ")}); start the estate with more reverseSlots`);
  slot.holder = holder;
  return {
    listen: `127.0.0.1:${slot.port}`,
    url: `https://localhost:${slot.port}`,
    release() {
      if (slot.holder === holder) slot.holder = undefined;
    },
    reclaim() {
      if (slot.holder !== undefined && slot.holder !== holder) throw new Error(`${holder}: its reverse-listener slot ${slot.port} went to ${slot.holder} while it was stopped`);
      slot.holder = holder;
    },
  };
}

/** What a sync replica needs of its zone. */
interface SyncHost {
  readonly name: string;
  readonly configPath: string;
  readonly config: ZoneConfig;
  readonly syncs: SyncReplica[];
}

class HaServiceReplica implements ServiceReplica {
  deployable: RunningDeployable | undefined;
  private config: ZoneConfig | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly role: ServiceReplica["role"],
    readonly name: string,
    readonly listen: string,
    readonly health: string,
  ) {}

  get url(): string {
    return `https://localhost:${this.listen.split(":")[1]}`;
  }

  get healthUrl(): string {
    return `http://${this.health}`;
  }

  startWith(config: ZoneConfig): Promise<void> {
    this.config = config;
    return this.start();
  }

  start(): Promise<void> {
    return this.serialize(async () => {
      if (this.deployable) return;
      if (!this.config) throw new Error(`${this.name} has no configuration yet`);
      this.deployable = await startDeployable(this.role, this.config, { listen: this.listen, healthListen: this.health, logStream: sink(this.name) });
    });
  }

  stop(): Promise<void> {
    return this.serialize(async () => {
      const running = this.deployable;
      this.deployable = undefined;
      await running?.stop();
    });
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private serialize(op: () => Promise<void>): Promise<void> {
    const result = this.queue.then(op);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

async function inProcessSync(zone: SyncHost, holder: string, sharedMetrics: RunningDeployable["metrics"] | undefined, slot: ClaimedSlot | undefined, withConsole = false): Promise<SyncReplica> {
  const running: RunningSync = await startSyncDeployable(zone.config, {
    holder, logStream: sink(holder), healthListen: "127.0.0.1:0", ...(sharedMetrics ? { metrics: sharedMetrics } : {}), ...(slot ? { reverseListen: slot.listen } : {}),
    ...(withConsole ? { consoleListen: "127.0.0.1:0" } : {}),
  });
  return {
    holder,
    pid: process.pid,
    probeUrl: running.probeUrl,
    reverseUrl: slot?.url,
    consoleUrl: running.consoleUrl,
    status: async () => running.worker.status(),
    async stop() {
      await running.stop();
      slot?.release();
    },
    kill: () => Promise.reject(new Error("an in-process replica cannot be killed; start it with child")),
    pause: () => {
      throw new Error("an in-process replica cannot be paused; start it with child");
    },
    resume: () => {
      throw new Error("an in-process replica cannot be paused; start it with child");
    },
    restart: () => Promise.reject(new Error("an in-process replica cannot be restarted; start another")),
    logLines: [],
    reloadTls: () => running.reloadTls(),
  };
}

/** A sync replica as its own process (`node <syncBin> --config <file>`), with its own probe port. */
async function childSync(zone: SyncHost, holder: string, syncBin: string, dir: string, slot: ClaimedSlot | undefined): Promise<SyncReplica> {
  const probePort = await freePort();
  const doc = JSON.parse(readFileSync(zone.configPath, "utf8")) as Record<string, Record<string, unknown>>;
  doc.health = { ...doc.health, sync: `127.0.0.1:${probePort}` };
  if (slot) doc.listen = { ...doc.listen, reverse: slot.listen };
  doc.logLevel = "info" as never;
  const configPath = join(dir, `${zone.name}-${holder}.yaml`);
  await writeFile(configPath, JSON.stringify(doc, null, 2));
  const url = `http://127.0.0.1:${probePort}`;
  const child = managedChild(holder, [syncBin, "--config", configPath], async () => (await fetch(`${url}/readyz`)).ok);
  await child.startReady();
  return {
    holder,
    get pid() {
      return child.pid();
    },
    probeUrl: url,
    reverseUrl: slot?.url,
    status: async () => ((await (await fetch(`${url}/links`)).json()) as { links: LinkStatus[] }).links,
    async stop() {
      await child.signal("SIGTERM");
      slot?.release();
    },
    kill: () => child.signal("SIGKILL"),
    async restart() {
      slot?.reclaim();
      await child.startReady();
    },
    pause: () => child.send("SIGSTOP"),
    resume: () => child.send("SIGCONT"),
    logLines: child.logLines,
    async reloadTls() {
      child.send("SIGHUP");
      return "signalled";
    },
  };
}

/** The all-in-one process of a zone (`node <zoneBin> --config <zone>.yaml`), its own store connection for reading. */
async function startChildZone(zone: { name: string; nats: NatsServerHandle; configPath: string; config: ZoneConfig; zoneBin: string }): Promise<ChildTestZone> {
  const { config } = zone;
  const healthUrl = `http://${config.health.zone}`;
  const syncUrl = `http://${config.health.sync}`;
  const ready = async () => (await fetch(`${healthUrl}/readyz`)).ok && (await fetch(`${syncUrl}/readyz`)).ok;
  const child = managedChild(`${zone.name}-zone`, [zone.zoneBin, "--config", zone.configPath], ready, 30_000);
  await child.startReady();
  let store: ZoneStore;
  try {
    store = await openZoneStore(config.storage, { servers: config.nats.servers, auth: config.nats.auth, tls: config.nats.tls, name: "bsfg-test-reader", durability: config.nats.sync });
  } catch (err) {
    await child.signal("SIGKILL");
    throw err;
  }
  return {
    name: zone.name,
    nats: zone.nats,
    configPath: zone.configPath,
    config,
    url: `https://localhost:${config.listen.zone.split(":").at(-1)}`,
    healthUrl,
    syncUrl,
    get pid() {
      return child.pid();
    },
    status: async () => ((await (await fetch(`${syncUrl}/links`)).json()) as { links: LinkStatus[] }).links,
    // Its shutdown grace is seconds; one that hangs is killed.
    stop: () => child.signal("SIGTERM", 20_000),
    kill: () => child.signal("SIGKILL"),
    restart: () => child.startReady(),
    pause: () => child.send("SIGSTOP"),
    resume: () => child.send("SIGCONT"),
    logLines: child.logLines,
    store,
  };
}

/** A child process of the harness: its JSON log lines, started until ready, signalled and awaited. */
interface ManagedChild {
  readonly logLines: Array<Record<string, unknown>>;
  /** The running process's pid; undefined before it started and after it ended. */
  pid(): number | undefined;
  /** Starts the process (after it ended) and resolves when `ready` says so; rejects if it ends first. */
  startReady(): Promise<void>;
  /** Sends `signal` if it runs (and SIGCONT, should it be paused) and waits until it ended (after `killAfterMs`, SIGKILL). */
  signal(signal: NodeJS.Signals, killAfterMs?: number): Promise<void>;
  /** Sends `signal` if it runs, without waiting. */
  send(signal: NodeJS.Signals): void;
}

function managedChild(name: string, args: readonly string[], ready: () => Promise<boolean>, readyTimeoutMs = 20_000): ManagedChild {
  const logLines: Array<Record<string, unknown>> = [];
  const logFile = process.env.BSFG_TEST_LOG_DIR ? createWriteStream(join(process.env.BSFG_TEST_LOG_DIR, `${name}.log`), { flags: "a" }) : undefined;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const start = () => {
    if (running()) throw new Error(`${name} is running already`);
    const started = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let buffered = "";
    started.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          logLines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          logLines.push({ stdout: line });
        }
      }
      if (logFile) logFile.write(lines.map((l) => `${l}\n`).join(""));
    });
    started.stderr!.on("data", (chunk: Buffer) => logLines.push({ stderr: chunk.toString("utf8") }));
    exited = new Promise((resolve) => started.once("exit", () => resolve()));
    child = started;
  };
  return {
    logLines,
    pid: () => (running() ? child!.pid : undefined),
    async startReady() {
      start();
      let isReady = false;
      const endedFirst = exited.then(() => {
        if (!isReady) throw new Error(`${name} ended before it was ready: ${logLines.filter((l) => l.stderr !== undefined || Number(l.level) >= 50).slice(-5).map((l) => JSON.stringify(l)).join(" | ")}`);
      });
      endedFirst.catch(() => undefined);
      await Promise.race([pollUntil(ready, { timeoutMs: readyTimeoutMs, what: `${name} ready` }), endedFirst]);
      isReady = true;
    },
    async signal(sig, killAfterMs) {
      if (running()) child!.kill(sig);
      // A paused process handles SIGTERM only once it runs again.
      if (running() && sig !== "SIGKILL") child!.kill("SIGCONT");
      const timer = killAfterMs === undefined ? undefined : setTimeout(() => {
        if (running()) child!.kill("SIGKILL");
      }, killAfterMs);
      await exited;
      clearTimeout(timer);
    },
    send(sig) {
      if (running()) child!.kill(sig);
    },
  };
}

/**
 * Service logs go nowhere in tests unless a test collects them itself, or BSFG_TEST_LOG_DIR
 * names a folder: then each service appends its JSON lines to `<name>.log` there (for
 * finding out why a run failed).
 */
function sink(name?: string): Writable {
  const dir = process.env.BSFG_TEST_LOG_DIR;
  if (dir && name) return createWriteStream(join(dir, `${name}.log`), { flags: "a" });
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}
