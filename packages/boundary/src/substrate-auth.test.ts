import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseZoneConfig } from "@bsfg/config";
import { createBsfgClient } from "@bsfg/client";
import { issueCertificate } from "@bsfg/pki";
import { AppendStatus } from "@bsfg/proto";
import { openZoneStore } from "@bsfg/storage";
import { startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { startDeployable, type RunningDeployable } from "./run.js";
import { createTestPki, producedFact, testZoneDocument, type TestPki } from "./test-support.js";

/*
 * Issue "Boundary hardening", finding 6: the zone's nats-server trusted everyone who could
 * reach it — anyone on port 4222 could forge facts, move cursors, delete objects. A zone's
 * server now takes only TLS connections that log in, and the zone's deployables log in.
 */

describe("an authenticated substrate: the zone's nats-server takes only its own deployables", () => {
  const password = randomBytes(18).toString("base64url");
  let pki: TestPki;
  let nats: NatsServerHandle;
  let zone: RunningDeployable;
  beforeAll(async () => {
    pki = await createTestPki();
    const server = await issueCertificate(pki.ca, { identity: "plant-a-nats", usage: "server" });
    nats = await startNatsServer({ domain: "plant-a", auth: { user: "bsfg-plant-a", password }, tls: { certPem: server.certPem, keyPem: server.keyPem, caPem: pki.ca.certPem } });
    const files: Record<string, string> = {
      "/zone/ca.crt": pki.ca.certPem, "/zone/zone.crt": pki.certs["plant-a-bsfg"].certPem, "/zone/zone.key": pki.certs["plant-a-bsfg"].keyPem,
      "/zone/nats.password": `${password}\n`,
    };
    const document = testZoneDocument(nats, {
      nats: { servers: [nats.url], monitor: [nats.monitorUrl], auth: { user: "bsfg-plant-a", passwordFile: "nats.password" }, tls: { ca: "ca.crt" } },
    });
    const config = parseZoneConfig(document, { baseDir: "/zone", readFile: (path) => files[path] ?? (() => { throw new Error(`no test file ${path}`); })() });
    zone = await startDeployable("zone", config, { listen: "127.0.0.1:0" });
  });
  afterAll(async () => {
    await zone?.stop();
    await nats?.dispose();
  });

  it("serves the zone over a TLS connection that logs in", async () => {
    const client = createBsfgClient({ url: zone.server.url, tls: { ca: pki.ca.certPem, cert: pki.certs["mes-producer"].certPem, key: pki.certs["mes-producer"].keyPem } });
    try {
      expect((await client.appendFact(producedFact(1))).status).toBe(AppendStatus.APPENDED);
    } finally {
      client.close();
    }
  });

  it("refuses a connection without credentials, with a wrong password, and without the zone's CA", async () => {
    const storage = zone.store.config;
    const attempt = (opts: { auth?: { user: string; pass: string }; tls?: { ca: string } }) => openZoneStore(storage, { servers: nats.url, name: "intruder", ...opts }).then(
      async (store) => { await store.close(); return "connected"; },
      (err: unknown) => (err as Error).message,
    );
    const tls = { ca: pki.ca.certPem };
    expect(await attempt({ tls })).toMatch(/authorization violation/i);
    expect(await attempt({ tls, auth: { user: "bsfg-plant-a", pass: "guessed" } })).toMatch(/authorization violation/i);
    // The server speaks only TLS; a client that does not trust the zone's CA cannot get through.
    expect(await attempt({ auth: { user: "bsfg-plant-a", pass: password } })).toMatch(/certificate/i);
    // And the right ones do get in: what refused the others was the missing piece.
    expect(await attempt({ tls, auth: { user: "bsfg-plant-a", pass: password } })).toBe("connected");
  });
});
