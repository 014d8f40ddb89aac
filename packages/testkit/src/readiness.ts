import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { poll } from "./poll.js";

export interface ReadinessTarget {
  url: string;
  monitorPort: number;
  domain: string;
  /** Credentials and CA of a server that requires them. */
  client?: { user?: string; pass?: string; tls?: { ca: string } };
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

/**
 * A node of a JetStream cluster: JetStream answers through it (so the cluster has a meta
 * leader), its /healthz is 200, and it holds every stream it is a replica of, at least up to
 * the last sequence its running peers had when it started. nats-server 2.9's /healthz alone
 * turns 200 before a restarted node has caught up (seen: 10 of 11 messages), so the streams'
 * heights are compared too. A restarted node is therefore ready only after catching up.
 */
export function waitForClusterNode(target: ReadinessTarget & { serverName: string }, peerMonitorPorts: readonly number[], timeoutMs: number, signal: AbortSignal): Promise<true> {
  let behind: Map<string, StreamHeight> | undefined;
  return poll(async () => {
    behind ??= await streamHeights(peerMonitorPorts);
    const health = await fetch(`http://127.0.0.1:${target.monitorPort}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const body = await health.text();
    if (health.status !== 200) throw new Error(`/healthz answered ${health.status}: ${body.trim()}`);
    const own = await streamHeights([target.monitorPort]);
    for (const [stream, { lastSeq, peers }] of behind) {
      if (!peers.has(target.serverName)) continue;
      const ownSeq = own.get(stream)?.lastSeq;
      if ((ownSeq ?? -1) < lastSeq) throw new Error(`stream ${stream} at ${ownSeq ?? "(absent)"} of ${lastSeq}`);
    }
    return jetStreamAnswers(target);
  }, { timeoutMs, intervalMs: 100, what: `cluster node of JetStream domain "${target.domain}" at ${target.url}`, signal });
}

interface StreamHeight {
  readonly lastSeq: number;
  /** The servers holding a replica (leader included), as the answering node sees them. */
  readonly peers: Set<string>;
}

/** Each stream's highest last sequence on the nodes behind these monitor ports (nodes that do not answer are skipped). */
async function streamHeights(monitorPorts: readonly number[]): Promise<Map<string, StreamHeight>> {
  const heights = new Map<string, StreamHeight>();
  await Promise.all(monitorPorts.map(async (port) => {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/jsz?streams=true`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      type Detail = { name: string; state: { last_seq: number }; cluster?: { leader?: string; replicas?: Array<{ name: string }> } };
      const jsz = (await res.json()) as { account_details?: Array<{ stream_detail?: Detail[] }> };
      for (const account of jsz.account_details ?? []) {
        for (const stream of account.stream_detail ?? []) {
          const known = heights.get(stream.name);
          const peers = known?.peers ?? new Set<string>();
          for (const name of [stream.cluster?.leader, ...(stream.cluster?.replicas ?? []).map((r) => r.name)]) if (name) peers.add(name);
          heights.set(stream.name, { lastSeq: Math.max(known?.lastSeq ?? 0, stream.state.last_seq), peers });
        }
      }
    } catch (err) {
      // A stopped peer (nothing listens): nothing to catch up with there. Anything else (a
      // peer too busy to answer in time) is not a reason to think this node caught up: ask again.
      if (!refused(err)) throw err;
    }
  }));
  return heights;
}

async function jetStreamAnswers(target: ReadinessTarget): Promise<boolean> {
  const health = await fetch(`http://127.0.0.1:${target.monitorPort}/healthz?js-enabled-only=true`, {
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body = await health.text();
  if (health.status !== 200) throw new Error(`/healthz answered ${health.status}: ${body.trim()}`);

  const nc = await connect({ servers: target.url, timeout: REQUEST_TIMEOUT_MS, reconnect: false, ...target.client });
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

/** fetch() failed because nothing listens on the port. */
function refused(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === "ECONNREFUSED") return true;
  }
  return false;
}
