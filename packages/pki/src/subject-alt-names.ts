import { isIP, isIPv4 } from "node:net";
import type { CertificateUsage } from "./types.js";
import { servesTls } from "./usage.js";

export interface SubjectAltNames {
  readonly dnsNames: string[];
  readonly ipAddresses: string[];
}

// A server in the dev estate is reached as localhost, 127.0.0.1 or ::1 depending on who
// resolves what (Node 17+ prefers ::1 for "localhost" on some hosts); cover all three.
const DEFAULT_SERVER_DNS = ["localhost"];
const DEFAULT_SERVER_IPS = ["127.0.0.1", "::1"];

/**
 * The SANs a certificate should carry. Server-capable certificates get the loopback
 * defaults for whichever list the caller left out; client-only certificates get no
 * defaults (their identity is the CN, nobody dials them by name).
 */
export function resolveSubjectAltNames(
  usage: CertificateUsage,
  dnsNames: readonly string[] | undefined,
  ipAddresses: readonly string[] | undefined,
): SubjectAltNames {
  const server = servesTls(usage);
  const dns = dnsNames ?? (server ? DEFAULT_SERVER_DNS : []);
  const ips = ipAddresses ?? (server ? DEFAULT_SERVER_IPS : []);
  for (const name of dns) {
    if (!/^[A-Za-z0-9_*]([A-Za-z0-9_.*-]*[A-Za-z0-9_])?$/.test(name)) throw new Error(`Invalid DNS name for SAN: ${JSON.stringify(name)}`);
  }
  for (const ip of ips) {
    if (isIP(ip) === 0) throw new Error(`Invalid IP address for SAN: ${JSON.stringify(ip)}`);
  }
  return { dnsNames: unique(dns.map((d) => d.toLowerCase())), ipAddresses: unique(ips.map(canonicalIp)) };
}

/**
 * One spelling per address, so "0:0:0:0:0:0:0:1" and "::1" compare equal. IPv6 goes through
 * the WHATWG URL parser, which serialises per RFC 5952 (lower case, longest zero run as ::).
 */
export function canonicalIp(ip: string): string {
  if (isIPv4(ip)) return ip;
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

/** Order-insensitive comparison; DNS names are case-insensitive, IPs compared canonically. */
export function sameSubjectAltNames(a: SubjectAltNames, b: SubjectAltNames): boolean {
  return sameSet(a.dnsNames.map((d) => d.toLowerCase()), b.dnsNames.map((d) => d.toLowerCase())) &&
    sameSet(a.ipAddresses.map(canonicalIp), b.ipAddresses.map(canonicalIp));
}

export function formatSubjectAltNames(sans: SubjectAltNames): string {
  const all = [...sans.dnsNames.map((d) => `DNS:${d}`), ...sans.ipAddresses.map((ip) => `IP:${ip}`)];
  return all.length === 0 ? "(none)" : all.join(", ");
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function sameSet(a: string[], b: string[]): boolean {
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((v) => right.has(v));
}
