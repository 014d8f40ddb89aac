import type { DevIdentity } from "./dev-pki.js";
import type { CertificateUsage } from "./types.js";
import { isCertificateUsage } from "./usage.js";

export const USAGE = `Usage: bsfg-dev-pki <dir> <identity[:server|:client|:both]>...

Creates (or reuses) a development CA and one certificate per identity in <dir>:
  ca.crt, ca.key, <identity>.crt, <identity>.key

The usage suffix defaults to "both": BSFG gateways serve and dial, so the
permissive default is the one that works; give producers and consumers ":client".
Server-capable certificates carry SANs localhost, 127.0.0.1 and ::1.

Example: bsfg-dev-pki ./.pki plant-a-bsfg enterprise-bsfg mes-producer:client`;

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

export function parseIdentitySpec(spec: string): DevIdentity {
  const colon = spec.lastIndexOf(":");
  if (colon === -1) return { identity: spec, usage: DEFAULT_USAGE };
  const identity = spec.slice(0, colon);
  const usage = spec.slice(colon + 1);
  if (!isCertificateUsage(usage)) throw new Error(`unknown usage ${JSON.stringify(usage)} in ${JSON.stringify(spec)} (server, client or both)`);
  return { identity, usage };
}
