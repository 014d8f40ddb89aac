import type { DevIdentity } from "./dev-pki.js";
import type { CertificateUsage } from "./types.js";
import { isCertificateUsage } from "./usage.js";

export const USAGE = `Usage: bsfg-dev-pki <dir> <identity[:server|:client|:both][=dns,dns...]>...

Creates (or reuses) a development CA and one certificate per identity in <dir>:
  ca.crt, ca.key, <identity>.crt, <identity>.key

The usage suffix defaults to "both": BSFG gateways serve and dial, so the
permissive default is the one that works; give producers and consumers ":client".
Server-capable certificates carry SANs 127.0.0.1 and ::1, and the DNS names
after "=" (default: localhost); name every host clients dial the server by.

Example: bsfg-dev-pki ./.pki plant-a-bsfg enterprise-bsfg mes-producer:client
         bsfg-dev-pki /pki idmz-bsfg:both=idmz-egress,idmz-ledger,localhost`;

const DEFAULT_USAGE: CertificateUsage = "both";

export interface CliArgs {
  dir: string;
  identities: DevIdentity[];
}

/** Parses argv (without node and script); throws with a message meant for the user. */
export function parseCliArgs(argv: readonly string[]): CliArgs {
  const [dir, ...specs] = argv;
  if (dir === undefined || specs.length === 0) throw new Error("expected a directory and at least one identity");
  return { dir, identities: specs.map(parseIdentitySpec) };
}

/** `identity[:usage][=dns,dns…]`; DNS names replace the default `localhost` SAN. */
export function parseIdentitySpec(spec: string): DevIdentity {
  const equals = spec.indexOf("=");
  const head = equals === -1 ? spec : spec.slice(0, equals);
  const dnsNames = equals === -1 ? undefined : spec.slice(equals + 1).split(",");
  if (dnsNames?.some((name) => name === "")) throw new Error(`empty DNS name in ${JSON.stringify(spec)} (write identity=name,name)`);
  const colon = head.lastIndexOf(":");
  const identity = colon === -1 ? head : head.slice(0, colon);
  const usage = colon === -1 ? DEFAULT_USAGE : head.slice(colon + 1);
  if (!isCertificateUsage(usage)) throw new Error(`unknown usage ${JSON.stringify(usage)} in ${JSON.stringify(spec)} (server, client or both)`);
  return { identity, usage, ...(dnsNames ? { dnsNames } : {}) };
}
