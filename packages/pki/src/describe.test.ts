import { describe, expect, it } from "vitest";
import { createCertificateAuthority } from "./ca.js";
import { describeCertificate } from "./describe.js";
import { issueCertificate } from "./issue.js";

describe("describeCertificate", () => {
  it("returns CN, SANs, validity and issuer CN", async () => {
    const ca = await createCertificateAuthority({ name: "Estate CA" });
    const notBefore = new Date("2030-01-01T00:00:00Z");
    const notAfter = new Date("2030-04-01T12:30:45Z");
    const leaf = await issueCertificate(ca, {
      identity: "enterprise-bsfg",
      usage: "server",
      dnsNames: ["enterprise.bsfg.local"],
      // Spelled out in full: the description uses the canonical short form.
      ipAddresses: ["10.1.2.3", "2001:db8:0:0:0:0:0:1"],
      notBefore,
      notAfter,
    });
    expect(describeCertificate(leaf.certPem)).toEqual({
      subjectCN: "enterprise-bsfg",
      dnsNames: ["enterprise.bsfg.local"],
      ipAddresses: ["10.1.2.3", "2001:db8::1"],
      notBefore,
      notAfter,
      issuerCN: "Estate CA",
    });
  });

  it("reports the default server SANs and no SANs for a client certificate", async () => {
    const ca = await createCertificateAuthority();
    const server = describeCertificate((await issueCertificate(ca, { identity: "plant-a-bsfg", usage: "server" })).certPem);
    expect(server).toMatchObject({ dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"], issuerCN: "BSFG Dev CA" });
    const client = describeCertificate((await issueCertificate(ca, { identity: "mes-producer", usage: "client" })).certPem);
    expect(client).toMatchObject({ subjectCN: "mes-producer", dnsNames: [], ipAddresses: [] });
  });

  it("describes the CA itself", async () => {
    const ca = await createCertificateAuthority();
    expect(describeCertificate(ca.certPem)).toMatchObject({ subjectCN: "BSFG Dev CA", issuerCN: "BSFG Dev CA", dnsNames: [] });
  });

  it("rejects input that is not a certificate", () => {
    expect(() => describeCertificate("not a certificate")).toThrow();
  });
});
