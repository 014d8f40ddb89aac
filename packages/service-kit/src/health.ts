import type { FastifyInstance } from "fastify";

/** /healthz: the process serves. /readyz: it can do its job (JetStream answers, not draining). */
export function healthRoutes(ready: () => Promise<boolean>) {
  return async (app: FastifyInstance) => {
    app.get("/healthz", async () => ({ status: "ok" }));
    app.get("/readyz", async (_request, reply) => {
      const ok = await ready();
      return reply.code(ok ? 200 : 503).send({ status: ok ? "ready" : "not ready" });
    });
  };
}
