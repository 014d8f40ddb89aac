import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { storageConfigSchema, type StorageConfig } from "@bsfg/storage";
import { zoneConfigSchema, type IdentityPolicy, type PeerConfig } from "./schema.js";

/** One peer link, resolved: where to fetch and confirm, and whom to expect there. */
export interface PeerLink {
  /** "<peer>/<consumer>": the link's name in logs, metrics and its lease. */
  readonly name: string;
  readonly peer: string;
  readonly consumer: string;
  /** The peer's egress endpoints (its replicas, tried in turn). */
  readonly egressUrls: readonly string[];
  /** The peer's ledger endpoints. */
  readonly ledgerUrls: readonly string[];
  /** The identity the peer's server certificate must carry; its policy here bounds what the link may append. */
  readonly peerIdentity: string;
}

/** A zone's validated configuration: storage, transport, policy. */
export interface ZoneConfig {
  readonly zone: string;
  readonly nats: {
    readonly servers: string[];
    readonly domain: string;
    /** "always": an acknowledgement means fsynced; checked against every server's /varz. */
    readonly sync: "always" | "interval";
    /** The servers' monitoring endpoints (/varz). */
    readonly monitor: readonly string[];
  };
  readonly storage: StorageConfig;
  /** PEM contents, read at start-up. */
  readonly tls: {
    readonly ca: string; readonly cert: string; readonly key: string; readonly paths: { ca: string; cert: string; key: string };
    /** Milliseconds between reads of the certificate files for a rotation; 0: only on SIGHUP. */
    readonly reloadCheckMs: number;
  };
  readonly listen: { readonly zone: string; readonly ingest: string; readonly egress: string; readonly ledger: string };
  readonly health: { readonly zone?: string | undefined; readonly ingest?: string | undefined; readonly egress?: string | undefined; readonly ledger?: string | undefined; readonly sync?: string | undefined };
  readonly fetch: { readonly maxLimit: number; readonly maxBytes: number; readonly maxWait: number };
  readonly policy: Readonly<Record<string, IdentityPolicy>>;
  readonly peers: Readonly<Record<string, PeerConfig>>;
  readonly sync: {
    readonly links: readonly PeerLink[];
    readonly pageLimit: number;
    readonly prefetch: number;
    readonly maxWait: number;
    readonly backoff: { readonly initial: number; readonly max: number };
    /** PEM contents of the client certificate toward peers. */
    readonly tls: { readonly cert: string; readonly key: string; readonly paths: { cert: string; key: string } };
    readonly compression: "none" | "gzip";
  };
  readonly shutdownGrace: number;
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

/** Thrown with every problem listed by path, so an operator can fix the file in one go. */
export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    super(`invalid zone configuration (${source}):\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Reads and validates a zone configuration file (YAML); relative paths are relative to the file. */
export function loadZoneConfig(path: string): ZoneConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file: ${(err as Error).message}`]);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    throw new ConfigError(path, [`not valid YAML: ${(err as Error).message}`]);
  }
  return parseZoneConfig(document, { source: path, baseDir: dirname(resolve(path)) });
}

/** Validates a configuration document (already parsed). */
export function parseZoneConfig(document: unknown, opts: { source?: string; baseDir?: string; readFile?: (path: string) => string } = {}): ZoneConfig {
  const source = opts.source ?? "configuration";
  const problems: string[] = [];
  const at = (path: PropertyKey[]) => path.map(String).join(".") || "(root)";

  const parsed = zoneConfigSchema.safeParse(document);
  if (!parsed.success) throw new ConfigError(source, parsed.error.issues.map((i) => `${at(i.path)}: ${i.message}`));
  const cfg = parsed.data;

  // Consumers are bound to identities by the policy alone; the registry gets them from here.
  const consumerInputs = Array.isArray(cfg.storage.consumers) ? (cfg.storage.consumers as Array<Record<string, unknown>>) : [];
  const consumers = consumerInputs.map((c) => {
    if (typeof c !== "object" || c === null) return c;
    if ("identities" in c) problems.push(`storage.consumers: "${String(c.name)}" lists identities; bind consumers to identities in policy.<identity>.consumers instead`);
    return { ...c, identities: Object.entries(cfg.policy).filter(([, p]) => p.consumers.includes(String(c.name))).map(([identity]) => identity) };
  });
  const storage = storageConfigSchema.safeParse({ ...cfg.storage, zone: cfg.zone, domain: cfg.nats.domain ?? cfg.zone, ...(consumerInputs.length ? { consumers } : {}) });
  if (!storage.success) problems.push(...storage.error.issues.map((i) => `storage.${at(i.path)}: ${i.message}`));

  if (storage.success) {
    const s = storage.data;
    if (!s.zones.includes(s.zone)) s.zones = [s.zone, ...s.zones];
    const consumerNames = new Set(s.consumers.map((c) => c.name));
    const buckets = new Set(Object.keys(s.buckets));
    for (const [identity, policy] of Object.entries(cfg.policy)) {
      for (const zone of [...policy.assertFromZones, ...policy.targetZones]) {
        if (zone !== "*" && !s.zones.includes(zone)) problems.push(`policy.${identity}: zone "${zone}" is not in storage.zones (${s.zones.join(", ")})`);
      }
      for (const consumer of policy.consumers) {
        if (!consumerNames.has(consumer)) problems.push(`policy.${identity}.consumers: "${consumer}" is not a consumer in storage.consumers`);
      }
      for (const bucket of [...policy.writeBuckets, ...policy.readBuckets]) {
        if (!buckets.has(bucket)) problems.push(`policy.${identity}: bucket "${bucket}" is not in storage.buckets (${[...buckets].join(", ")})`);
      }
    }
  }

  const links: PeerLink[] = [];
  cfg.sync.links.forEach((link, i) => {
    const peer = cfg.peers[link.peer];
    if (!peer) {
      problems.push(`sync.links.${i}.peer: "${link.peer}" is not in peers (${Object.keys(cfg.peers).join(", ") || "none defined"})`);
      return;
    }
    if (link.peer === cfg.zone) problems.push(`sync.links.${i}.peer: a zone does not pull from itself`);
    const name = `${link.peer}/${link.consumer}`;
    if (links.some((l) => l.name === name)) problems.push(`sync.links.${i}: link ${name} is defined twice`);
    links.push({ name, peer: link.peer, consumer: link.consumer, egressUrls: list((peer.urls?.egress ?? peer.url)!), ledgerUrls: list((peer.urls?.ledger ?? peer.url)!), peerIdentity: peer.identity });
  });
  for (const [zone, peer] of Object.entries(cfg.peers)) {
    const relay = cfg.policy[peer.identity];
    if (links.some((l) => l.peer === zone) && (!relay || relay.assertFromZones.length === 0)) {
      problems.push(`peers.${zone}.identity: "${peer.identity}" needs policy.${peer.identity}.assertFromZones (and targetZones): every fact pulled from ${zone} is checked against them`);
    }
  }

  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const pathOf = (p: string) => resolve(opts.baseDir ?? ".", p);
  const paths = { ca: pathOf(cfg.tls.ca), cert: pathOf(cfg.tls.cert), key: pathOf(cfg.tls.key) };
  const syncPaths = { cert: pathOf(cfg.sync.tls?.cert ?? cfg.tls.cert), key: pathOf(cfg.sync.tls?.key ?? cfg.tls.key) };
  const pem: Record<string, string> = {};
  const read = (label: string, path: string) => {
    try {
      pem[label] = readFile(path);
    } catch (err) {
      problems.push(`${label}: cannot read ${path} (${(err as Error).message})`);
    }
  };
  for (const [name, path] of Object.entries(paths)) read(`tls.${name}`, path);
  if (cfg.sync.tls) for (const [name, path] of Object.entries(syncPaths)) read(`sync.tls.${name}`, path);

  if (problems.length > 0 || !storage.success) throw new ConfigError(source, problems);
  return {
    zone: cfg.zone,
    nats: { servers: cfg.nats.servers, domain: cfg.nats.domain ?? cfg.zone, sync: cfg.nats.sync, monitor: cfg.nats.monitor },
    storage: storage.data,
    tls: { ca: pem["tls.ca"]!, cert: pem["tls.cert"]!, key: pem["tls.key"]!, paths, reloadCheckMs: cfg.tls.reloadCheck === "off" ? 0 : cfg.tls.reloadCheck },
    listen: cfg.listen,
    health: cfg.health,
    fetch: cfg.fetch,
    policy: cfg.policy,
    peers: cfg.peers,
    sync: {
      links,
      pageLimit: cfg.sync.pageLimit,
      prefetch: cfg.sync.prefetch,
      maxWait: cfg.sync.maxWait,
      backoff: cfg.sync.backoff,
      tls: { cert: pem[cfg.sync.tls ? "sync.tls.cert" : "tls.cert"]!, key: pem[cfg.sync.tls ? "sync.tls.key" : "tls.key"]!, paths: syncPaths },
      compression: cfg.sync.compression,
    },
    shutdownGrace: cfg.shutdownGrace,
    logLevel: cfg.logLevel,
  };
}

const list = (endpoints: string | readonly string[]): readonly string[] => (typeof endpoints === "string" ? [endpoints] : endpoints);

/** The configuration as it may be logged: no key material, paths instead of PEMs. */
export function printableConfig(cfg: ZoneConfig): unknown {
  return { ...cfg, tls: { ...cfg.tls.paths, reloadCheckMs: cfg.tls.reloadCheckMs }, sync: { ...cfg.sync, tls: cfg.sync.tls.paths } };
}
