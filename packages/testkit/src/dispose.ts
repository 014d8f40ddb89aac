import { disposeAllNatsServers } from "./nats-server.js";
import { disposeAllProxies } from "./tcp-proxy.js";

/**
 * Dispose everything this process started through the testkit (for afterAll hooks):
 * proxies first, so clients lose their links before the servers go away, then servers.
 * Every part runs even if an earlier one fails; failures are reported together.
 */
export async function disposeAll(): Promise<void> {
  const failures: unknown[] = [];
  for (const dispose of [disposeAllProxies, disposeAllNatsServers]) {
    try {
      await dispose();
    } catch (err) {
      failures.push(...(err instanceof AggregateError ? err.errors : [err]));
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `${failures.length} testkit resource(s) failed to dispose`);
}
