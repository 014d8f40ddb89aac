import { checkServerIdentity, type PeerCertificate } from "node:tls";

/** The names a certificate answers to, as the policy looks them up: its CN, then its DNS SANs. */
export function certificateNames(cert: PeerCertificate | undefined): string[] {
  if (!cert || Object.keys(cert).length === 0) return [];
  const cnField = cert.subject?.CN as string | string[] | undefined;
  const cn = Array.isArray(cnField) ? (cnField[0] ?? "") : (cnField ?? "");
  const sans = (cert.subjectaltname ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4));
  return [...new Set([cn, ...sans].filter((n) => n !== ""))];
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
