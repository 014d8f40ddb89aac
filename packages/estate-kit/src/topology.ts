/**
 * The estate's shape: zones in a line (Enterprise — IDMZ — PlantA), each
 * pulling from its neighbours. Everything else (consumers, links, policies)
 * follows from the line, so the runner, the tests and the benchmarks build
 * the same estate.
 */
export interface EstateTopology {
  /** Zone names in line order; each zone pulls from the ones next to it. */
  readonly zones: readonly string[];
  /** Fact categories that cross zones; one consumer and one link per category and direction. */
  readonly categories: readonly string[];
  /** Producer identities per zone: they may assert that zone as from_zone and write its buckets. */
  readonly producers: Readonly<Record<string, readonly string[]>>;
  readonly buckets: readonly string[];
}

export const threeZoneEstate: EstateTopology = {
  zones: ["enterprise", "idmz", "plant-a"],
  categories: ["operational", "documents"],
  producers: { "plant-a": ["mes-producer"], enterprise: ["erp-producer"] },
  buckets: ["batch-files", "document-files"],
};

/** One direction of pulling: `receiver` pulls `consumer` from `sender`. */
export interface EstateLink {
  readonly receiver: string;
  readonly sender: string;
  readonly category: string;
  /** The consumer's name in the sender zone. */
  readonly consumer: string;
  /** Origins the consumer skips: the zones on the receiver's side, where those facts came from. */
  readonly skipOrigins: readonly string[];
  /** Origins the sender may relay to the receiver: the zones on the sender's side. */
  readonly relayedOrigins: readonly string[];
}

/** The zone's certificate identity, as server and as a peer's client. */
export const zoneIdentity = (zone: string) => `${zone}-bsfg`;

export function estateLinks(topology: EstateTopology): EstateLink[] {
  const { zones } = topology;
  const links: EstateLink[] = [];
  zones.forEach((zone, i) => {
    for (const j of [i - 1, i + 1]) {
      const sender = zones[j];
      if (sender === undefined) continue;
      // Everything on the sender's side of this edge, the sender included.
      const senderSide = j < i ? zones.slice(0, i) : zones.slice(i + 1);
      const receiverSide = zones.filter((z) => !senderSide.includes(z));
      for (const category of topology.categories) {
        links.push({ receiver: zone, sender, category, consumer: `${zone}-from-${sender}-${category}`, skipOrigins: receiverSide, relayedOrigins: senderSide });
      }
    }
  });
  return links;
}

/** Every certificate identity of the estate: zones (server and client), producers (client). */
export function estateIdentities(topology: EstateTopology): Array<{ identity: string; usage: "both" | "client"; dnsNames?: string[] }> {
  return [
    ...topology.zones.map((zone) => ({ identity: zoneIdentity(zone), usage: "both" as const, dnsNames: ["localhost"] })),
    ...Object.values(topology.producers).flat().map((identity) => ({ identity, usage: "client" as const })),
  ];
}
