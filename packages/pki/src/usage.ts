import type { CertificateUsage } from "./types.js";

// extendedKeyUsage OIDs (RFC 5280 §4.2.1.12). OpenSSL enforces them during verification:
// a server-only certificate presented as a client certificate fails with INVALID_PURPOSE.
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

export function extendedKeyUsages(usage: CertificateUsage): string[] {
  switch (usage) {
    case "server":
      return [SERVER_AUTH];
    case "client":
      return [CLIENT_AUTH];
    case "both":
      return [SERVER_AUTH, CLIENT_AUTH];
  }
}

/** The usage a certificate's EKU list amounts to, or undefined if it is none of ours. */
export function usageFromExtendedKeyUsages(oids: readonly string[]): CertificateUsage | undefined {
  const server = oids.includes(SERVER_AUTH);
  const client = oids.includes(CLIENT_AUTH);
  if (server && client) return "both";
  if (server) return "server";
  if (client) return "client";
  return undefined;
}

export function isCertificateUsage(value: string): value is CertificateUsage {
  return value === "server" || value === "client" || value === "both";
}

export function servesTls(usage: CertificateUsage): boolean {
  return usage === "server" || usage === "both";
}
