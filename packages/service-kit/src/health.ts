import type { FastifyInstance } from "fastify";

/** What /metrics serves: the deployable's registry (see @bsfg/telemetry createMetrics). */
export interface MetricsEndpoint {
  readonly contentType: string;
  scrape(): Promise<string>;
}

/** Why a deployable cannot do its job now, or undefined when it can. */
export type NotReady = () => Promise<string | undefined>;

/**
 * /healthz: the process serves. /readyz: it can do its job (JetStream answers, the servers
 * fsync as configured, not draining); otherwise 503 with the reason.
 * /metrics (Prometheus text format) when `metrics` is given: only on plain-HTTP probe ports.
 */
export function healthRoutes(notReady: NotReady, metrics?: MetricsEndpoint) {
  return async (app: FastifyInstance) => {
    app.get("/healthz", async () => ({ status: "ok" }));
    if (metrics) app.get("/metrics", async (_request, reply) => reply.header("content-type", metrics.contentType).send(await metrics.scrape()));
    app.get("/readyz", async (_request, reply) => {
      const reason = await notReady().catch((err: unknown) => `readiness check failed: ${String(err)}`);
      return reason === undefined ? reply.code(200).send({ status: "ready" }) : reply.code(503).send({ status: "not ready", reason });
    });
  };
}
