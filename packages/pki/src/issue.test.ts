import { X509Certificate as NodeX509Certificate, createPrivateKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createCertificateAuthority } from "./ca.js";
import { issueCertificate } from "./issue.js";
import { DAY_MS } from "./test-support.js";
import { x509 } from "./x509.js";

// Extension contents as OpenSSL (i.e. node:tls) reads them.
function extensionsOf(pem: string) {
  const cert = new x509.X509Certificate(pem);
  return {
    basic: cert.getExtension(x509.BasicConstraintsExtension),
    keyUsage: cert.getExtension(x509.KeyUsagesExtension),
    eku: cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String),
    ski: cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    aki: cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    san: cert.getExtension(x509.SubjectAlternativeNameExtension),
    serial: cert.serialNumber,
  };
}

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

describe("createCertificateAuthority", () => {
  it("is a critical CA:true root with keyCertSign|cRLSign, valid 365 days by default", async () => {
    const ca = await createCertificateAuthority();
    expect(ca.name).toBe("BSFG Dev CA");
    const node = new NodeX509Certificate(ca.certPem);
    expect(node.ca).toBe(true);
    expect(node.subject).toBe("CN=BSFG Dev CA");
    expect(node.checkIssued(node)).toBe(true); // self-signed
    const ext = extensionsOf(ca.certPem);
    expect(ext.basic).toMatchObject({ ca: true, critical: true });
    expect(ext.keyUsage?.critical).toBe(true);
    expect(ext.keyUsage?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(ext.ski).toMatch(/^[0-9a-f]{40}$/);
    const days = (Date.parse(node.validTo) - Date.now()) / DAY_MS;
    expect(days).toBeGreaterThan(364);
    expect(days).toBeLessThanOrEqual(365);
  });

  it("takes a name and a lifetime", async () => {
    const ca = await createCertificateAuthority({ name: "Plant A, Line 3 CA", validDays: 10 });
    expect(ca.name).toBe("Plant A, Line 3 CA");
    // The comma is data, not a separator.
    expect(new x509.X509Certificate(ca.certPem).subjectName.getField("CN")).toEqual(["Plant A, Line 3 CA"]);
    const days = (Date.parse(new NodeX509Certificate(ca.certPem).validTo) - Date.now()) / DAY_MS;
    expect(Math.round(days)).toBe(10);
  });

  it("exports a PKCS#8 key that node:crypto reads and that belongs to the certificate", async () => {
    const ca = await createCertificateAuthority();
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    const key = createPrivateKey(ca.keyPem);
    expect(key.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(new NodeX509Certificate(ca.certPem).checkPrivateKey(key)).toBe(true);
  });
});

describe("issueCertificate", () => {
  it("issues a CA:false leaf with digitalSignature, the requested EKU, SKI and an AKI pointing at the CA", async () => {
    const ca = await createCertificateAuthority();
    const leaf = await issueCertificate(ca, { identity: "plant-a-bsfg", usage: "both" });
    const node = new NodeX509Certificate(leaf.certPem);
    expect(node.ca).toBe(false);
    expect(node.subject).toBe("CN=plant-a-bsfg");
    expect(node.checkIssued(new NodeX509Certificate(ca.certPem))).toBe(true);
    expect(node.verify(new NodeX509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(node.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);

    const ext = extensionsOf(leaf.certPem);
    expect(ext.basic).toMatchObject({ ca: false, critical: true });
    expect(ext.keyUsage?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(ext.eku).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    expect(ext.ski).toMatch(/^[0-9a-f]{40}$/);
    expect(ext.aki).toBe(extensionsOf(ca.certPem).ski);
    expect(leaf.identity).toBe("plant-a-bsfg");
    expect(leaf.notAfter.getTime()).toBe(Date.parse(node.validTo));
  });

  it("maps usage to extendedKeyUsage", async () => {
    const ca = await createCertificateAuthority();
    const server = await issueCertificate(ca, { identity: "s", usage: "server" });
    const client = await issueCertificate(ca, { identity: "c", usage: "client" });
    expect(extensionsOf(server.certPem).eku).toEqual([SERVER_AUTH]);
    expect(extensionsOf(client.certPem).eku).toEqual([CLIENT_AUTH]);
  });

  it("gives server certificates loopback SANs by default and client certificates none", async () => {
    const ca = await createCertificateAuthority();
    const server = new NodeX509Certificate((await issueCertificate(ca, { identity: "s", usage: "server" })).certPem);
    expect(server.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    const client = new NodeX509Certificate((await issueCertificate(ca, { identity: "c", usage: "client" })).certPem);
    expect(client.subjectAltName).toBeUndefined();
  });

  it("uses the requested SANs", async () => {
    const ca = await createCertificateAuthority();
    const leaf = await issueCertificate(ca, {
      identity: "plant-a-bsfg",
      usage: "server",
      dnsNames: ["plant-a.bsfg.local", "localhost"],
      ipAddresses: ["10.0.0.7"],
    });
    expect(new NodeX509Certificate(leaf.certPem).subjectAltName).toBe("DNS:plant-a.bsfg.local, DNS:localhost, IP Address:10.0.0.7");
  });

  it("draws a fresh random positive serial number for every certificate", async () => {
    const ca = await createCertificateAuthority();
    const serials = await Promise.all(
      [1, 2, 3, 4].map(async (i) => extensionsOf((await issueCertificate(ca, { identity: `c${i}`, usage: "client" })).certPem).serial),
    );
    serials.push(extensionsOf(ca.certPem).serial);
    expect(new Set(serials).size).toBe(serials.length);
    for (const serial of serials) {
      expect(serial).toMatch(/^[0-9a-f]{32}$/);
      expect(Number.parseInt(serial.slice(0, 2), 16)).toBeLessThan(0x80); // positive without padding
    }
  });

  it("defaults to 90 days and honours validDays", async () => {
    const ca = await createCertificateAuthority();
    const defaulted = await issueCertificate(ca, { identity: "c", usage: "client" });
    expect(Math.round((defaulted.notAfter.getTime() - Date.now()) / DAY_MS)).toBe(90);
    const short = await issueCertificate(ca, { identity: "c", usage: "client", validDays: 2 });
    expect(Math.round((short.notAfter.getTime() - Date.now()) / DAY_MS)).toBe(2);
  });

  it("issues an already-expired certificate when asked to", async () => {
    const ca = await createCertificateAuthority();
    const notBefore = new Date(Date.UTC(2020, 0, 1));
    const notAfter = new Date(Date.UTC(2020, 0, 31));
    const leaf = await issueCertificate(ca, { identity: "old", usage: "client", notBefore, notAfter });
    const node = new NodeX509Certificate(leaf.certPem);
    expect(new Date(node.validFrom)).toEqual(notBefore);
    expect(new Date(node.validTo)).toEqual(notAfter);
    expect(leaf.notAfter).toEqual(notAfter);
  });

  it("with only notAfter in the past, starts validDays before it", async () => {
    const ca = await createCertificateAuthority();
    const notAfter = new Date(Math.floor((Date.now() - DAY_MS) / 1000) * 1000);
    const leaf = await issueCertificate(ca, { identity: "old", usage: "client", notAfter, validDays: 10 });
    const node = new NodeX509Certificate(leaf.certPem);
    expect(Date.parse(node.validTo) - Date.parse(node.validFrom)).toBe(10 * DAY_MS);
  });

  it("refuses nonsense instead of minting a useless certificate", async () => {
    const ca = await createCertificateAuthority();
    await expect(issueCertificate(ca, { identity: "", usage: "client" })).rejects.toThrow(/identity/);
    await expect(issueCertificate(ca, { identity: "s", usage: "server", ipAddresses: ["localhost"] })).rejects.toThrow(/IP address/);
    await expect(issueCertificate(ca, { identity: "s", usage: "server", dnsNames: ["bad name"] })).rejects.toThrow(/DNS name/);
    const when = new Date();
    await expect(issueCertificate(ca, { identity: "c", usage: "client", notBefore: when, notAfter: when })).rejects.toThrow(/notAfter/);
    await expect(issueCertificate(ca, { identity: "c", usage: "client", validDays: 0 })).rejects.toThrow(/validDays/);
  });

  it("refuses to sign with a key that is not the CA's, or with a certificate that is not a CA", async () => {
    const ca = await createCertificateAuthority();
    const other = await createCertificateAuthority();
    await expect(issueCertificate({ ...ca, keyPem: other.keyPem }, { identity: "c", usage: "client" })).rejects.toThrow(/does not match/);
    const leaf = await issueCertificate(ca, { identity: "c", usage: "client" });
    await expect(issueCertificate({ certPem: leaf.certPem, keyPem: leaf.keyPem, name: "c" }, { identity: "d", usage: "client" })).rejects.toThrow(
      /not a CA/,
    );
  });

  it("signs with a CA key given in SEC1 form (as openssl writes it)", async () => {
    const ca = await createCertificateAuthority();
    const sec1 = createPrivateKey(ca.keyPem).export({ type: "sec1", format: "pem" }).toString();
    expect(sec1).toContain("BEGIN EC PRIVATE KEY");
    const leaf = await issueCertificate({ ...ca, keyPem: sec1 }, { identity: "c", usage: "client" });
    expect(new NodeX509Certificate(leaf.certPem).verify(new NodeX509Certificate(ca.certPem).publicKey)).toBe(true);
  });
});
