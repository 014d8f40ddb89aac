/**
 * The containerized estate (docker-compose.yml): each zone's configuration, from the same
 * estate-kit topology, policies, links and demo viewer as the local estate. Only where things
 * are differs: every deployable is its own container, reached by its compose service name.
 *
 *   <zone>-ingest, <zone>-egress, <zone>-ledger, <zone>-sync   the split deployables
 *   <zone>-nats (enterprise: enterprise-nats-1..3, a cluster)   the zone's JetStream
 *
 * Every container listens on the same ports (there is one deployable per container), the
 * defaults of the zone configuration; Dockerfiles EXPOSE and probe the same.
 *
 * PlantA is outbound-only, as in the local estate: nothing connects into it. Its egress and
 * ledger bind 127.0.0.1 inside their containers (no peer reaches them) and dial the IDMZ
 * sync container's reverse listener (idmz-sync:8447) over the boundary network; the IDMZ
 * pulls from PlantA over those connections. PlantA's own sync still connects out to the
 * IDMZ's egress and ledger, so every connection across PlantA's boundary starts in PlantA.
 */
import { stringify } from "yaml";
import { estateDocuments, estateIdentities, estateLinks, threeZoneEstate, type EstateTopology, type ZoneEndpoints } from "@bsfg/estate-kit";
import { demoViewer, estateStorage, withViewer } from "./estate.js";

/** The compose estate: Enterprise ⇄ IDMZ ⇄ PlantA, PlantA outbound-only (see above). */
export const composeEstate: EstateTopology = { ...threeZoneEstate, outboundOnly: ["plant-a"] };

/**
 * mTLS ports (listen.*) and plain-HTTP probe ports (health.*) inside every container;
 * `reverse`: a sync container's reverse listener, where an outbound-only peer dials in.
 */
export const containerPorts = {
  listen: { zone: 8443, ingest: 8444, egress: 8445, ledger: 8446, reverse: 8447 },
  health: { zone: 9443, ingest: 9444, egress: 9445, ledger: 9446, sync: 9447 },
  nats: 4222,
} as const;

/**
 * The compose networks' subnets, pinned in docker-compose.yml (networks.<name>.ipam) so the zone
 * configurations can name them: a probe port listens on every network of its container —
 * `boundary` included, which peer zones' containers share — and answers only
 * `probeAllowFrom`.
 */
export const composeSubnets = {
  enterprise: "172.29.10.0/24",
  idmz: "172.29.11.0/24",
  "plant-a": "172.29.12.0/24",
  boundary: "172.29.13.0/24",
  observability: "172.29.14.0/24",
} as const;

/** A subnet's gateway: the host's address on that bridge network. */
export const gatewayOf = (subnet: string): string => subnet.replace(/\.0\/24$/, ".1");

/** Prometheus's fixed address on the observability network (docker-compose.yml). */
export const prometheusAddress = "172.29.14.10";

/**
 * Who may read a probe port in the compose estate (health.allowFrom): the container itself
 * (its HEALTHCHECK), Prometheus, and each network's gateway, the address a port published on
 * the host's 127.0.0.1 arrives from (docker-proxy, or NAT). Not the other BSFG containers: the
 * boundary and observability networks both span zones, so a peer zone's container is on them.
 */
export const probeAllowFrom: readonly string[] = [
  "127.0.0.1",
  prometheusAddress,
  ...Object.values(composeSubnets).map(gatewayOf),
];

/** Zones whose JetStream is a three-node cluster, with replicas 3 for every stream and bucket. */
export const clusteredZones: readonly string[] = ["enterprise"];

/** The compose service names of a zone's NATS servers. */
export const natsServices = (zone: string): string[] =>
  clusteredZones.includes(zone) ? [1, 2, 3].map((i) => `${zone}-nats-${i}`) : [`${zone}-nats`];

/** Where the zone configuration and the zone's PKI volume are mounted in every BSFG container. */
export const mounts = { config: "/etc/bsfg/zone.yaml", pki: "/etc/bsfg/pki" } as const;

const everywhere = (port: number) => `0.0.0.0:${port}`;
/** Inside the container only: an outbound-only zone's egress and ledger, which no peer may reach. */
const containerOnly = (port: number) => `127.0.0.1:${port}`;
/** `http:` of every nats-server in deploy/compose/nats/*.conf: the zone reads /varz there. */
const natsMonitorPort = 8222;

function endpoints(topology: EstateTopology, zone: string): ZoneEndpoints {
  const { listen, health } = containerPorts;
  const outboundOnly = topology.outboundOnly ?? [];
  // Peers connect to its egress and ledger only if the zone is not outbound-only; it listens for
  // them (reverse) only where an outbound-only peer dials in.
  const peerFacing = outboundOnly.includes(zone) ? containerOnly : everywhere;
  const dialedInto = estateLinks(topology).some((l) => l.receiver === zone && outboundOnly.includes(l.sender));
  return {
    nats: natsServices(zone).map((host) => `nats://${host}:${containerPorts.nats}`),
    natsMonitor: natsServices(zone).map((host) => `http://${host}:${natsMonitorPort}`),
    listen: {
      zone: everywhere(listen.zone), ingest: everywhere(listen.ingest), egress: peerFacing(listen.egress), ledger: peerFacing(listen.ledger),
      ...(dialedInto ? { reverse: everywhere(listen.reverse) } : {}),
    },
    health: {
      zone: everywhere(health.zone), ingest: everywhere(health.ingest), egress: everywhere(health.egress),
      ledger: everywhere(health.ledger), sync: everywhere(health.sync),
      allowFrom: probeAllowFrom,
    },
  };
}

/** Each zone's configuration document, by zone name. */
export function composeDocuments(topology: EstateTopology): Record<string, Record<string, unknown>> {
  // Paths relative to the configuration file: the zone's PKI volume is mounted next to it.
  const files = Object.fromEntries([...estateIdentities(topology).map((i) => i.identity), demoViewer.identity]
    .map((identity) => [identity, { cert: `pki/${identity}.crt`, key: `pki/${identity}.key` }]));
  const documents = estateDocuments({
    topology,
    endpoints: Object.fromEntries(topology.zones.map((zone) => [zone, endpoints(topology, zone)])),
    // Peers are the sender's egress and ledger containers, on the boundary network.
    peerUrl: (_receiver, sender) => ({
      egress: `https://${sender}-egress:${containerPorts.listen.egress}`,
      ledger: `https://${sender}-ledger:${containerPorts.listen.ledger}`,
    }),
    // An outbound-only zone dials the receiver's sync container (one replica: one URL).
    reverseUrls: (receiver) => `https://${receiver}-sync:${containerPorts.listen.reverse}`,
    pki: { caCert: "pki/ca.crt", files },
    storage: estateStorage,
    // The zone's nats-server speaks only TLS and lets in one user; the pki job writes its password.
    natsLogin: (zone) => ({ user: `bsfg-${zone}`, passwordFile: "pki/nats.password", ca: "pki/ca.crt" }),
  });
  for (const zone of clusteredZones) {
    const document = documents[zone]!;
    document.storage = { ...(document.storage as object), replicas: 3 };
  }
  const viewing = documents[demoViewer.zone]!;
  documents[demoViewer.zone] = withViewer(viewing, demoViewer, topology.buckets);
  return documents;
}

export function composeYaml(document: Record<string, unknown>): string {
  const zone = document.zone as string;
  return [
    `# ${zone}: a zone configuration of the compose estate. docker-compose.yml mounts it at`,
    `# ${mounts.config} in the ${zone} containers, and the zone's PKI volume at ${mounts.pki}.`,
    "# Generated from @bsfg/estate-kit by `node apps/estate/dist/compose.js`, like the local estate of",
    "# ./scripts/run.sh: same zones, policies, consumers and links. Do not edit; regenerate.",
    stringify(document),
  ].join("\n");
}
