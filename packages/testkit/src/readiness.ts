import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { poll } from "./poll.js";

export interface ReadinessTarget {
  url: string;
  monitorPort: number;
  domain: string;
}

const REQUEST_TIMEOUT_MS = 2_000;

/**
 * Resolves once both the monitoring health check and a real JetStream API call
 * through the domain's prefix succeed. The health endpoint alone is not enough:
 * it can turn green before the client listener accepts connections.
 */
export function waitForJetStream(target: ReadinessTarget, timeoutMs: number, signal: AbortSignal): Promise<true> {
  return poll(() => jetStreamAnswers(target), {
    timeoutMs,
    intervalMs: 50,
    what: `JetStream domain "${target.domain}" at ${target.url}`,
    signal,
  });
}

async function jetStreamAnswers(target: ReadinessTarget): Promise<boolean> {
  const health = await fetch(`http://127.0.0.1:${target.monitorPort}/healthz?js-enabled-only=true`, {
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body = await health.text();
  if (health.status !== 200) throw new Error(`/healthz answered ${health.status}: ${body.trim()}`);

  const nc = await connect({ servers: target.url, timeout: REQUEST_TIMEOUT_MS, reconnect: false });
  try {
    const jsm = await jetstreamManager(nc, { domain: target.domain, timeout: REQUEST_TIMEOUT_MS });
    const info = await jsm.getAccountInfo();
    if (info.domain !== undefined && info.domain !== target.domain) {
      throw new Error(`server reports JetStream domain "${info.domain}", expected "${target.domain}"`);
    }
    return true;
  } finally {
    await nc.close();
  }
}
