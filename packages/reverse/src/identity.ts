import { checkServerIdentity, type PeerCertificate } from "node:tls";

/** Who a certificate names: its CN, its DNS SANs, and both in the order the policy looks them up (CN first). */
export interface CertificateIdentity {
  readonly cn: string;
  readonly sans: readonly string[];
  readonly names: readonly string[];
}

/** The identity a (verified) certificate carries; empty for none. */
export function certificateIdentity(cert: PeerCertificate | undefined): CertificateIdentity {
  if (!cert || Object.keys(cert).length === 0) return { cn: "", sans: [], names: [] };
  const cnField = cert.subject?.CN as string | string[] | undefined;
  const cn = Array.isArray(cnField) ? (cnField[0] ?? "") : (cnField ?? "");
  const sans = (cert.subjectaltname ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4));
  return { cn, sans, names: [...new Set([cn, ...sans].filter((n) => n !== ""))] };
}

/** The names a certificate answers to, as the policy looks them up: its CN, then its DNS SANs. */
export function certificateNames(cert: PeerCertificate | undefined): string[] {
  return [...certificateIdentity(cert).names];
}

/** The host name check, plus: the certificate must carry `identity` (the peer zone's, not just anyone the CA signed). */
export function requireIdentity(identity: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const hostError = checkServerIdentity(host, cert);
    if (hostError) return hostError;
    const names = certificateNames(cert);
    return names.includes(identity) ? undefined : new Error(`the peer's certificate names ${names.join(", ") || "nobody"}, not ${identity}`);
  };
}
