import type { AddressInfo } from "node:net";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { ZoneConfig } from "@bsfg/config";
import { healthRoutes, type MetricsEndpoint, type NotReady } from "./health.js";
import { parseListen, urlFor } from "./listen-address.js";
import { probeAccess } from "./probe-access.js";

export interface ProbeServerOptions {
  /** Deployable name for logs, e.g. "bsfg-sync". */
  readonly name: string;
  readonly config: ZoneConfig;
  /** Plain-HTTP "host:port" for /healthz, /readyz and `routes`; none: logging only. */
  readonly listen?: string | undefined;
  /** Why the deployable is not ready, or undefined. */
  readonly notReady: NotReady;
  /** More read-only routes, e.g. a status page. */
  readonly routes?: (app: FastifyInstance) => void;
  readonly logStream?: NodeJS.WritableStream;
  /** Served as /metrics; leave it out when another probe port of the process serves the registry. */
  readonly metrics?: MetricsEndpoint | undefined;
}

export interface ProbeServer {
  readonly url: string | undefined;
  /** The deployable's structured logger (JSON lines, service and zone on each). */
  readonly log: FastifyBaseLogger;
  close(): Promise<void>;
}

/** A deployable without a Connect endpoint (the sync worker): probes, status, and its logger. */
export async function startProbeServer(opts: ProbeServerOptions): Promise<ProbeServer> {
  const logger = { level: opts.config.logLevel, base: { service: opts.name, zone: opts.config.zone }, ...(opts.logStream ? { stream: opts.logStream } : {}) };
  const app = Fastify({ logger, logController: new LogController({ disableRequestLogging: true }) });
  const access = probeAccess(opts.config.health.allowFrom, app.log);
  if (access) app.addHook("onRequest", access);
  await app.register(healthRoutes(opts.notReady, opts.metrics));
  opts.routes?.(app);
  let url: string | undefined;
  if (opts.listen) {
    const { host, port } = parseListen(opts.listen);
    await app.listen({ host, port });
    url = urlFor("http", host, (app.server.address() as AddressInfo).port);
  } else {
    await app.ready();
  }
  return { url, log: app.log, close: () => app.close() };
}
