/**
 * The estate's shape: a tree of zones, each pulling from its neighbours — a line
 * (Enterprise — IDMZ — PlantA) or plants side by side behind one IDMZ. Everything
 * else (consumers, links, policies) follows from it, so the runner, the tests and
 * the benchmarks build the same estate.
 */
export interface EstateTopology {
  /** Zone names; without `edges`, a line in this order. */
  readonly zones: readonly string[];
  /**
   * Neighbours, which pull from each other: a tree over `zones` (one path between any two
   * zones), e.g. [["enterprise", "idmz"], ["idmz", "plant-a"], ["idmz", "plant-b"]].
   * Default: the line of `zones`.
   */
  readonly edges?: readonly (readonly [string, string])[];
  /** Fact categories that cross zones; one consumer and one link per category and direction. */
  readonly categories: readonly string[];
  /** Producer identities per zone: they may assert that zone as from_zone and write its buckets. */
  readonly producers: Readonly<Record<string, readonly string[]>>;
  readonly buckets: readonly string[];
  /** Operator identities: in every zone they may read, release and drop quarantined facts, and act from the console (console: operate). */
  readonly operators?: readonly string[];
  /**
   * Zones that accept no connection from their peers (a plant behind a firewall that allows
   * outbound only): each dials its receivers' reverse listeners, which then pull over those
   * connections (`serve.<peer>.dial: outbound` there, `peers.<zone>.dial: inbound` here).
   */
  readonly outboundOnly?: readonly string[];
}

export const threeZoneEstate: EstateTopology = {
  zones: ["enterprise", "idmz", "plant-a"],
  categories: ["operational", "documents"],
  producers: { "plant-a": ["mes-producer"], enterprise: ["erp-producer"] },
  buckets: ["batch-files", "document-files"],
  operators: ["estate-operator"],
};

/**
 * The reference estate of the brief: Enterprise, the IDMZ, and two plants side by side
 * behind it. What the local estate (`scripts/run.sh`) runs, there with PlantA outbound-only
 * (`{ ...referenceEstate, outboundOnly: ["plant-a"] }`, apps/estate); PlantA's facts for
 * Enterprise pass the IDMZ and never reach PlantB. Here every link is dialed by its
 * receiver (the suites that use it, e.g. routing, run it that way).
 */
export const referenceEstate: EstateTopology = {
  zones: ["enterprise", "idmz", "plant-a", "plant-b"],
  edges: [["enterprise", "idmz"], ["idmz", "plant-a"], ["idmz", "plant-b"]],
  categories: ["operational", "documents"],
  producers: { "plant-a": ["mes-producer"], "plant-b": ["mes-b-producer"], enterprise: ["erp-producer"] },
  buckets: ["batch-files", "document-files"],
  operators: ["estate-operator"],
};

/** The edges of a topology: its own, or the line of its zones. */
export function estateEdges(topology: EstateTopology): ReadonlyArray<readonly [string, string]> {
  const { zones } = topology;
  return topology.edges ?? zones.slice(1).map((zone, i) => [zones[i]!, zone] as const);
}

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
  /**
   * Destinations the consumer serves: the zones on the receiver's side. A fact travels
   * toward its to_zone only; zones off its path never see it (PlantA's facts for
   * Enterprise do not reach PlantB).
   */
  readonly targets: readonly string[];
}

/** The zone's certificate identity, as server and as a peer's client. */
export const zoneIdentity = (zone: string) => `${zone}-bsfg`;

export function estateLinks(topology: EstateTopology): EstateLink[] {
  const neighbours = neighboursOf(topology);
  const links: EstateLink[] = [];
  for (const zone of topology.zones) {
    for (const sender of neighbours.get(zone)!) {
      // Everything on the sender's side of this edge, the sender included, and the rest.
      const senderSide = sideOf(neighbours, sender, zone);
      const receiverSide = topology.zones.filter((z) => !senderSide.includes(z));
      for (const category of topology.categories) {
        links.push({ receiver: zone, sender, category, consumer: `${zone}-from-${sender}-${category}`, skipOrigins: receiverSide, relayedOrigins: senderSide, targets: receiverSide });
      }
    }
  }
  return links;
}

/** Each zone's neighbours, in the order of `zones`; throws unless the edges form a tree over the zones. */
function neighboursOf(topology: EstateTopology): Map<string, string[]> {
  const { zones } = topology;
  const edges = estateEdges(topology);
  const neighbours = new Map(zones.map((zone) => [zone, [] as string[]]));
  for (const [a, b] of edges) {
    if (!neighbours.has(a) || !neighbours.has(b) || a === b) throw new Error(`estate edge ${a} — ${b}: both must be zones of the estate (${zones.join(", ")}), and different`);
    neighbours.get(a)!.push(b);
    neighbours.get(b)!.push(a);
  }
  const reached = zones.length === 0 ? [] : sideOf(neighbours, zones[0]!, undefined);
  if (edges.length !== zones.length - 1 || reached.length !== zones.length) {
    throw new Error(`the estate's edges must connect its ${zones.length} zones as a tree (${zones.length - 1} edges, one path between any two zones); got ${edges.map(([a, b]) => `${a} — ${b}`).join(", ") || "none"}`);
  }
  for (const list of neighbours.values()) list.sort((x, y) => zones.indexOf(x) - zones.indexOf(y));
  return neighbours;
}

/** The zones reachable from `start` without going through `excluded`, `start` included. */
function sideOf(neighbours: ReadonlyMap<string, readonly string[]>, start: string, excluded: string | undefined): string[] {
  const side = [start];
  for (let i = 0; i < side.length; i++) {
    for (const next of neighbours.get(side[i]!) ?? []) if (next !== excluded && !side.includes(next)) side.push(next);
  }
  return side;
}

/** Every certificate identity of the estate: zones (server and client), producers (client). */
export function estateIdentities(topology: EstateTopology): Array<{ identity: string; usage: "both" | "client"; dnsNames?: string[] }> {
  return [
    ...topology.zones.map((zone) => ({ identity: zoneIdentity(zone), usage: "both" as const, dnsNames: ["localhost"] })),
    ...Object.values(topology.producers).flat().map((identity) => ({ identity, usage: "client" as const })),
    ...(topology.operators ?? []).map((identity) => ({ identity, usage: "client" as const })),
  ];
}
