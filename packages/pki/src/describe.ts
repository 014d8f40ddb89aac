import { canonicalIp } from "./subject-alt-names.js";
import { x509 } from "./x509.js";

export interface CertificateDescription {
  /** Subject CN ("" if the subject has none). */
  subjectCN: string;
  dnsNames: string[];
  /** Canonical text form (IPv6 per RFC 5952, e.g. "::1"). */
  ipAddresses: string[];
  notBefore: Date;
  notAfter: Date;
  /** Issuer CN ("" if the issuer name has none). */
  issuerCN: string;
}

/**
 * Identity, SANs and validity of a PEM certificate (the first one, if given a chain),
 * for start-up checks and expiry metrics. Does not verify anything.
 */
export function describeCertificate(certPem: string): CertificateDescription {
  const cert = new x509.X509Certificate(certPem);
  const names = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  return {
    subjectCN: cert.subjectName.getField("CN")[0] ?? "",
    dnsNames: names.filter((n) => n.type === "dns").map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === "ip").map((n) => canonicalIp(n.value)),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    issuerCN: cert.issuerName.getField("CN")[0] ?? "",
  };
}

/** The extendedKeyUsage OIDs of a PEM certificate (empty if it has no such extension). */
export function readExtendedKeyUsages(certPem: string): string[] {
  const cert = new x509.X509Certificate(certPem);
  return (cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? []).map(String);
}
