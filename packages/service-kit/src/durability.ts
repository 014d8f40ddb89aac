import type { FastifyBaseLogger } from "fastify";
import type { ZoneConfig } from "@bsfg/config";
import type { NotReady } from "./health.js";

/**
 * Whether the zone's nats-servers write to disk the way the zone promises: with
 * `nats.sync: always`, every server must fsync each write before acknowledging it
 * (`sync_interval: always`), or an acknowledged fact can be lost to a power cut.
 */
export interface DurabilityWatch {
  /** Why the zone must not be ready (one line per server), or undefined when it may. */
  problem(): string | undefined;
  /** Reads every server's /varz again now. */
  check(): Promise<string | undefined>;
  close(): void;
}

export interface DurabilityOptions {
  /** How often /varz is read again (a server may be restarted with another configuration). */
  readonly intervalMs?: number;
  /** … and how soon while a server fails the check, so a blip refuses writes only briefly. */
  readonly retryMs?: number;
  readonly timeoutMs?: number;
}

interface Varz {
  readonly server_name?: string;
  readonly jetstream?: { readonly config?: { readonly sync_always?: boolean; readonly sync_interval?: number; readonly domain?: string } };
}

/** Checks at once, then every `intervalMs` (every `retryMs` while a check fails); logs each change of verdict. */
export async function watchDurability(nats: ZoneConfig["nats"], log: Pick<FastifyBaseLogger, "info" | "warn" | "error">, opts: DurabilityOptions = {}): Promise<DurabilityWatch> {
  if (nats.sync === "interval") {
    log.warn({ event: "durability", sync: "interval" }, "nats.sync is interval: an acknowledged fact is on disk only after the server's next flush; a power loss can lose it");
    return { problem: () => undefined, check: async () => undefined, close: () => undefined };
  }
  let problem: string | undefined = "durability not checked yet";
  const check = async () => {
    const problems = (await Promise.all(nats.monitor.map((url) => checkServer(url, nats.domain, opts.timeoutMs ?? 3_000)))).filter((p) => p !== undefined);
    const next = problems.length > 0 ? problems.join("; ") : undefined;
    if (next !== problem) {
      if (next === undefined) log.info({ event: "durability", sync: "always", servers: nats.monitor }, "every nats-server fsyncs each write before acknowledging it");
      else log.error({ event: "durability", sync: "always", problem: next }, `not ready: ${next}`);
    }
    problem = next;
    return problem;
  };
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => void check().finally(schedule), problem === undefined ? opts.intervalMs ?? 30_000 : opts.retryMs ?? 2_000);
    timer.unref();
  };
  await check();
  schedule();
  return {
    problem: () => problem,
    check,
    close: () => {
      closed = true;
      clearTimeout(timer);
    },
  };
}

async function checkServer(monitorUrl: string, domain: string, timeoutMs: number): Promise<string | undefined> {
  const url = new URL("/varz", monitorUrl).toString();
  let varz: Varz;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return `${url} answered HTTP ${response.status}, so the zone cannot tell whether the server fsyncs each write`;
    varz = (await response.json()) as Varz;
  } catch (err) {
    return `cannot read ${url} (${(err as Error).message}), so the zone cannot tell whether the server fsyncs each write`;
  }
  const config = varz.jetstream?.config;
  const server = varz.server_name ? `nats-server ${varz.server_name} (${monitorUrl})` : `the nats-server at ${monitorUrl}`;
  if (config === undefined) return `${server} has no JetStream`;
  if (config.domain !== undefined && config.domain !== domain) return `${server} serves JetStream domain "${config.domain}", not this zone's "${domain}": nats.monitor names the wrong server`;
  if (config.sync_always !== true) {
    const every = config.sync_interval ? ` (it flushes every ${Math.round(config.sync_interval / 1e9)} s)` : "";
    return `${server} does not fsync each write${every} while nats.sync is always: set "sync_interval: always" in its jetstream block, or nats.sync: interval to accept losing acknowledged facts on power loss`;
  }
  return undefined;
}

/**
 * A deployable's readiness: durable as promised (its watch starts once the server's logger
 * exists, so it may not be there yet) and JetStream answering.
 */
export function readiness(store: { ready(): Promise<boolean> }, durability: () => DurabilityWatch | undefined): { notDurable: () => string | undefined; notReady: NotReady } {
  const notDurable = () => {
    const watch = durability();
    return watch === undefined ? "checking how the zone's nats-servers sync" : watch.problem();
  };
  return {
    notDurable,
    notReady: async () => notDurable() ?? (await store.ready() ? undefined : "JetStream does not answer"),
  };
}
