import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadZoneConfig } from "@bsfg/config";
import { createBsfgClient, type BsfgClient } from "@bsfg/client";
import { Code } from "@bsfg/proto";
import { createCertificateAuthority, issueCertificate, type IssuedCertificate } from "@bsfg/pki";
import { pollUntil, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { startDeployable, type RunningDeployable } from "./run.js";
import { createTestPki, logCollector, producedFact, rejectionOf, writeTestZoneFiles, type TestPki } from "./test-support.js";

const serialOf = (cert: IssuedCertificate) => new X509Certificate(cert.certPem).serialNumber;

describe("certificate rotation without a restart", () => {
  let nats: NatsServerHandle;
  let pki: TestPki;
  let dir: string;
  let running: RunningDeployable;
  let logs: Array<Record<string, unknown>>;
  const clients: BsfgClient[] = [];

  const clientAs = (cert: IssuedCertificate) => {
    const client = createBsfgClient({ url: running.server.url, tls: { ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem }, retry: { attempts: 1 } });
    clients.push(client);
    return client;
  };
  /** The serial of the certificate the server presents to a new connection. */
  const servedSerial = () => new Promise<string>((resolve, reject) => {
    const producer = pki.certs["mes-producer"];
    const socket = tlsConnect({ host: "127.0.0.1", port: running.server.port, servername: "localhost", ca: pki.ca.certPem, cert: producer.certPem, key: producer.keyPem, ALPNProtocols: ["h2"] }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.once("error", reject);
  });
  const writeServerFiles = async (cert: string, key: string) => {
    await writeFile(join(dir, "zone.key"), key, { mode: 0o600 });
    await writeFile(join(dir, "zone.crt"), cert);
  };
  const expirySeconds = async (certificate: string) => {
    const text = await (await fetch(`${running.server.healthUrl}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("bsfg_certificate_expiry_seconds{") && l.includes(`certificate="${certificate}"`));
    return Number(line?.split(" ").at(-1));
  };

  beforeAll(async () => {
    nats = await startNatsServer({ domain: "plant-a" });
    pki = await createTestPki();
    dir = await mkdtemp(join(tmpdir(), "bsfg-tls-rotation-"));
    const configPath = await writeTestZoneFiles(pki, dir, nats, { tls: { ca: "ca.crt", cert: "zone.crt", key: "zone.key", reloadCheck: "100ms" } });
    const collected = logCollector();
    logs = collected.lines;
    running = await startDeployable("zone", loadZoneConfig(configPath), { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: collected.stream });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await running?.stop();
    await nats?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves a rotated server certificate to new connections within the check interval; open connections keep working", async () => {
    const producer = clientAs(pki.certs["mes-producer"]);
    await producer.appendFact(producedFact(1));
    expect(await servedSerial()).toBe(serialOf(pki.certs["plant-a-bsfg"]));
    const before = await expirySeconds("server");

    // A shorter-lived certificate, so the expiry gauge shows which one is in use.
    const rotated = await issueCertificate(pki.ca, { identity: "plant-a-bsfg", usage: "both", validDays: 30 });
    await writeServerFiles(rotated.certPem, rotated.keyPem);
    await pollUntil(async () => (await servedSerial()) === serialOf(rotated), { timeoutMs: 10_000, intervalMs: 50, what: "the rotated certificate served" });

    expect(logs.filter((l) => l.event === "tls_reloaded").at(-1)).toMatchObject({ certificate: "server", trigger: "interval", serial: serialOf(rotated) });
    // The client's HTTP/2 session predates the rotation and goes on; a new client connects to the new certificate.
    expect((await producer.appendFact(producedFact(2))).offset).toBeGreaterThan(0n);
    expect((await clientAs(pki.certs["mes-producer"]).appendFact(producedFact(3))).offset).toBeGreaterThan(0n);
    const after = await expirySeconds("server");
    expect(before).toBeGreaterThan(89 * 86_400);
    expect(after).toBeLessThan(30 * 86_400 + 60);
    expect(after).toBeGreaterThan(29 * 86_400);
  });

  it("keeps the working certificate when the new files are unusable (a key of another certificate, an empty key, another identity, another CA, a CA bundle cut short, expired), and says why", async () => {
    const inUse = await servedSerial();
    const other = await issueCertificate(pki.ca, { identity: "plant-a-bsfg", usage: "both" });
    const rejectedBefore = logs.filter((l) => l.event === "tls_reload_rejected").length;
    // The periodic check runs too, and may read the files between the key's and the certificate's
    // write: only the lines of our own (signal) checks are about the files as the test left them.
    const lastSignalled = () => logs.filter((l) => l.event === "tls_reload_rejected" && l.trigger === "signal").at(-1);

    // A CA bundle read while it is being rewritten: a second CA cut off. (Certificate and key are
    // still the ones in use, so no periodic check can take anything else meanwhile.)
    const strangeCa = await createCertificateAuthority({ name: "Some Other CA" });
    await writeFile(join(dir, "ca.crt"), pki.ca.certPem + strangeCa.certPem.slice(0, 200));
    expect(await running.reloadTls()).toBe("rejected");
    expect(lastSignalled()).toMatchObject({ certificate: "server", reason: expect.stringMatching(/ca file ends inside a certificate/) });
    await writeFile(join(dir, "ca.crt"), pki.ca.certPem);
    expect(await servedSerial()).toBe(inUse);

    await writeServerFiles(other.certPem, pki.certs["mes-producer"].keyPem);
    expect(await running.reloadTls()).toBe("rejected");
    expect(lastSignalled()).toMatchObject({ certificate: "server", reason: "the key does not belong to the certificate" });
    expect(await servedSerial()).toBe(inUse);

    // What a check sees while a file is being rewritten: Node would build a context without a key from it.
    await writeServerFiles(other.certPem, "");
    expect(await running.reloadTls()).toBe("rejected");
    expect(lastSignalled()).toMatchObject({ reason: "the key file is empty" });
    expect(await servedSerial()).toBe(inUse);

    // Another identity's certificate (peers know this zone by its names), and one from a CA the bundle does not hold.
    await writeServerFiles(pki.certs["mes-producer"].certPem, pki.certs["mes-producer"].keyPem);
    expect(await running.reloadTls()).toBe("rejected");
    expect(lastSignalled()).toMatchObject({ reason: expect.stringMatching(/names CN=mes-producer.*changing identity takes a restart/) });
    const foreign = await issueCertificate(strangeCa, { identity: "plant-a-bsfg", usage: "both" });
    await writeServerFiles(foreign.certPem, foreign.keyPem);
    expect(await running.reloadTls()).toBe("rejected");
    expect(lastSignalled()).toMatchObject({ reason: expect.stringMatching(/not signed by a CA of the ca file/) });

    const expired = await issueCertificate(pki.ca, { identity: "plant-a-bsfg", usage: "both", notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    await writeServerFiles(expired.certPem, expired.keyPem);
    expect(await running.reloadTls()).toBe("rejected");
    expect(lastSignalled()).toMatchObject({ certificate: "server", reason: expect.stringMatching(/expired/) });
    expect(await servedSerial()).toBe(inUse);
    expect(logs.filter((l) => l.event === "tls_reload_rejected").length).toBeGreaterThanOrEqual(rejectedBefore + 6);

    // Good files again: taken (by the signal or the interval, whichever reads them first).
    await writeServerFiles(other.certPem, other.keyPem);
    expect(["reloaded", "unchanged"]).toContain(await running.reloadTls());
    expect(await servedSerial()).toBe(serialOf(other));
  });

  it("a client presents a rotated certificate from its next call on, and a long poll in flight finishes", async () => {
    const peer = clientAs(pki.certs["enterprise-bsfg"]);
    // Drain the consumer, so the next fetch waits.
    for (;;) {
      const page = await peer.fetchFacts("enterprise-from-plant-a", { limit: 50 });
      if (page.facts.length === 0) break;
      await peer.confirmReceipt("enterprise-from-plant-a", page.lastOffset);
    }
    const waiting = peer.fetchFacts("enterprise-from-plant-a", { maxWaitMs: 1_500 });
    // The long poll is on the server (its session is open) before the rotation.
    await pollUntil(() => running.server.inFlight() >= 1, { timeoutMs: 5_000, intervalMs: 10, what: "the long poll on the server" });

    // Rotated to a certificate of an identity without policy: the next call is refused, so it presents the new one.
    peer.reloadTls({ ca: pki.ca.certPem, cert: pki.certs.stranger.certPem, key: pki.certs.stranger.keyPem });
    const refused = await rejectionOf(peer.fetchFacts("enterprise-from-plant-a", { limit: 1 }));
    expect(refused.code).toBe(Code.PermissionDenied);
    // The long poll sent before the rotation ends as a long poll does: an empty page, not an error.
    expect((await waiting).facts).toEqual([]);

    const renewed = await issueCertificate(pki.ca, { identity: "enterprise-bsfg", usage: "client" });
    peer.reloadTls({ ca: pki.ca.certPem, cert: renewed.certPem, key: renewed.keyPem });
    expect((await peer.fetchFacts("enterprise-from-plant-a", { limit: 1 })).facts).toEqual([]);
  });
});
