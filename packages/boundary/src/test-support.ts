import type { ClientHttp2Session } from "node:http2";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fromBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { parseZoneConfig, type ZoneConfig } from "@bsfg/config";
import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import { ErrorInfoSchema } from "@bsfg/proto";
import { createCertificateAuthority, issueCertificate, type CertificateAuthority, type IssuedCertificate } from "@bsfg/pki";
import { startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import type { Role } from "./routes.js";
import { startDeployable, type RunningDeployable } from "./run.js";

/** Identities with certificates from the zone's CA; "stranger" has no policy. */
export const identities = ["plant-a-bsfg", "mes-producer", "enterprise-bsfg", "stranger"] as const;
export type Identity = (typeof identities)[number];

export interface TestPki {
  readonly ca: CertificateAuthority;
  readonly certs: Record<Identity, IssuedCertificate>;
}

export async function createTestPki(): Promise<TestPki> {
  const ca = await createCertificateAuthority({ name: "BSFG Test CA" });
  const certs = {} as Record<Identity, IssuedCertificate>;
  for (const identity of identities) certs[identity] = await issueCertificate(ca, { identity, usage: identity === "plant-a-bsfg" ? "both" : "client" });
  return { ca, certs };
}

/** The zone's nats-server as its configuration names it (a NatsServerHandle is one). */
export interface ZoneNats {
  readonly url: string;
  readonly monitorUrl: string;
}

/** Zone "plant-a" with a producer, a peer bound to one consumer, and buckets. */
export function testZoneConfig(pki: TestPki, nats: ZoneNats, overrides: Record<string, unknown> = {}): ZoneConfig {
  const files: Record<string, string> = { "/pki/ca.crt": pki.ca.certPem, "/pki/zone.crt": pki.certs["plant-a-bsfg"].certPem, "/pki/zone.key": pki.certs["plant-a-bsfg"].keyPem };
  return parseZoneConfig(testZoneDocument(nats, overrides), { baseDir: "/pki", readFile: (path) => files[path] ?? (() => { throw new Error(`no test file ${path}`); })() });
}

/** The configuration document behind testZoneConfig; TLS paths ca.crt, zone.crt, zone.key are relative. */
export function testZoneDocument(nats: ZoneNats, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    zone: "plant-a",
    nats: { servers: [nats.url], monitor: [nats.monitorUrl] },
    storage: {
      zones: ["idmz", "enterprise"],
      streams: { operational: { maxBytes: "512MiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } },
      consumers: [{ name: "enterprise-from-plant-a", stream: "operational", skipOrigins: ["enterprise"] }],
      buckets: { "batch-files": {}, "document-files": {} },
    },
    tls: { ca: "ca.crt", cert: "zone.crt", key: "zone.key" },
    fetch: { maxLimit: 50, maxWait: "5s" },
    policy: {
      "mes-producer": { assertFromZones: ["plant-a"], targetZones: ["enterprise", "idmz"], writeBuckets: ["batch-files"] },
      "enterprise-bsfg": { assertFromZones: ["enterprise"], targetZones: ["plant-a"], consumers: ["enterprise-from-plant-a"], readBuckets: ["batch-files"] },
    },
    shutdownGrace: "5s",
    ...overrides,
  };
}

/**
 * Writes the zone's CA, certificate and key next to a zone.yaml (testZoneDocument
 * with `overrides`) into `dir`, as a deployable's `--config` reads them; returns the file's path.
 */
export async function writeTestZoneFiles(pki: TestPki, dir: string, nats: ZoneNats, overrides: Record<string, unknown> = {}): Promise<string> {
  await writeFile(join(dir, "ca.crt"), pki.ca.certPem);
  await writeFile(join(dir, "zone.crt"), pki.certs["plant-a-bsfg"].certPem);
  await writeFile(join(dir, "zone.key"), pki.certs["plant-a-bsfg"].keyPem, { mode: 0o600 });
  const path = join(dir, "zone.yaml");
  // JSON is YAML.
  await writeFile(path, JSON.stringify(testZoneDocument(nats, overrides), null, 2));
  return path;
}

/** Writes one identity's certificate and key as `<identity>.crt` and `<identity>.key` into `dir`. */
export async function writeIdentityFiles(pki: TestPki, dir: string, identity: Identity): Promise<{ cert: string; key: string }> {
  const paths = { cert: join(dir, `${identity}.crt`), key: join(dir, `${identity}.key`) };
  await writeFile(paths.cert, pki.certs[identity].certPem);
  await writeFile(paths.key, pki.certs[identity].keyPem, { mode: 0o600 });
  return paths;
}

/** Collects a service's JSON log lines. */
export function logCollector(): { stream: Writable; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  let pending = "";
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString();
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.trim() !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { stream, lines };
}

export interface TestZoneServices {
  readonly nats: NatsServerHandle;
  readonly pki: TestPki;
  readonly config: ZoneConfig;
  readonly deployable: RunningDeployable;
  readonly logs: Array<Record<string, unknown>>;
  client(identity: Identity, opts?: { protocol?: "connect" | "grpc"; retryAttempts?: number; cert?: IssuedCertificate; ca?: string }): BsfgClient;
  dispose(): Promise<void>;
}

/** A real nats-server and one deployable (default: all-in-one) on an mTLS port. */
export async function startTestZoneServices(role: Role = "zone", overrides: Record<string, unknown> = {}): Promise<TestZoneServices> {
  const nats = await startNatsServer({ domain: "plant-a" });
  const pki = await createTestPki();
  const config = testZoneConfig(pki, nats, overrides);
  const { stream, lines } = logCollector();
  const deployable = await startDeployable(role, config, { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: stream });
  const clients: BsfgClient[] = [];
  return {
    nats,
    pki,
    config,
    deployable,
    logs: lines,
    client(identity, opts = {}) {
      const cert = opts.cert ?? pki.certs[identity];
      const client = createBsfgClient({
        url: deployable.server.url,
        tls: { ca: opts.ca ?? pki.ca.certPem, cert: cert.certPem, key: cert.keyPem },
        protocol: opts.protocol ?? "connect",
        retry: { attempts: opts.retryAttempts ?? 1 },
      });
      clients.push(client);
      return client;
    },
    async dispose() {
      for (const c of clients) c.close();
      await deployable.stop();
      await nats.dispose();
    },
  };
}

/** A fact message from the producer in plant-a. */
export function producedFact(n: number, overrides: { id?: string; fromZone?: string; toZone?: string; object?: unknown } = {}) {
  return {
    envelope: {
      messageId: overrides.id ?? `mes-${process.pid}-${Date.now()}-${n}`,
      fromZone: overrides.fromZone ?? "plant-a",
      toZone: overrides.toZone ?? "enterprise",
      producedAtUnixMs: 1_764_000_000_000n + BigInt(n),
    },
    fact: { subject: `batch:PlantA/B${1000 + n}`, predicate: "step_completed", objectJson: JSON.stringify(overrides.object ?? { step: n, result: "ok" }) },
  };
}

/** The ConnectError a call failed with; fails the test if it succeeded. */
export async function rejectionOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to be rejected");
}

/** What a raw Connect unary call was answered: HTTP status, Connect code ("ok" for 200) and bsfg.v1 reason. */
export interface RawAnswer {
  readonly status: number;
  readonly code: string;
  readonly reason: string | undefined;
}

/**
 * A Connect unary call with a protobuf `body` on an HTTP/2 session of the test's own, below
 * any client library. `end: false` sends the body without ending the stream, as a client
 * would that never finishes: the answer then comes only if the server answers unread.
 */
export function rawUnaryCall(session: ClientHttp2Session, path: string, body: Buffer = Buffer.alloc(0), opts: { end?: boolean } = {}): Promise<RawAnswer> {
  return new Promise<RawAnswer>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/proto", "connect-protocol-version": "1" });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    let failure: Error | undefined;
    // A server that answers without reading resets the stream after its answer: the unsent rest fails then.
    stream.on("error", (err) => (failure = err));
    stream.on("close", () => {
      if (status === 0) return reject(failure ?? new Error("no answer"));
      if (status === 200) return resolve({ status, code: "ok", reason: undefined });
      const error = JSON.parse(Buffer.concat(chunks).toString() || "{}") as { code?: string; details?: Array<{ type: string; value: string }> };
      const detail = error.details?.find((d) => d.type === ErrorInfoSchema.typeName);
      resolve({ status, code: error.code ?? "unknown", reason: detail ? fromBinary(ErrorInfoSchema, Buffer.from(detail.value, "base64")).reason : undefined });
    });
    if (opts.end === false) stream.write(body);
    else stream.end(body);
  });
}
