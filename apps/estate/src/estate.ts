/**
 * The local estate on one machine: which ports each zone of the estate-kit
 * topology gets, and the demo viewer. Zones, consumers, links and policies come
 * from @bsfg/estate-kit, so the runner, the tests and the benchmarks build the
 * same estate.
 */
import { estateLinks, referenceEstate, type EstateTopology, type ZoneEndpoints } from "@bsfg/estate-kit";

/**
 * What ./scripts/run.sh runs: the reference estate, with PlantA outbound-only (issue 17):
 * it accepts no connection from its peers and dials the IDMZ's reverse listener instead,
 * over which the IDMZ pulls from it as before. PlantB is reached as usual (the IDMZ
 * connects to its egress and ledger), so the estate shows both modes side by side.
 */
export const localEstate: EstateTopology = { ...referenceEstate, outboundOnly: ["plant-a"] };

export type Role = "zone" | "ingest" | "egress" | "ledger";

export interface ZonePorts {
  readonly name: string;
  readonly natsPort: number;
  readonly monitorPort: number;
  /** mTLS ports: the all-in-one service, or the split deployables. */
  readonly listen: Readonly<Record<Role, number>>;
  /** Plain-HTTP probe ports per deployable; `sync` also serves GET /links. */
  readonly health: Readonly<Record<Role | "sync", number>>;
  /**
   * The sync worker's reverse listener (listen.reverse), where outbound-only peers dial in:
   * only in a zone that pulls from one (the IDMZ, from PlantA).
   */
  readonly reverse: number | undefined;
  /** The zone console over mTLS (listen.console), for operators' browsers. */
  readonly console: number;
}

/**
 * Zone i of the topology (enterprise 0, idmz 1, plant-a 2, plant-b 3): NATS on
 * 14222+i, its monitor on 18222+i — clear of 4222/8222, where installing Debian's
 * nats-server package starts a system server — services on 8443+100·i (zone,
 * ingest, egress, ledger, the sync worker's reverse listener where an
 * outbound-only peer dials in, its mTLS console) and probes on 9443+100·i (…, sync).
 */
export function zonePorts(topology: EstateTopology): ZonePorts[] {
  const outboundOnly = new Set(topology.outboundOnly ?? []);
  const links = estateLinks(topology);
  return topology.zones.map((name, i) => {
    const service = 8443 + 100 * i;
    const probe = 9443 + 100 * i;
    const dialedInto = links.some((l) => l.receiver === name && outboundOnly.has(l.sender));
    return {
      name,
      natsPort: 14222 + i,
      monitorPort: 18222 + i,
      listen: { zone: service, ingest: service + 1, egress: service + 2, ledger: service + 3 },
      health: { zone: probe, ingest: probe + 1, egress: probe + 2, ledger: probe + 3, sync: probe + 4 },
      reverse: dialedInto ? service + 4 : undefined,
      console: service + 5,
    };
  });
}

export function endpointsOf(zone: ZonePorts): ZoneEndpoints {
  const local = (port: number) => `127.0.0.1:${port}`;
  const { listen, health } = zone;
  return {
    nats: `nats://127.0.0.1:${zone.natsPort}`,
    natsMonitor: `http://127.0.0.1:${zone.monitorPort}`,
    listen: {
      zone: local(listen.zone), ingest: local(listen.ingest), egress: local(listen.egress), ledger: local(listen.ledger),
      ...(zone.reverse !== undefined ? { reverse: local(zone.reverse) } : {}),
      console: local(zone.console),
    },
    health: { zone: local(health.zone), ingest: local(health.ingest), egress: local(health.egress), ledger: local(health.ledger), sync: local(health.sync) },
  };
}

/** Stream capacities of the local and the compose estate (merged into every zone's storage). */
export const estateStorage = {
  streams: {
    operational: { maxAge: "30d", maxBytes: "1GiB" },
    audit: { maxAge: "365d", maxBytes: "256MiB" },
    documents: { maxAge: "365d", maxBytes: "256MiB" },
  },
} as const;

/**
 * The demo's window on a zone: consumers of its own (one per fact stream) bound
 * to a viewer identity that may read the buckets. `bsfg demo` fetches and
 * confirms them as its bookmark; no peer link reads them, so the demo never
 * moves a link's cursor.
 */
export interface Viewer {
  readonly zone: string;
  readonly identity: string;
  readonly consumers: ReadonlyArray<{ readonly name: string; readonly stream: string }>;
}

export const demoViewer: Viewer = {
  zone: "enterprise",
  identity: "enterprise-viewer",
  consumers: [
    { name: "demo-viewer-operational", stream: "operational" },
    { name: "demo-viewer-documents", stream: "documents" },
  ],
};

/** Adds the viewer's consumers and policy to the zone's generated configuration document. */
export function withViewer(document: Record<string, unknown>, viewer: Viewer, buckets: readonly string[]): Record<string, unknown> {
  const storage = document.storage as { consumers?: unknown[] };
  const policy = document.policy as Record<string, unknown>;
  return {
    ...document,
    storage: { ...storage, consumers: [...(storage.consumers ?? []), ...viewer.consumers.map((c) => ({ name: c.name, stream: c.stream }))] },
    policy: { ...policy, [viewer.identity]: { consumers: viewer.consumers.map((c) => c.name), readBuckets: [...buckets] } },
  };
}
