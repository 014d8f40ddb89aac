import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { locateNatsServerBinary } from "./nats-binary.js";
import { assertValidDomain } from "./nats-config.js";
import { NatsServer, StartupError, type ClusterPlacement, type NatsClientOptions, type NatsServerHandle } from "./nats-server.js";
import { poll } from "./poll.js";
import { freePort } from "./ports.js";
import { track } from "./registry.js";

export interface NatsClusterOptions {
  /** JetStream domain of the zone the cluster serves, e.g. "enterprise". */
  domain: string;
  /** Number of nodes (JetStream voters), 3 to 5; default 3. */
  nodes?: number;
  /** Cluster name (`cluster.name`); default "<domain>-cluster". */
  name?: string;
  /** Extra lines appended verbatim to every node's config file. */
  extraConfig?: string;
  /** `sync_interval` of every node: "always" (default) or a duration such as "2m". */
  syncInterval?: string;
  /** JetStream memory store limit per node; default "1GB". */
  maxMemoryStore?: string | number;
  /**
   * JetStream file store limit per node; default "10GB". A stream with replicas 3 reserves
   * its `max_bytes` on each of the three nodes that hold it, so every node needs room for
   * the sum of the zone's stream capacities.
   */
  maxFileStore?: string | number;
  /** Every node lets in only this user (clients; routes are the cluster's own); anonymous connections are refused. */
  auth?: { user: string; password: string };
  /** Every node takes only TLS clients, with this certificate (PEM). */
  tls?: { certPem: string; keyPem: string; caPem: string };
}

/** One nats-server of the cluster: a server handle (without dispose: the cluster owns it) plus its place in the cluster. */
export interface NatsClusterNode extends Omit<NatsServerHandle, "dispose" | "restart"> {
  /** `server_name`: what stream info names as `cluster.leader` / `cluster.replicas[].name`. */
  readonly name: string;
  /** Route port on 127.0.0.1 (the other nodes' `cluster.routes` name it). */
  readonly clusterPort: number;
  /**
   * Start again on the same ports and store (stopping first if running); resolves when the
   * node has caught up: /healthz is 200, JetStream answers, and it holds every stream of its
   * running peers up to their last sequence at the time it started.
   */
  restart(): Promise<void>;
}

export interface NatsClusterHandle {
  readonly domain: string;
  /** `cluster.name` of every node. */
  readonly name: string;
  readonly nodes: readonly NatsClusterNode[];
  /** Every node's client URL: what a zone's `nats.servers` lists. */
  readonly urls: string[];
  /** Every node's monitoring URL: what a zone's `nats.monitor` lists. */
  readonly monitorUrls: string[];
  /** What a client needs besides the URLs: the cluster's user and CA, when it has them. */
  readonly clientOptions: NatsClientOptions;
  /** The node with this `server_name`. */
  node(name: string): NatsClusterNode;
  /** The nodes that are running now. */
  running(): NatsClusterNode[];
  /**
   * The `server_name` of a stream's leader (from stream info, asked through any running
   * node); undefined while the stream has no leader. KV buckets are streams `KV_<bucket>`.
   */
  streamLeader(stream: string): Promise<string | undefined>;
  /** The JetStream meta leader's `server_name` (from a node's /jsz). */
  metaLeader(): Promise<string | undefined>;
  /** Resolves once every running node is current (/healthz 200) and JetStream answers. */
  waitUntilHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their directories. Idempotent. */
  dispose(): Promise<void>;
}

const START_ATTEMPTS = 3;
const NODE_NAMES = ["alpha", "beta", "gamma", "delta", "epsilon"];

/**
 * A JetStream cluster of `nodes` nats-servers on loopback, one JetStream domain: the
 * highly available zone's substrate. Every node routes to every other; JetStream's meta
 * group and each replicated stream need a majority of the nodes (2 of 3) to accept writes.
 * Resolves when every node is current and JetStream has a meta leader.
 */
export async function startNatsCluster(opts: NatsClusterOptions): Promise<NatsClusterHandle> {
  assertValidDomain(opts.domain);
  const count = opts.nodes ?? 3;
  // Fewer than three voters cannot lose a node and keep a majority (and nats-server refuses a cluster without routes).
  if (!Number.isInteger(count) || count < 3 || count > NODE_NAMES.length) throw new Error(`a cluster has 3 to ${NODE_NAMES.length} nodes, not ${count}`);
  const binary = locateNatsServerBinary();
  const name = opts.name ?? `${opts.domain}-cluster`;
  for (let attempt = 1; ; attempt++) {
    const placements = await choosePlacements(opts.domain, name, count);
    const servers: NatsServer[] = [];
    for (const placement of placements) {
      const workDir = await mkdtemp(join(tmpdir(), `bsfg-nats-${placement.serverName}-`));
      const server = new NatsServer(binary, workDir, { ...opts, maxFileStore: opts.maxFileStore ?? "10GB", maxMemoryStore: opts.maxMemoryStore ?? "1GB" }, placement);
      track(server);
      servers.push(server);
    }
    const cluster = new NatsCluster(opts.domain, name, servers);
    // All at once: no node is ready before a majority runs and has elected a meta leader.
    const started = await Promise.allSettled(servers.map((s) => s.firstStart()));
    const failed = started.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (failed.length === 0) return cluster;
    await cluster.dispose().catch(() => undefined);
    const addressInUse = failed.some((err) => err instanceof StartupError && err.addressInUse);
    if (!addressInUse || attempt >= START_ATTEMPTS) throw new AggregateError(failed, `nats cluster for domain "${opts.domain}" did not start: ${failed.map((e) => (e instanceof Error ? e.message.split("\n")[0] : String(e))).join("; ")}`);
  }
}

async function choosePlacements(domain: string, clusterName: string, count: number): Promise<ClusterPlacement[]> {
  const taken = new Set<number>();
  const pick = async () => {
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  const ports: Array<{ port: number; monitorPort: number; clusterPort: number }> = [];
  for (let i = 0; i < count; i++) ports.push({ port: await pick(), monitorPort: await pick(), clusterPort: await pick() });
  return ports.map((p, i) => ({
    serverName: `${domain}-${NODE_NAMES[i]}`,
    port: p.port,
    monitorPort: p.monitorPort,
    cluster: { name: clusterName, port: p.clusterPort, routes: ports.filter((_, j) => j !== i).map((o) => o.clusterPort) },
    peerMonitorPorts: ports.filter((_, j) => j !== i).map((o) => o.monitorPort),
  }));
}

class NatsCluster implements NatsClusterHandle {
  private disposing: Promise<void> | undefined;

  constructor(
    readonly domain: string,
    readonly name: string,
    private readonly servers: NatsServer[],
  ) {}

  get nodes(): readonly NatsClusterNode[] {
    return this.servers;
  }

  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  get monitorUrls(): string[] {
    return this.servers.map((s) => s.monitorUrl);
  }

  get clientOptions(): NatsClientOptions {
    return this.servers[0]!.clientOptions;
  }

  node(name: string): NatsClusterNode {
    const found = this.servers.find((s) => s.name === name);
    if (!found) throw new Error(`no node "${name}" in cluster ${this.name} (${this.servers.map((s) => s.name).join(", ")})`);
    return found;
  }

  running(): NatsClusterNode[] {
    return this.servers.filter((s) => s.pid !== undefined);
  }

  async streamLeader(stream: string): Promise<string | undefined> {
    const nc = await connect({ servers: this.running().map((s) => s.url), timeout: 2_000, reconnect: false, ...this.clientOptions });
    try {
      const jsm = await jetstreamManager(nc, { domain: this.domain, timeout: 2_000 });
      return (await jsm.streams.info(stream)).cluster?.leader || undefined;
    } finally {
      await nc.close();
    }
  }

  async metaLeader(): Promise<string | undefined> {
    for (const node of this.running()) {
      try {
        const jsz = (await (await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`, { signal: AbortSignal.timeout(2_000) })).json()) as { meta_cluster?: { leader?: string } };
        if (jsz.meta_cluster?.leader) return jsz.meta_cluster.leader;
      } catch {
        // Try the next node.
      }
    }
    return undefined;
  }

  async waitUntilHealthy(timeoutMs = 60_000): Promise<void> {
    await poll(async () => {
      for (const node of this.running()) {
        const health = await fetch(`http://127.0.0.1:${node.monitorPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
        if (health.status !== 200) throw new Error(`${node.name}: /healthz answered ${health.status}: ${(await health.text()).trim()}`);
      }
      return (await this.metaLeader()) !== undefined;
    }, { timeoutMs, intervalMs: 100, what: `cluster ${this.name} healthy` });
  }

  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      const results = await Promise.allSettled(this.servers.map((s) => s.dispose()));
      const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
      if (failures.length > 0) {
        this.disposing = undefined;
        throw new AggregateError(failures, `${failures.length} node(s) of cluster ${this.name} failed to dispose`);
      }
    })();
    return this.disposing;
  }
}
