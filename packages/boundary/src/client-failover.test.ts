import { createServer, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBsfgClient, isRetryable, type BsfgClient } from "@bsfg/client";
import { AppendStatus, Code, ConnectError } from "@bsfg/proto";
import { freePort } from "@bsfg/testkit";
import { producedFact, rejectionOf, startTestZoneServices, type TestZoneServices } from "./test-support.js";
import { startDeployable, type RunningDeployable } from "./run.js";

const quiet = () => new Writable({ write: (_chunk, _encoding, done) => done() });

/** A TCP endpoint that accepts connections and resets them at once: a replica that dies on every call. Counts connections. */
async function resettingEndpoint(): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `https://localhost:${port}`,
    connections: () => connections,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

describe("the client with several endpoints per service: failover between replicas", () => {
  let zone: TestZoneServices;
  let second: RunningDeployable;
  const clients: BsfgClient[] = [];
  const client = (urls: { ingest?: string[]; egress?: string[]; ledger?: string[] }, attempts = 4) => {
    const cert = zone.pki.certs["mes-producer"];
    const c = createBsfgClient({ urls, tls: { ca: zone.pki.ca.certPem, cert: cert.certPem, key: cert.keyPem }, retry: { attempts, initialDelayMs: 10, maxDelayMs: 50 } });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    zone = await startTestZoneServices("ingest");
    // A second ingest replica on the same zone.
    second = await startDeployable("ingest", zone.config, { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: quiet() });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await second?.stop();
    await zone?.dispose();
  });

  it("moves on from a refused endpoint to the next one, and stays there", async () => {
    const dead = `https://localhost:${await freePort()}`;
    const producer = client({ ingest: [dead, zone.deployable.server.url] });
    const [first] = await producer.appendFacts([producedFact(1)]);
    expect(first!.status).toBe(AppendStatus.APPENDED);
    // A refused connection is retryable, whatever code connect-node gives it.
    const refused = await rejectionOf(client({ ingest: [dead] }, 1).appendFacts([producedFact(2)]));
    expect(isRetryable(refused)).toBe(true);
    expect([Code.Unavailable, Code.Aborted, Code.Unknown, Code.Internal]).toContain(refused.code);
  });

  it("moves on from a replica that resets every connection, and later calls do not go back to it", async () => {
    const resetting = await resettingEndpoint();
    try {
      const producer = client({ ingest: [resetting.url, second.server.url] });
      for (let n = 0; n < 5; n++) expect((await producer.appendFacts([producedFact(10 + n)]))[0]!.status).toBe(AppendStatus.APPENDED);
      expect(resetting.connections()).toBe(1);
    } finally {
      await resetting.close();
    }
  });

  it("fails over from a draining replica (unavailable / shutting_down) to the other one", async () => {
    const third = await startDeployable("ingest", zone.config, { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: quiet() });
    const producer = client({ ingest: [third.server.url, second.server.url] });
    expect((await producer.appendFacts([producedFact(20)]))[0]!.status).toBe(AppendStatus.APPENDED);
    await third.stop();
    const results = await Promise.all(Array.from({ length: 10 }, (_, n) => producer.appendFacts([producedFact(21 + n)])));
    expect(results.flat().map((r) => r.status)).toEqual(Array(10).fill(AppendStatus.APPENDED));
  });

  it("does not fail over on an answer a retry cannot change (permission_denied), and keeps the single-URL form working", async () => {
    const stranger = createBsfgClient({
      urls: { ingest: [zone.deployable.server.url, second.server.url] },
      tls: { ca: zone.pki.ca.certPem, cert: zone.pki.certs.stranger.certPem, key: zone.pki.certs.stranger.keyPem },
      retry: { attempts: 4, initialDelayMs: 10, maxDelayMs: 50 },
    });
    clients.push(stranger);
    const denied = await rejectionOf(stranger.appendFacts([producedFact(40)]));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(isRetryable(denied)).toBe(false);
    expect(isRetryable(new ConnectError("connect ECONNREFUSED 127.0.0.1:1", Code.Unknown, undefined, undefined, Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })))).toBe(true);

    const single = createBsfgClient({ url: second.server.url, tls: { ca: zone.pki.ca.certPem, cert: zone.pki.certs["mes-producer"].certPem, key: zone.pki.certs["mes-producer"].keyPem } });
    clients.push(single);
    expect((await single.appendFacts([producedFact(41)]))[0]!.status).toBe(AppendStatus.APPENDED);
  });
});
