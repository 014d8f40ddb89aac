import { readFileSync } from "node:fs";
import { linkRates, takeSnapshot, type ConsoleLink, type ConsoleSnapshot } from "@bsfg/console";
import type { ZoneConfig } from "@bsfg/config";
import { listQuarantine, type ZoneStore } from "@bsfg/storage";

export { consolePage } from "@bsfg/console";

/** How long one snapshot serves every viewer: the page polls every 2 s, so many tabs cost one read. */
const SNAPSHOT_TTL_MS = 1_000;

const version = (() => {
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
})();

/** The zone console's data, read from the sync deployable's store and worker, cached briefly. */
export function consoleSnapshots(config: ZoneConfig, store: ZoneStore, links: () => readonly ConsoleLink[]): () => Promise<ConsoleSnapshot> {
  const rates = linkRates();
  const storage = store.config;
  const source = {
    zone: config.zone,
    version: `bsfg ${version} · node ${process.versions.node} · nats-server ${store.connection.info?.version ?? "?"}`,
    certificatePem: config.tls.cert,
    streams: Object.entries(storage.streams).map(([name, s]) => ({ name, maxBytes: s.maxBytes, maxAgeMs: s.maxAge })),
    rejectAtPercent: storage.backpressure.rejectAtPercent,
    fillPercent: (stream: string) => store.fillPercent(stream),
    highWater: (stream: string) => store.highWater(stream),
    consumers: storage.consumers.map((c) => ({ name: c.name, stream: c.stream })),
    cursor: (name: string) => store.cursor(name),
    links,
    async storedAfter(stream: string, offset: number) {
      const page = await store.read({ stream, skipOrigins: [] }, offset, { limit: 1 });
      const first = page.facts[0];
      return first ? Number(first.storedAtUnixMs) : undefined;
    },
    quarantine: async () => (await listQuarantine(store.substrate)).map((q) => ({
      id: q.id, link: q.link, reason: q.reason, messageId: q.messageId, peerOffset: q.peerOffset, state: q.state, quarantinedAtMs: q.quarantinedAtMs,
    })),
  };
  let cached: { at: number; snapshot: Promise<ConsoleSnapshot> } | undefined;
  return () => {
    const now = performance.now();
    if (!cached || now - cached.at > SNAPSHOT_TTL_MS) cached = { at: now, snapshot: takeSnapshot(source, rates) };
    return cached.snapshot;
  };
}
