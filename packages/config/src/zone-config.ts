import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { storageConfigSchema, type StorageConfig } from "@bsfg/storage";
import { zoneConfigSchema, type IdentityPolicy } from "./schema.js";

/** A zone's validated configuration: storage, transport, policy. */
export interface ZoneConfig {
  readonly zone: string;
  readonly nats: { readonly servers: string[]; readonly domain: string };
  readonly storage: StorageConfig;
  /** PEM contents, read at start-up. */
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string; readonly paths: { ca: string; cert: string; key: string } };
  readonly listen: { readonly zone: string; readonly ingest: string; readonly egress: string; readonly ledger: string };
  readonly health: { readonly zone?: string | undefined; readonly ingest?: string | undefined; readonly egress?: string | undefined; readonly ledger?: string | undefined };
  readonly fetch: { readonly maxLimit: number; readonly maxBytes: number; readonly maxWait: number };
  readonly policy: Readonly<Record<string, IdentityPolicy>>;
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

  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const paths = {
    ca: resolve(opts.baseDir ?? ".", cfg.tls.ca),
    cert: resolve(opts.baseDir ?? ".", cfg.tls.cert),
    key: resolve(opts.baseDir ?? ".", cfg.tls.key),
  };
  const pem: Record<string, string> = {};
  for (const [name, path] of Object.entries(paths)) {
    try {
      pem[name] = readFile(path);
    } catch (err) {
      problems.push(`tls.${name}: cannot read ${path} (${(err as Error).message})`);
    }
  }

  if (problems.length > 0 || !storage.success) throw new ConfigError(source, problems);
  return {
    zone: cfg.zone,
    nats: { servers: cfg.nats.servers, domain: cfg.nats.domain ?? cfg.zone },
    storage: storage.data,
    tls: { ca: pem.ca!, cert: pem.cert!, key: pem.key!, paths },
    listen: cfg.listen,
    health: cfg.health,
    fetch: cfg.fetch,
    policy: cfg.policy,
    shutdownGrace: cfg.shutdownGrace,
    logLevel: cfg.logLevel,
  };
}

/** The configuration as it may be logged: no key material, paths instead of PEMs. */
export function printableConfig(cfg: ZoneConfig): unknown {
  return { ...cfg, tls: cfg.tls.paths };
}
