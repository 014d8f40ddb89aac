import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCertificateAuthority, issueCertificate } from "@bsfg/pki";
import { reasonOf } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { createBsfgClient } from "@bsfg/client";
import { producedFact, rejectionOf, startTestZoneServices, type TestZoneServices } from "./test-support.js";

describe("mutual TLS: who may connect at all", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
  });
  afterAll(() => zone.dispose());

  const tlsFailuresLogged = () => zone.logs.filter((l) => l.event === "tls_failure").length;

  it("refuses a client without a certificate and logs the TLS failure", async () => {
    const before = tlsFailuresLogged();
    // Trusts the server, presents no certificate of its own.
    const socket = connect({ host: "127.0.0.1", port: zone.deployable.server.port, ca: zone.pki.ca.certPem, servername: "localhost", ALPNProtocols: ["h2"] });
    socket.on("error", () => undefined);
    await new Promise((resolve) => socket.once("close", resolve));
    await pollUntil(() => tlsFailuresLogged() > before, { what: "a tls_failure log line" });
    expect(zone.logs.filter((l) => l.event === "tls_failure").at(-1)).toMatchObject({ code: "NO_CLIENT_CERTIFICATE" });
  });

  it("lets a client insist on the server's identity: a peer zone is that zone, not anyone the CA signed", async () => {
    const peer = (serverIdentity: string) => createBsfgClient({
      url: zone.deployable.server.url,
      tls: { ca: zone.pki.ca.certPem, cert: zone.pki.certs["enterprise-bsfg"].certPem, key: zone.pki.certs["enterprise-bsfg"].keyPem },
      serverIdentity,
      retry: { attempts: 1 },
    });
    const right = peer("plant-a-bsfg");
    const wrong = peer("idmz-bsfg");
    try {
      const [appended] = await zone.client("mes-producer").appendFacts([producedFact(3)]);
      // The zone it named answers with the consumer's page: the fact just appended.
      const page = await right.fetchFacts("enterprise-from-plant-a", { limit: 10 });
      expect(page.facts.map((f) => [f.offset, f.message!.envelope!.messageId])).toEqual([[appended!.offset, appended!.messageId]]);
      await expect(wrong.fetchFacts("enterprise-from-plant-a", { limit: 1 })).rejects.toThrow(/is not identity "idmz-bsfg"/);
    } finally {
      right.close();
      wrong.close();
    }
  });

  it("refuses a certificate from another CA and logs it", async () => {
    const otherCa = await createCertificateAuthority({ name: "Somebody Else's CA" });
    const impostor = await issueCertificate(otherCa, { identity: "mes-producer", usage: "client" });
    const before = tlsFailuresLogged();
    const error = await rejectionOf(zone.client("mes-producer", { cert: impostor }).appendFacts([producedFact(1)]));
    // TLS 1.3 verifies the client after the client finished: the server resets the connection.
    expect([Code.Canceled, Code.Unavailable]).toContain(error.code);
    await pollUntil(() => tlsFailuresLogged() > before, { what: "a tls_failure log line" });
    expect(zone.logs.filter((l) => l.event === "tls_failure").at(-1)).toMatchObject({ code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
  });

  it("refuses an expired certificate and logs it", async () => {
    const expired = await issueCertificate(zone.pki.ca, { identity: "mes-producer", usage: "client", notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const before = tlsFailuresLogged();
    const error = await rejectionOf(zone.client("mes-producer", { cert: expired }).appendFacts([producedFact(2)]));
    expect([Code.Canceled, Code.Unavailable]).toContain(error.code);
    await pollUntil(() => tlsFailuresLogged() > before, { what: "a tls_failure log line" });
    expect(zone.logs.filter((l) => l.event === "tls_failure").at(-1)).toMatchObject({ code: "CERT_HAS_EXPIRED" });
  });

  it("logs a denied call exactly once, with identity and reason", async () => {
    const producer = zone.client("mes-producer");
    const before = zone.logs.length;
    const error = await rejectionOf(producer.fetchFacts("enterprise-from-plant-a"));
    expect(reasonOf(error)).toBe("consumer_not_allowed");
    const lines = zone.logs.slice(before).filter((l) => l.event === "rejected");
    expect(lines).toHaveLength(1);
    // Refused before the request was read (a producer has no consumer at all): the line cannot name the consumer asked for.
    expect(lines[0]).toMatchObject({ identity: "mes-producer", reason: "consumer_not_allowed", code: "PermissionDenied", before: "request read" });
  });

  it("answers health and readiness on the plain probe port", async () => {
    const health = zone.deployable.server.healthUrl!;
    expect((await fetch(`${health}/healthz`)).status).toBe(200);
    expect((await fetch(`${health}/readyz`)).status).toBe(200);
    await zone.nats.stop();
    await pollUntil(async () => (await fetch(`${health}/readyz`)).status === 503, { what: "readyz to report JetStream down" });
    await zone.nats.restart();
    await pollUntil(async () => (await fetch(`${health}/readyz`)).status === 200, { timeoutMs: 30_000, what: "readyz to recover" });
  });
});

describe("split deployables", () => {
  it.each([
    ["ingest", "fetchFacts"],
    ["egress", "appendFacts"],
    ["ledger", "appendFacts"],
  ] as const)("%s answers unimplemented for what it does not serve", async (role, call) => {
    const zone = await startTestZoneServices(role);
    try {
      const client = zone.client(call === "fetchFacts" ? "enterprise-bsfg" : "mes-producer");
      const error = await rejectionOf(call === "fetchFacts" ? client.fetchFacts("enterprise-from-plant-a") : client.appendFacts([producedFact(1)]));
      expect(error.code).toBe(Code.Unimplemented);
    } finally {
      await zone.dispose();
    }
  });
});
