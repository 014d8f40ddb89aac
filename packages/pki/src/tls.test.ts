// The certificates are only worth something if node:tls accepts them exactly where the BSFG
// needs it to, and rejects them everywhere else. These tests run real TLS 1.3 handshakes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority } from "./ca.js";
import { issueCertificate } from "./issue.js";
import { connectClient, DAY_MS, startMtlsServer, type MtlsServer } from "./test-support.js";
import type { CertificateAuthority, IssuedCertificate } from "./types.js";

// How OpenSSL reports "this chain does not end in a CA I trust" depends on what it was sent:
// a bare leaf gives UNABLE_TO_*; a Node server auto-appends its CA from `ca`, so a client
// that does not trust that CA sees SELF_SIGNED_CERT_IN_CHAIN. All mean "not ours".
const UNTRUSTED_CHAIN = [
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
];

let ca: CertificateAuthority;
let serverCert: IssuedCertificate;
let server: MtlsServer;

beforeAll(async () => {
  ca = await createCertificateAuthority();
  serverCert = await issueCertificate(ca, { identity: "enterprise-bsfg", usage: "server" });
  server = await startMtlsServer({ key: serverCert.keyPem, cert: serverCert.certPem, ca: ca.certPem });
});

afterAll(async () => {
  await server?.close();
});

async function handshake(client: { keyPem: string; certPem: string }, more: { host?: string; servername?: string; ca?: string } = {}) {
  const [serverSide, clientSide] = await Promise.all([
    server.nextHandshake(),
    connectClient({ port: server.port, ca: more.ca ?? ca.certPem, key: client.keyPem, cert: client.certPem, ...more }),
  ]);
  return { serverSide, clientSide };
}

describe("mutual TLS with issued certificates", () => {
  it("accepts a client certificate from the same CA, and the server sees its CN", async () => {
    const client = await issueCertificate(ca, { identity: "mes-producer", usage: "client" });
    const { serverSide, clientSide } = await handshake(client, { servername: "localhost" });

    expect(serverSide).toMatchObject({ ok: true, peerCN: "mes-producer", protocol: "TLSv1.3" });
    expect(clientSide.authorized).toBe(true);
    expect(clientSide.received).toBe("hello mes-producer\n");
    expect(clientSide.error).toBeUndefined();
  });

  it("accepts a 'both' certificate as a client (a gateway dialling another gateway)", async () => {
    const gateway = await issueCertificate(ca, { identity: "plant-a-bsfg", usage: "both" });
    const { serverSide } = await handshake(gateway, { servername: "localhost" });
    expect(serverSide).toMatchObject({ ok: true, peerCN: "plant-a-bsfg" });
  });

  it("rejects a client certificate from another CA, even one with the same name", async () => {
    const otherCa = await createCertificateAuthority(); // same default CN "BSFG Dev CA"
    expect(otherCa.name).toBe(ca.name);
    const intruder = await issueCertificate(otherCa, { identity: "mes-producer", usage: "client" });
    const { serverSide, clientSide } = await handshake(intruder, { servername: "localhost" });

    expect(serverSide.ok).toBe(false);
    if (serverSide.ok) return;
    expect(UNTRUSTED_CHAIN).toContain(serverSide.authorizationError);
    expect(clientSide.received).toBe("");
  });

  it("rejects an expired client certificate with a certificate-expired error on the server", async () => {
    const now = Date.now();
    const expired = await issueCertificate(ca, {
      identity: "mes-producer",
      usage: "client",
      notBefore: new Date(now - 30 * DAY_MS),
      notAfter: new Date(now - DAY_MS),
    });
    const { serverSide, clientSide } = await handshake(expired, { servername: "localhost" });

    expect(serverSide.ok).toBe(false);
    if (serverSide.ok) return;
    expect(serverSide.authorizationError).toBe("CERT_HAS_EXPIRED");
    expect(clientSide.received).toBe("");
  });

  it("rejects a server-only certificate presented as a client certificate (extendedKeyUsage is enforced)", async () => {
    const serverOnly = await issueCertificate(ca, { identity: "plant-b-bsfg", usage: "server" });
    const { serverSide, clientSide } = await handshake(serverOnly, { servername: "localhost" });

    expect(serverSide.ok).toBe(false);
    if (serverSide.ok) return;
    expect(serverSide.authorizationError).toBe("INVALID_PURPOSE");
    expect(clientSide.received).toBe("");
  });
});

describe("server certificate verification by clients", () => {
  let client: IssuedCertificate;
  beforeAll(async () => {
    client = await issueCertificate(ca, { identity: "mes-producer", usage: "client" });
  });

  it("verifies the server as localhost (DNS SAN)", async () => {
    const { serverSide, clientSide } = await handshake(client, { host: "127.0.0.1", servername: "localhost" });
    expect(clientSide.error).toBeUndefined();
    expect(clientSide.authorized).toBe(true);
    expect(serverSide.ok).toBe(true);
  });

  it("verifies the server as 127.0.0.1 (IP SAN, no SNI)", async () => {
    const { serverSide, clientSide } = await handshake(client, { host: "127.0.0.1" });
    expect(clientSide.error).toBeUndefined();
    expect(clientSide.authorized).toBe(true);
    expect(serverSide.ok).toBe(true);
  });

  it("refuses a server whose certificate does not name the host dialled", async () => {
    const result = await connectClient({
      port: server.port,
      servername: "plant-b.example",
      ca: ca.certPem,
      key: client.keyPem,
      cert: client.certPem,
    });
    // Drain the server's view of this (aborted) connection so later tests see their own.
    await server.nextHandshake();
    expect(result.error?.code).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
    expect(result.received).toBe("");
  });

  it("refuses a server certificate from a CA it does not trust", async () => {
    const otherCa = await createCertificateAuthority();
    const result = await connectClient({ port: server.port, servername: "localhost", ca: otherCa.certPem, key: client.keyPem, cert: client.certPem });
    await server.nextHandshake();
    expect(result.secureConnect).toBe(false);
    expect(UNTRUSTED_CHAIN).toContain(result.error?.code);
  });
});
