import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { storageConfigSchema, type StorageConfig } from "@bsfg/storage";
import { zoneConfigSchema, type IdentityPolicy, type PeerConfig, type ServedPeerConfig } from "./schema.js";

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
  /** The identity the peer's certificate must carry; its policy here bounds what the link may append. */
  readonly peerIdentity: string;
  /** "outbound": this zone connects to the peer; "inbound": the peer dials this zone's reverse listener. */
  readonly dial: "outbound" | "inbound";
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
    /** User and password the deployables log in with (the password read from its file). */
    readonly auth?: { readonly user: string; readonly pass: string } | undefined;
    /** TLS to the servers, PEM contents. */
    readonly tls?: { readonly ca: string; readonly cert?: string | undefined; readonly key?: string | undefined } | undefined;
  };
  readonly storage: StorageConfig;
  /** PEM contents, read at start-up. */
  readonly tls: {
    readonly ca: string; readonly cert: string; readonly key: string; readonly paths: { ca: string; cert: string; key: string };
    /** Milliseconds between reads of the certificate files for a rotation; 0: only on SIGHUP. */
    readonly reloadCheckMs: number;
  };
  readonly listen: { readonly zone: string; readonly ingest: string; readonly egress: string; readonly ledger: string; readonly reverse?: string | undefined; readonly console?: string | undefined };
  readonly health: {
    readonly zone?: string | undefined; readonly ingest?: string | undefined; readonly egress?: string | undefined; readonly ledger?: string | undefined; readonly sync?: string | undefined;
    readonly allowFrom?: readonly string[] | undefined;
  };
  readonly fetch: { readonly maxLimit: number; readonly maxBytes: number; readonly maxWait: number };
  readonly connections: { readonly perIdentity: number };
  readonly policy: Readonly<Record<string, IdentityPolicy>>;
  readonly peers: Readonly<Record<string, PeerConfig>>;
  /** Peers this zone dials and serves over those connections (outbound-only). */
  readonly serve: Readonly<Record<string, ServedPeerConfig>>;
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
    // With dial: inbound the calls go over the connections the peer dialed in (see @bsfg/reverse).
    const inbound = peer.dial === "inbound";
    links.push({
      name, peer: link.peer, consumer: link.consumer, peerIdentity: peer.identity, dial: peer.dial,
      egressUrls: inbound ? [`https://egress.${link.peer}.reverse`] : list((peer.urls?.egress ?? peer.url)!),
      ledgerUrls: inbound ? [`https://ledger.${link.peer}.reverse`] : list((peer.urls?.ledger ?? peer.url)!),
    });
  });
  // A link is either dialed or listened, never both.
  for (const [zone, peer] of Object.entries(cfg.peers)) {
    const endpoints = peer.url !== undefined || peer.urls !== undefined;
    if (peer.dial === "inbound" && endpoints) problems.push(`peers.${zone}: the link from ${zone} is dial: inbound (${zone} dials this zone), so it takes no url or urls: remove them, or set dial: outbound to connect to ${zone}`);
    if (peer.dial === "outbound" && !(peer.url !== undefined || (peer.urls?.egress !== undefined && peer.urls?.ledger !== undefined))) problems.push(`peers.${zone}: give url, or both urls.egress and urls.ledger (or dial: inbound if ${zone} dials this zone)`);
    if (peer.dial === "inbound" && cfg.listen.reverse === undefined) problems.push(`peers.${zone}: dial: inbound needs listen.reverse, the address where ${zone} dials this zone's sync worker (e.g. "0.0.0.0:8447")`);
  }
  const served = Object.keys(cfg.serve);
  for (const zone of served) {
    if (zone === cfg.zone) problems.push(`serve.${zone}: a zone does not serve itself`);
    if (!cfg.policy[cfg.serve[zone]!.identity]) problems.push(`serve.${zone}.identity: "${cfg.serve[zone]!.identity}" has no policy here: give policy.${cfg.serve[zone]!.identity}.consumers (what ${zone} may fetch over the connections this zone dials)`);
  }
  if (served.length > 0) {
    // Outbound-only: egress and ledger, which only peers call, bind loopback (local tools only). The
    // all-in-one also serves the zone's producers, so its address is the operator's: the firewall's.
    for (const role of ["egress", "ledger"] as const) {
      if (!isLoopback(cfg.listen[role])) problems.push(`listen.${role}: ${cfg.listen[role]} is reachable from outside, but this zone serves ${served.join(", ")} outbound-only (serve.*.dial: outbound): bind it to 127.0.0.1, or remove serve.${served[0]} and let ${served[0]} connect in (a link is either dialed or listened, never both)`);
    }
  }
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
  if (cfg.nats.auth) {
    read("nats.auth.passwordFile", pathOf(cfg.nats.auth.passwordFile));
    if (pem["nats.auth.passwordFile"]?.trim() === "") problems.push(`nats.auth.passwordFile: ${pathOf(cfg.nats.auth.passwordFile)} is empty`);
  }
  if (cfg.nats.tls) for (const name of ["ca", "cert", "key"] as const) if (cfg.nats.tls[name]) read(`nats.tls.${name}`, pathOf(cfg.nats.tls[name]!));
  if (cfg.sync.tls) for (const [name, path] of Object.entries(syncPaths)) read(`sync.tls.${name}`, path);

  if (problems.length > 0 || !storage.success) throw new ConfigError(source, problems);
  return {
    zone: cfg.zone,
    nats: {
      servers: cfg.nats.servers, domain: cfg.nats.domain ?? cfg.zone, sync: cfg.nats.sync, monitor: cfg.nats.monitor,
      auth: cfg.nats.auth && { user: cfg.nats.auth.user, pass: pem["nats.auth.passwordFile"]!.replace(/\r?\n$/, "") },
      tls: cfg.nats.tls && { ca: pem["nats.tls.ca"]!, cert: pem["nats.tls.cert"], key: pem["nats.tls.key"] },
    },
    storage: storage.data,
    tls: { ca: pem["tls.ca"]!, cert: pem["tls.cert"]!, key: pem["tls.key"]!, paths, reloadCheckMs: cfg.tls.reloadCheck === "off" ? 0 : cfg.tls.reloadCheck },
    listen: cfg.listen,
    health: cfg.health,
    fetch: cfg.fetch,
    connections: cfg.connections,
    policy: cfg.policy,
    peers: cfg.peers,
    serve: cfg.serve,
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

/** "127.0.0.1:8445", "localhost:8445", "[::1]:8445": reachable from this host only. */
function isLoopback(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(":"));
  return host === "localhost" || host === "[::1]" || /^127\./.test(host);
}

/** The configuration as it may be logged: no key material, paths instead of PEMs. */
export function printableConfig(cfg: ZoneConfig): unknown {
  return { ...cfg, tls: { ...cfg.tls.paths, reloadCheckMs: cfg.tls.reloadCheckMs }, sync: { ...cfg.sync, tls: cfg.sync.tls.paths } };
}
