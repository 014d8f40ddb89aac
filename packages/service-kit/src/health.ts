import type { FastifyInstance } from "fastify";

/** What /metrics serves: the deployable's registry (see @bsfg/telemetry createMetrics). */
export interface MetricsEndpoint {
  readonly contentType: string;
  scrape(): Promise<string>;
}

/**
 * /healthz: the process serves. /readyz: it can do its job (JetStream answers, not draining).
 * /metrics (Prometheus text format) when `metrics` is given: only on plain-HTTP probe ports.
 */
export function healthRoutes(ready: () => Promise<boolean>, metrics?: MetricsEndpoint) {
  return async (app: FastifyInstance) => {
    app.get("/healthz", async () => ({ status: "ok" }));
    if (metrics) app.get("/metrics", async (_request, reply) => reply.header("content-type", metrics.contentType).send(await metrics.scrape()));
    app.get("/readyz", async (_request, reply) => {
      const ok = await ready();
      return reply.code(ok ? 200 : 503).send({ status: ok ? "ready" : "not ready" });
    });
  };
}
