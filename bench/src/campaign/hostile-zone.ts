import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadZoneConfig } from "@bsfg/config";
import { createCertificateAuthority, issueCertificate, type CertificateAuthority, type IssuedCertificate } from "@bsfg/pki";
import { openZoneStore, type ZoneStore } from "@bsfg/storage";
import { freePort, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { childDeployable, type ChildDeployable } from "./processes.js";

/*
 * The hostile campaign's zone: one zone ("plant-a") on loopback with a real nats-server
 * (JetStream domain = zone name), its own dev CA, and ingest, egress and ledger as child
 * processes, so that a crash is an observable exit rather than a thrown error in our own
 * process. Next to the zone's identities it holds the certificates an attacker would
 * present: one from a foreign CA under a real identity's name, an expired one, and none.
 */

const APPS = fileURLToPath(new URL("../../../apps/", import.meta.url));

export const ZONE = "plant-a";
export const ROLES = ["ingest", "egress", "ledger"] as const;
export type Role = (typeof ROLES)[number];

/** The consumer the reader is bound to, and one bound to another identity. */
export const CONSUMER = "enterprise-from-plant-a";
export const OTHER_CONSUMER = "idmz-from-plant-a";
export const BUCKET = "batch-files";
/** A bucket the zone has but the producer may not write and the reader may not read. */
export const FORBIDDEN_BUCKET = "document-files";

/**
 * Who calls. `producer` may append and put objects, and so may `flooder`, which holds the
 * connection load against ingest; `reader` is bound to CONSUMER and may
 * read BUCKET; `otherReader` is bound to OTHER_CONSUMER; `operator` holds every quarantine
 * verb; `auditor` is in the policy with no rights at all (permission_denied per verb);
 * `stranger` has a certificate of the zone's CA but no policy (unknown_identity).
 */
export const IDENTITIES = {
  producer: "mes-producer",
  /** Another producer, the one that floods ingest with connections (the load groups): the cap is per identity. */
  flooder: "mes-line9-producer",
  reader: "enterprise-bsfg",
  otherReader: "idmz-bsfg",
  operator: "plant-a-operator",
  auditor: "plant-a-auditor",
  stranger: "stranger",
} as const;
export type Caller = keyof typeof IDENTITIES;
/** Certificates the server must refuse at the TLS layer (`none`: no client certificate at all). */
export type Impostor = "foreign" | "expired" | "none";
export type Credential = Caller | Impostor;

/** PEM strings as node:tls takes them; `cert`/`key` absent for a client without a certificate. */
export interface Credentials {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface HostileZone {
  readonly dir: string;
  readonly configPath: string;
  readonly nats: NatsServerHandle;
  /** "https://localhost:<port>" per deployable (the server certificate names localhost). */
  readonly urls: Record<Role, string>;
  readonly services: Record<Role, ChildDeployable>;
  credentials(who: Credential): Credentials;
  /** Exits of the deployables the campaign did not cause: crashes. */
  unexpectedExits(): number;
  /** A store connection of the campaign's own, for reading the log afterwards. */
  openStore(): Promise<ZoneStore>;
  /** Stops everything; keeps the directory (logs) when `keepDir`. */
  dispose(keepDir: boolean): Promise<void>;
}

interface Pki {
  readonly ca: CertificateAuthority;
  readonly server: IssuedCertificate;
  readonly certs: Record<Credential, IssuedCertificate | undefined>;
}

async function createPki(): Promise<Pki> {
  const ca = await createCertificateAuthority({ name: "BSFG Hostile Campaign CA" });
  const server = await issueCertificate(ca, { identity: `${ZONE}-bsfg`, usage: "both" });
  const certs = {} as Record<Credential, IssuedCertificate | undefined>;
  for (const [caller, identity] of Object.entries(IDENTITIES) as Array<[Caller, string]>) {
    certs[caller] = await issueCertificate(ca, { identity, usage: "client" });
  }
  // Same name as the producer, signed by somebody else: the name alone must buy nothing.
  const foreignCa = await createCertificateAuthority({ name: "Somebody Else's CA" });
  certs.foreign = await issueCertificate(foreignCa, { identity: IDENTITIES.producer, usage: "client" });
  const day = 86_400_000;
  certs.expired = await issueCertificate(ca, { identity: IDENTITIES.producer, usage: "client", notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
  certs.none = undefined;
  return { ca, server, certs };
}

/** The zone configuration, modelled on @bsfg/boundary's testZoneDocument. */
function zoneDocument(nats: NatsServerHandle, listen: Record<Role, number>, health: Record<Role, number>): Record<string, unknown> {
  const at = (port: number) => `127.0.0.1:${port}`;
  return {
    zone: ZONE,
    nats: { servers: [nats.url], monitor: [nats.monitorUrl], auth: { user: `bsfg-${ZONE}`, passwordFile: "nats.password" }, tls: { ca: "ca.crt" } },
    storage: {
      zones: ["idmz", "enterprise"],
      streams: { operational: { maxBytes: "512MiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } },
      consumers: [
        { name: CONSUMER, stream: "operational", skipOrigins: ["enterprise"] },
        { name: OTHER_CONSUMER, stream: "operational", skipOrigins: ["idmz"] },
      ],
      buckets: { [BUCKET]: {}, [FORBIDDEN_BUCKET]: {} },
    },
    tls: { ca: "ca.crt", cert: "zone.crt", key: "zone.key", reloadCheck: "off" },
    listen: { zone: at(listen.ingest), ingest: at(listen.ingest), egress: at(listen.egress), ledger: at(listen.ledger) },
    health: { ingest: at(health.ingest), egress: at(health.egress), ledger: at(health.ledger) },
    // A short long-poll cap: a hostile FetchFacts asking to wait for ever must not look like a hang.
    fetch: { maxLimit: 100, maxWait: "1s" },
    policy: {
      [IDENTITIES.producer]: { assertFromZones: [ZONE], targetZones: ["enterprise", "idmz"], writeBuckets: [BUCKET] },
      [IDENTITIES.flooder]: { assertFromZones: [ZONE], targetZones: ["enterprise", "idmz"], writeBuckets: [BUCKET] },
      [IDENTITIES.reader]: { consumers: [CONSUMER], readBuckets: [BUCKET] },
      [IDENTITIES.otherReader]: { consumers: [OTHER_CONSUMER], readBuckets: [BUCKET] },
      [IDENTITIES.operator]: { quarantine: ["read", "release", "drop"] },
      [IDENTITIES.auditor]: {},
    },
    shutdownGrace: "2s",
    logLevel: "info",
  };
}

export async function startHostileZone(log: (line: string) => void): Promise<HostileZone> {
  const dir = await mkdtemp(join(tmpdir(), "bsfg-hostile-"));
  const pki = await createPki();
  // The zone's nats-server takes only TLS clients that log in as the zone's user, as the generated estates run.
  const natsCert = await issueCertificate(pki.ca, { identity: "bsfg-nats", usage: "server" });
  const natsLogin = { user: `bsfg-${ZONE}`, password: randomBytes(18).toString("base64url") };
  const nats = await startNatsServer({ domain: ZONE, auth: natsLogin, tls: { certPem: natsCert.certPem, keyPem: natsCert.keyPem, caPem: pki.ca.certPem } });
  const disposers: Array<() => Promise<unknown>> = [() => nats.dispose()];
  const services = {} as Record<Role, ChildDeployable>;
  const listen = {} as Record<Role, number>;
  const health = {} as Record<Role, number>;
  try {
    for (const role of ROLES) {
      listen[role] = await freePort();
      health[role] = await freePort();
    }
    await writeFile(join(dir, "ca.crt"), pki.ca.certPem);
    await writeFile(join(dir, "zone.crt"), pki.server.certPem);
    await writeFile(join(dir, "zone.key"), pki.server.keyPem, { mode: 0o600 });
    await writeFile(join(dir, "nats.password"), `${natsLogin.password}\n`, { mode: 0o600 });
    const configPath = join(dir, "zone.json");
    await writeFile(configPath, JSON.stringify(zoneDocument(nats, listen, health), null, 2));
    for (const role of ROLES) {
      const service = childDeployable(role, join(APPS, role, "dist", "main.js"), configPath, `http://127.0.0.1:${health[role]}`, join(dir, `${role}.log`));
      disposers.push(() => service.stop());
      // start() polls /readyz until it answers 200.
      await service.start();
      services[role] = service;
    }
    log(`hostile: zone ${ZONE} ready in ${dir} (ingest :${listen.ingest}, egress :${listen.egress}, ledger :${listen.ledger})`);

    const stores: ZoneStore[] = [];
    const urls = Object.fromEntries(ROLES.map((role) => [role, `https://localhost:${listen[role]}`])) as Record<Role, string>;
    return {
      dir,
      configPath,
      nats,
      urls,
      services,
      credentials(who) {
        const cert = pki.certs[who];
        return cert ? { ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem } : { ca: pki.ca.certPem };
      },
      unexpectedExits: () => ROLES.reduce((n, role) => n + services[role].unexpectedExits, 0),
      async openStore() {
        const config = loadZoneConfig(configPath);
        const store = await openZoneStore(config.storage, { servers: config.nats.servers, auth: config.nats.auth, tls: config.nats.tls, name: "bsfg-hostile-reader", durability: config.nats.sync });
        stores.push(store);
        return store;
      },
      async dispose(keepDir) {
        for (const store of stores) await store.close().catch(() => undefined);
        for (const dispose of disposers.reverse()) await dispose().catch(() => undefined);
        if (!keepDir) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const dispose of disposers.reverse()) await dispose().catch(() => undefined);
    throw new Error(`the hostile campaign's zone did not start (logs in ${dir})`, { cause: err });
  }
}
