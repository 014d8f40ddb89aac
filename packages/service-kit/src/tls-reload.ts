import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";

/** PEM contents of a certificate set: the CA bundle to trust, and our certificate and key. */
export interface TlsPems {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Where a certificate set's files are. */
export type TlsPaths = TlsPems;

export type TlsCheckOutcome = "unchanged" | "reloaded" | "rejected";

export interface TlsReloader {
  /** Reads the files now and applies them if they changed and are usable. */
  check(trigger: "interval" | "signal"): Promise<TlsCheckOutcome>;
  /** Stops the periodic check. */
  close(): void;
}

export interface TlsReloaderOptions {
  /** What the set is for, in logs: "server" or "sync-client". */
  readonly name: string;
  readonly paths: TlsPaths;
  /** What is in use now (read at start-up). */
  readonly current: TlsPems;
  /** How often the files are read; 0: only when `check` is called (SIGHUP). */
  readonly intervalMs: number;
  readonly log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void };
  /** Puts a new, checked set into use. */
  apply(pems: TlsPems): void;
}

/**
 * Certificates rotate without a restart. The files are read every `intervalMs` (and on
 * SIGHUP, through `check`); when their contents changed, the new set is checked before it
 * is used — Node must accept it as a TLS context (the key matches the certificate, every
 * PEM parses) and the certificate must be valid now — and then applied: new connections
 * get it, established ones keep theirs. A set that fails the check is logged
 * (`tls_reload_rejected`, with the reason) and not used; the working one stays, and the
 * same broken files are not reported again until they change. Files written one after the
 * other (certificate, then key) are read as a mismatch at first, rejected, and taken at the
 * next check once both are in place.
 */
export function startTlsReloader(opts: TlsReloaderOptions): TlsReloader {
  let current = opts.current;
  let lastRejected: string | undefined;
  // Checks run one at a time (interval and SIGHUP alike), so an older read is never applied after a newer one.
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  function enqueue(trigger: "interval" | "signal"): Promise<TlsCheckOutcome> {
    const result = queue.then(() => (closed ? "unchanged" as const : check(trigger)));
    queue = result.catch(() => undefined);
    return result;
  }

  async function check(trigger: "interval" | "signal"): Promise<TlsCheckOutcome> {
    let pems: TlsPems;
    try {
      const [ca, cert, key] = await Promise.all([opts.paths.ca, opts.paths.cert, opts.paths.key].map((p) => readFile(p, "utf8")));
      pems = { ca: ca!, cert: cert!, key: key! };
    } catch (err) {
      return reject(`${(err as Error).message}`, trigger, fingerprintOf(undefined, err));
    }
    if (pems.ca === current.ca && pems.cert === current.cert && pems.key === current.key) {
      lastRejected = undefined;
      return "unchanged";
    }
    const problem = usable(pems, current);
    if (problem) return reject(problem, trigger, fingerprintOf(pems));
    if (closed) return "unchanged";
    try {
      opts.apply(pems);
    } catch (err) {
      return reject(`not applied (${(err as Error).message})`, trigger, fingerprintOf(pems));
    }
    current = pems;
    lastRejected = undefined;
    const certificate = new X509Certificate(pems.cert);
    opts.log.info({ event: "tls_reloaded", certificate: opts.name, trigger, subject: certificate.subject.replace(/\n/g, ", "), serial: certificate.serialNumber, notAfter: new Date(certificate.validTo).toISOString() }, `${opts.name} certificate reloaded`);
    return "reloaded";
  }

  function reject(reason: string, trigger: string, fingerprint: string): TlsCheckOutcome {
    // Logged once per broken state, not at every interval.
    if (fingerprint !== lastRejected || trigger === "signal") {
      opts.log.error({ event: "tls_reload_rejected", certificate: opts.name, trigger, reason, files: opts.paths }, `${opts.name} certificate files not reloaded: ${reason}; the certificate in use stays`);
    }
    lastRejected = fingerprint;
    return "rejected";
  }

  let due = false;
  const timer = opts.intervalMs > 0
    ? setInterval(() => {
      // One periodic check waiting at most: a slow file system does not pile them up.
      if (due) return;
      due = true;
      void enqueue("interval").finally(() => {
        due = false;
      });
    }, opts.intervalMs)
    : undefined;
  timer?.unref();

  return {
    check: (trigger) => enqueue(trigger),
    close: () => {
      closed = true;
      clearInterval(timer);
    },
  };
}

/** Why a certificate set cannot be used in place of `current`, or undefined. */
function usable(pems: TlsPems, current: TlsPems): string | undefined {
  // A file read while it is being written can be empty or cut short, and Node builds a TLS
  // context from such files without complaint: without a key it fails every handshake, and a
  // CA bundle cut short trusts fewer (or no) peers. So every part must be whole and parse,
  // the key must belong to the certificate, and the certificate must chain to the bundle.
  for (const part of ["ca", "cert", "key"] as const) {
    if (pems[part].trim() === "") return `the ${part} file is empty`;
  }
  let certificate: X509Certificate;
  try {
    const cas = certificatesOf(pems.ca, "ca");
    const chain = certificatesOf(pems.cert, "cert");
    certificate = chain[0]!;
    if (!certificate.checkPrivateKey(createPrivateKey(pems.key))) return "the key does not belong to the certificate";
    if (!chainsTo(chain, cas)) return "the certificate is not signed by a CA of the ca file (directly or through the intermediates in the cert file)";
    createSecureContext({ ca: pems.ca, cert: pems.cert, key: pems.key, minVersion: "TLSv1.3" });
  } catch (err) {
    return `not a usable TLS set (${(err as Error).message})`;
  }
  const now = Date.now();
  if (Date.parse(certificate.validFrom) > now) return `the certificate is not valid before ${certificate.validFrom}`;
  if (Date.parse(certificate.validTo) <= now) return `the certificate expired on ${certificate.validTo}`;
  // Peers and policies know this service by its certificate's names: a rotation keeps them.
  const was = identityOf(new X509Certificate(current.cert));
  const is = identityOf(certificate);
  if (was !== is) return `the certificate names ${is}, not ${was} as the one in use; changing identity takes a restart`;
  return undefined;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM file; throws unless there is at least one and every block is whole. */
function certificatesOf(pem: string, part: string): X509Certificate[] {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  const begins = pem.split("-----BEGIN ").length - 1;
  const certificateBegins = pem.split("-----BEGIN CERTIFICATE-----").length - 1;
  if (blocks.length === 0) throw new Error(`the ${part} file holds no certificate`);
  if (certificateBegins !== blocks.length) throw new Error(`the ${part} file ends inside a certificate`);
  if (part === "ca" && begins !== blocks.length) throw new Error("the ca file holds something other than certificates");
  return blocks.map((block) => new X509Certificate(block));
}

/** The leaf (first) is issued by a CA of the bundle, directly or through the other certificates of its file. */
function chainsTo(chain: readonly X509Certificate[], cas: readonly X509Certificate[]): boolean {
  const issuedBy = (child: X509Certificate, parent: X509Certificate) => child.checkIssued(parent) && child.verify(parent.publicKey);
  let current = chain[0]!;
  for (let hops = 0; hops <= chain.length; hops++) {
    if (cas.some((ca) => issuedBy(current, ca))) return true;
    const next = chain.find((c) => c !== current && issuedBy(current, c));
    if (!next) return false;
    current = next;
  }
  return false;
}

/** Subject CN and DNS names, in a stable form. */
function identityOf(certificate: X509Certificate): string {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(certificate.subject)?.[1] ?? "";
  const dns = (certificate.subjectAltName ?? "").split(", ").filter((n) => n.startsWith("DNS:")).sort();
  return `CN=${cn}${dns.length > 0 ? ` (${dns.join(", ")})` : ""}`;
}

/** What identifies a rejected state, so it is logged once. */
function fingerprintOf(pems: TlsPems | undefined, err?: unknown): string {
  return pems ? `${pems.ca}\0${pems.cert}\0${pems.key}` : `error:${(err as Error | undefined)?.message ?? ""}`;
}
