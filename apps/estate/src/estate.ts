/** The local estate's shape: zones, their ports and who may do what. Names are configuration. */
export interface EstateZone {
  readonly name: string;
  readonly natsPort: number;
  readonly monitorPort: number;
  /** mTLS ports: the all-in-one service, or the three split deployables. */
  readonly ports: { readonly zone: number; readonly ingest: number; readonly egress: number; readonly ledger: number };
  /** Plain-HTTP probe ports per deployable. */
  readonly health: { readonly zone: number; readonly ingest: number; readonly egress: number; readonly ledger: number };
  /** The zone's server certificate identity. */
  readonly serverIdentity: string;
  /** storage + policy sections of the zone configuration. */
  readonly storage: Record<string, unknown>;
  readonly policy: Record<string, Record<string, string[]>>;
}

// NATS ports stay clear of 4222/8222: installing Debian's nats-server package starts a
// system nats-server there on machines with systemd.
export const localEstate: readonly EstateZone[] = [
  {
    name: "plant-a",
    natsPort: 14222,
    monitorPort: 18222,
    ports: { zone: 8443, ingest: 8444, egress: 8445, ledger: 8446 },
    health: { zone: 9443, ingest: 9444, egress: 9445, ledger: 9446 },
    serverIdentity: "plant-a-bsfg",
    storage: {
      zones: ["idmz", "enterprise"],
      streams: {
        operational: { maxAge: "30d", maxBytes: "1GiB" },
        audit: { maxAge: "365d", maxBytes: "256MiB" },
        documents: { maxAge: "365d", maxBytes: "256MiB" },
      },
      routing: [{ kind: "document", stream: "documents" }],
      consumers: [{ name: "idmz-from-plant-a", stream: "operational", skipOrigins: ["idmz"] }],
      buckets: { "batch-files": {}, "document-files": {} },
    },
    policy: {
      "mes-producer": { assertFromZones: ["plant-a"], targetZones: ["idmz", "enterprise"], writeBuckets: ["batch-files", "document-files"] },
      "idmz-bsfg": { consumers: ["idmz-from-plant-a"], readBuckets: ["batch-files", "document-files"] },
    },
  },
];

/** Every certificate identity the estate needs, with what it is used for. */
export function estateIdentities(zones: readonly EstateZone[]) {
  const clients = new Set<string>(zones.flatMap((z) => Object.keys(z.policy)));
  const servers = new Set(zones.map((z) => z.serverIdentity));
  return [...new Set([...servers, ...clients])].map((identity) => ({
    identity,
    usage: servers.has(identity) ? ("both" as const) : ("client" as const),
    ...(servers.has(identity) ? { dnsNames: ["localhost"] } : {}),
  }));
}
