import { X509Certificate as NodeX509Certificate, createPrivateKey } from "node:crypto";
import { chmod, mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createCertificateAuthority } from "./ca.js";
import { describeCertificate, readExtendedKeyUsages } from "./describe.js";
import { CERT_FILE_MODE, KEY_FILE_MODE, readIfExists, writeFileAtomic } from "./files.js";
import { assertValidCommonName } from "./identity.js";
import { issueCertificate } from "./issue.js";
import { formatSubjectAltNames, resolveSubjectAltNames, sameSubjectAltNames } from "./subject-alt-names.js";
import type { CertificateAuthority, CertificateUsage } from "./types.js";
import { usageFromExtendedKeyUsages } from "./usage.js";
import { daysBetween } from "./validity.js";

/** Anything expiring sooner is replaced, so a dev estate never dies of expiry mid-week. */
export const MIN_REMAINING_DAYS = 7;

export interface DevIdentity {
  identity: string;
  usage: CertificateUsage;
  dnsNames?: string[];
}

export interface EnsureDevPkiOptions {
  identities: DevIdentity[];
}

/** Whether a certificate on disk was kept, or (re)issued and why. */
export type CertificateOutcome = { action: "reused" } | { action: "issued"; reason: string };

export interface DevPki {
  /** Path of ca.crt: what servers and clients pass as `ca`. */
  caCert: string;
  /** Path of ca.key. */
  caKey: string;
  /** Paths per identity. */
  files: Record<string, { cert: string; key: string }>;
  /** What happened, for the CLI and for logs. */
  outcome: { ca: CertificateOutcome; identities: Record<string, CertificateOutcome> };
}

/**
 * Writes a dev PKI for a set of identities into `dir`: ca.crt, ca.key, <identity>.crt,
 * <identity>.key (keys mode 0600). Idempotent: an existing CA or certificate is reused while
 * it is valid for at least 7 more days, matches its key, and (for leaves) was issued by the
 * current CA for the requested CN, usage and SANs; anything else is (re)issued. A new CA
 * therefore re-issues every leaf.
 *
 * Not safe against concurrent calls on the same directory (two runs could each mint a CA);
 * run it once before starting the estate, or give each test its own directory.
 */
export async function ensureDevPki(dir: string, opts: EnsureDevPkiOptions): Promise<DevPki> {
  validateIdentities(opts.identities);
  const root = resolve(dir);
  // The folder holds private keys: keep it private if we are the ones creating it.
  await mkdir(root, { recursive: true, mode: 0o700 });
  const now = new Date();

  const caPaths = { cert: join(root, "ca.crt"), key: join(root, "ca.key") };
  const existingCa = await readPair(caPaths);
  let ca: CertificateAuthority;
  let caOutcome: CertificateOutcome;
  const caProblem = existingCa ? whyNotReusableCa(existingCa, now) : "no CA yet";
  if (existingCa && caProblem === undefined) {
    ca = { ...existingCa, name: describeCertificate(existingCa.certPem).subjectCN };
    await chmod(caPaths.key, KEY_FILE_MODE);
    caOutcome = { action: "reused" };
  } else {
    ca = await createCertificateAuthority();
    await writePair(caPaths, ca);
    caOutcome = { action: "issued", reason: caProblem ?? "no CA yet" };
  }

  const files: DevPki["files"] = {};
  const outcomes: DevPki["outcome"]["identities"] = {};
  for (const wanted of opts.identities) {
    const paths = { cert: join(root, `${wanted.identity}.crt`), key: join(root, `${wanted.identity}.key`) };
    files[wanted.identity] = paths;
    const existing = await readPair(paths);
    const problem = existing ? whyNotReusableLeaf(existing, ca, wanted, now) : "no certificate yet";
    if (problem === undefined) {
      await chmod(paths.key, KEY_FILE_MODE);
      outcomes[wanted.identity] = { action: "reused" };
      continue;
    }
    const issued = await issueCertificate(ca, {
      identity: wanted.identity,
      usage: wanted.usage,
      ...(wanted.dnsNames ? { dnsNames: wanted.dnsNames } : {}),
    });
    await writePair(paths, issued);
    outcomes[wanted.identity] = { action: "issued", reason: problem };
  }

  return { caCert: caPaths.cert, caKey: caPaths.key, files, outcome: { ca: caOutcome, identities: outcomes } };
}

interface PemPair {
  certPem: string;
  keyPem: string;
}

async function readPair(paths: { cert: string; key: string }): Promise<PemPair | undefined> {
  const [certPem, keyPem] = await Promise.all([readIfExists(paths.cert), readIfExists(paths.key)]);
  return certPem === undefined || keyPem === undefined ? undefined : { certPem, keyPem };
}

// Key first: if we die between the two writes, the next run sees a certificate that does not
// match its key and re-issues, instead of trusting a stale pair.
async function writePair(paths: { cert: string; key: string }, pair: PemPair): Promise<void> {
  await writeFileAtomic(paths.key, pair.keyPem, KEY_FILE_MODE);
  await writeFileAtomic(paths.cert, pair.certPem, CERT_FILE_MODE);
}

/** Why an existing CA cannot be reused, or undefined if it can. */
function whyNotReusableCa(pair: PemPair, now: Date): string | undefined {
  const parsed = parsePair(pair);
  if (typeof parsed === "string") return `existing CA unusable: ${parsed}`;
  if (!parsed.cert.ca) return "existing ca.crt is not a CA certificate";
  return whyNotValidLongEnough(parsed.cert, now, "CA");
}

/** Why an existing leaf cannot be reused, or undefined if it can. */
function whyNotReusableLeaf(pair: PemPair, ca: CertificateAuthority, wanted: DevIdentity, now: Date): string | undefined {
  const parsed = parsePair(pair);
  if (typeof parsed === "string") return `existing certificate unusable: ${parsed}`;
  const caCert = new NodeX509Certificate(ca.certPem);
  // checkIssued compares names and key identifiers; verify proves the signature.
  if (!parsed.cert.checkIssued(caCert) || !parsed.cert.verify(caCert.publicKey)) return "not issued by the current CA";
  const have = describeCertificate(pair.certPem);
  if (have.subjectCN !== wanted.identity) return `CN is ${JSON.stringify(have.subjectCN)}, wanted ${JSON.stringify(wanted.identity)}`;
  const usage = usageFromExtendedKeyUsages(readExtendedKeyUsages(pair.certPem));
  if (usage !== wanted.usage) return `usage is ${usage ?? "unknown"}, wanted ${wanted.usage}`;
  const want = resolveSubjectAltNames(wanted.usage, wanted.dnsNames, undefined);
  if (!sameSubjectAltNames(have, want)) return `SANs changed: ${formatSubjectAltNames(have)} -> ${formatSubjectAltNames(want)}`;
  return whyNotValidLongEnough(parsed.cert, now, "certificate");
}

function parsePair(pair: PemPair): { cert: NodeX509Certificate } | string {
  try {
    const cert = new NodeX509Certificate(pair.certPem);
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) return "key does not match certificate";
    return { cert };
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function whyNotValidLongEnough(cert: NodeX509Certificate, now: Date, what: string): string | undefined {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (notBefore.getTime() > now.getTime()) return `${what} not valid until ${notBefore.toISOString()}`;
  const remaining = daysBetween(now, notAfter);
  if (remaining < MIN_REMAINING_DAYS) {
    return remaining <= 0 ? `${what} expired ${notAfter.toISOString()}` : `${what} expires in ${remaining.toFixed(1)} days`;
  }
  return undefined;
}

// Identities become file names next to ca.crt/ca.key: no path separators, no dot files,
// and "ca" would overwrite the CA itself.
const FILE_SAFE_IDENTITY = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function validateIdentities(identities: readonly DevIdentity[]): void {
  const seen = new Set<string>();
  for (const { identity } of identities) {
    assertValidCommonName(identity);
    if (!FILE_SAFE_IDENTITY.test(identity)) {
      throw new Error(`Identity ${JSON.stringify(identity)} cannot be used as a file name (letters, digits, ".", "_", "-" only)`);
    }
    if (identity.toLowerCase() === "ca") throw new Error(`Identity "ca" would collide with the CA files`);
    // Case-insensitive file systems (macOS, Windows) would make "A" and "a" the same file.
    const key = identity.toLowerCase();
    if (seen.has(key)) throw new Error(`Identity ${JSON.stringify(identity)} listed twice`);
    seen.add(key);
  }
}
