import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import { loadZoneConfig } from "@bsfg/config";
import { estateDocuments, estateIdentities, NATS_SERVER_IDENTITY, substrateLogin, threeZoneEstate, type EstateTopology, type SubstrateLogin, type ZoneEndpoints } from "@bsfg/estate-kit";
import { ensureDevPki, type DevPki } from "@bsfg/pki";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { freePort, startNatsCluster, startNatsServer, startTcpProxy, type NatsClusterHandle, type NatsServerHandle, type TcpProxy } from "@bsfg/testkit";
import { childDeployable, type ChildDeployable } from "./processes.js";

/*
 * The campaign's estate: PlantA — IDMZ — Enterprise on loopback, every zone on its
 * own nats-server — or, for the highly available zone, a three-node JetStream
 * cluster with every stream at replicas 3 — every deployable a child process
 * (ingest, egress and ledger apart, two sync replicas per zone), and every link
 * through a TCP proxy per service, so that each can be killed, cut or reset on
 * its own.
 */

const APPS = fileURLToPath(new URL("../../../apps/", import.meta.url));
export const SERVICE_ROLES = ["ingest", "egress", "ledger"] as const;
export type ServiceRole = (typeof SERVICE_ROLES)[number];

export const campaignTopology: EstateTopology = {
  ...threeZoneEstate,
  producers: { "plant-a": ["mes-producer"], enterprise: ["erp-producer"] },
};

/** A zone's substrate: one nats-server, or the highly available zone's three-node cluster. */
export type CampaignSubstrate = { readonly kind: "server"; readonly server: NatsServerHandle } | { readonly kind: "cluster"; readonly cluster: NatsClusterHandle };

export interface CampaignZone {
  readonly name: string;
  readonly nats: CampaignSubstrate;
  readonly services: Record<ServiceRole, ChildDeployable>;
  readonly syncs: ChildDeployable[];
  readonly ingestUrl: string;
  /** A store connection of the campaign's own, for reading the log at the end. */
  store(): Promise<ZoneStore>;
}

export interface CampaignEstate {
  readonly zones: Record<string, CampaignZone>;
  /** The proxies `receiver` reaches `sender`'s egress and ledger through. */
  readonly proxies: ReadonlyArray<{ readonly receiver: string; readonly sender: string; readonly role: "egress" | "ledger"; readonly proxy: TcpProxy }>;
  readonly pki: DevPki;
  client(zone: string, identity: string): BsfgClient;
  /** Every deployable's exits the campaign did not cause. */
  unexpectedExits(): number;
  dispose(): Promise<void>;
}

export interface CampaignEstateOptions {
  readonly dir: string;
  /** The operational stream's capacity per zone (small: the disk-full fault fills one). */
  readonly operationalBytes: string;
  readonly syncReplicas: number;
  /** The zone run on a three-node JetStream cluster (streams, KV and buckets at replicas 3). */
  readonly haZone?: string;
}

export async function startCampaignEstate(opts: CampaignEstateOptions): Promise<CampaignEstate> {
  const topology = campaignTopology;
  const pki = await ensureDevPki(join(opts.dir, "pki"), { identities: [...estateIdentities(topology), { identity: NATS_SERVER_IDENTITY, usage: "server" }] });
  // Every zone's nats-server takes only TLS clients that log in as the zone's user, as the generated estates run.
  const natsLogins = new Map<string, SubstrateLogin["zone"]>();
  const natsLogin = async (zone: string) => {
    const login = await substrateLogin(pki, opts.dir, zone);
    natsLogins.set(zone, login.zone);
    return login.server;
  };
  const nats: Record<string, CampaignSubstrate> = {};
  const endpoints: Record<string, ZoneEndpoints> = {};
  const ports: Record<string, Record<ServiceRole | "syncs", number[]>> = {};
  const disposers: Array<() => Promise<unknown>> = [];
  const clients: BsfgClient[] = [];
  const proxies: Array<{ receiver: string; sender: string; role: "egress" | "ledger"; proxy: TcpProxy }> = [];
  for (const zone of topology.zones) {
    // JetStream reserves each stream's max_bytes from the file store limit, on every node holding it.
    const substrate: CampaignSubstrate = zone === opts.haZone
      ? { kind: "cluster", cluster: await startNatsCluster({ domain: zone, nodes: 3, maxFileStore: "8GB", syncInterval: "always", ...await natsLogin(zone) }) }
      : { kind: "server", server: await startNatsServer({ domain: zone, maxFileStore: "8GB", syncInterval: "always", ...await natsLogin(zone) }) };
    nats[zone] = substrate;
    disposers.push(() => (substrate.kind === "cluster" ? substrate.cluster.dispose() : substrate.server.dispose()));
    const listen = { ingest: await freePort(), egress: await freePort(), ledger: await freePort() };
    const health = { ingest: await freePort(), egress: await freePort(), ledger: await freePort() };
    ports[zone] = { ingest: [listen.ingest, health.ingest], egress: [listen.egress, health.egress], ledger: [listen.ledger, health.ledger], syncs: [] };
    endpoints[zone] = {
      nats: substrate.kind === "cluster" ? substrate.cluster.urls : substrate.server.url,
      natsMonitor: substrate.kind === "cluster" ? substrate.cluster.monitorUrls : substrate.server.monitorUrl,
      listen: { zone: `127.0.0.1:${listen.ingest}`, ingest: `127.0.0.1:${listen.ingest}`, egress: `127.0.0.1:${listen.egress}`, ledger: `127.0.0.1:${listen.ledger}` },
      health: { zone: `127.0.0.1:${await freePort()}`, ingest: `127.0.0.1:${health.ingest}`, egress: `127.0.0.1:${health.egress}`, ledger: `127.0.0.1:${health.ledger}`, sync: "127.0.0.1:0" },
    };
  }
  for (const receiver of topology.zones) {
    for (const sender of topology.zones) {
      if (receiver === sender) continue;
      for (const role of ["egress", "ledger"] as const) {
        const proxy = await startTcpProxy({ targetPort: ports[sender]![role][0]! });
        disposers.push(() => proxy.close());
        proxies.push({ receiver, sender, role, proxy });
      }
    }
  }
  const proxyUrl = (receiver: string, sender: string, role: "egress" | "ledger") =>
    `https://localhost:${proxies.find((p) => p.receiver === receiver && p.sender === sender && p.role === role)!.proxy.port}`;
  const documents = estateDocuments({
    topology,
    endpoints,
    peerUrl: (receiver, sender) => ({ egress: proxyUrl(receiver, sender, "egress"), ledger: proxyUrl(receiver, sender, "ledger") }),
    pki: { caCert: pki.caCert, files: pki.files },
    natsSync: "always",
    natsLogin: (zone) => natsLogins.get(zone),
    storage: {
      streams: { operational: { maxBytes: opts.operationalBytes }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "512MiB" } },
      quarantine: { maxBytes: "64MiB" },
      leaseTtl: "3s",
    },
    extra: () => ({ shutdownGrace: "2s", logLevel: "info", sync: { backoff: { initial: "100ms", max: "1s" } } }),
  });

  const zones: Record<string, CampaignZone> = {};
  try {
    for (const zone of topology.zones) {
      const doc = documents[zone]!;
      if (zone === opts.haZone) doc.storage = { ...(doc.storage as object), replicas: 3 };
      const configPath = join(opts.dir, `${zone}.json`);
      await writeFile(configPath, JSON.stringify(doc, null, 2));
      const services = {} as Record<ServiceRole, ChildDeployable>;
      for (const role of SERVICE_ROLES) {
        services[role] = childDeployable(`${zone}-${role}`, join(APPS, role, "dist", "main.js"), configPath, `http://127.0.0.1:${ports[zone]![role][1]}`, join(opts.dir, `${zone}-${role}.log`));
        disposers.push(() => services[role].stop());
        await services[role].start();
      }
      const syncs: ChildDeployable[] = [];
      for (let i = 1; i <= opts.syncReplicas; i++) {
        const probe = await freePort();
        const syncPath = join(opts.dir, `${zone}-sync-${i}.json`);
        await writeFile(syncPath, JSON.stringify({ ...doc, health: { ...(doc.health as object), sync: `127.0.0.1:${probe}` } }, null, 2));
        const sync = childDeployable(`${zone}-sync-${i}`, join(APPS, "sync", "dist", "main.js"), syncPath, `http://127.0.0.1:${probe}`, join(opts.dir, `${zone}-sync-${i}.log`));
        disposers.push(() => sync.stop());
        syncs.push(sync);
      }
      let store: Promise<ZoneStore> | undefined;
      zones[zone] = {
        name: zone,
        nats: nats[zone]!,
        services,
        syncs,
        ingestUrl: `https://localhost:${ports[zone]!.ingest[0]}`,
        store() {
          if (!store) {
            const config = loadZoneConfig(configPath);
            store = openZoneStore(config.storage, { servers: config.nats.servers, auth: config.nats.auth, tls: config.nats.tls, name: "bsfg-campaign-reader", durability: config.nats.sync });
            disposers.push(async () => (await store!).close());
          }
          return store;
        },
      };
    }
    for (const zone of Object.values(zones)) for (const sync of zone.syncs) await sync.start();
  } catch (err) {
    for (const dispose of disposers.reverse()) await dispose().catch(() => undefined);
    throw err;
  }

  const tls = (identity: string) => {
    const files = pki.files[identity];
    if (!files) throw new Error(`no certificate for ${identity}`);
    return { ca: readFileSync(pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key) };
  };
  return {
    zones,
    proxies,
    pki,
    client(zone, identity) {
      const client = createBsfgClient({ url: zones[zone]!.ingestUrl, tls: tls(identity), retry: { attempts: 1 }, timeoutMs: 10_000 });
      clients.push(client);
      return client;
    },
    unexpectedExits: () => Object.values(zones).reduce((n, z) => n + [...Object.values(z.services), ...z.syncs].reduce((m, d) => m + d.unexpectedExits, 0), 0),
    async dispose() {
      for (const client of clients) client.close();
      for (const dispose of disposers.reverse()) await dispose().catch(() => undefined);
    },
  };
}


