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
  let running: Promise<TlsCheckOutcome> | undefined;

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
    const problem = usable(pems);
    if (problem) return reject(problem, trigger, fingerprintOf(pems));
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

  const timer = opts.intervalMs > 0
    ? setInterval(() => {
      running ??= check("interval").finally(() => {
        running = undefined;
      });
    }, opts.intervalMs)
    : undefined;
  timer?.unref();

  return {
    check: (trigger) => check(trigger),
    close: () => clearInterval(timer),
  };
}

/** Why a certificate set cannot be used, or undefined. */
function usable(pems: TlsPems): string | undefined {
  // A file read while it is being written can be empty, and Node builds a TLS context without
  // a key (or a certificate) from an empty one without complaint: that context fails every
  // handshake. So each part must be there, parse, and the key must belong to the certificate.
  for (const part of ["ca", "cert", "key"] as const) {
    if (pems[part].trim() === "") return `the ${part} file is empty`;
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pems.cert);
    if (!certificate.checkPrivateKey(createPrivateKey(pems.key))) return "the key does not belong to the certificate";
    createSecureContext({ ca: pems.ca, cert: pems.cert, key: pems.key, minVersion: "TLSv1.3" });
  } catch (err) {
    return `not a usable TLS set (${(err as Error).message})`;
  }
  const now = Date.now();
  if (Date.parse(certificate.validFrom) > now) return `the certificate is not valid before ${certificate.validFrom}`;
  if (Date.parse(certificate.validTo) <= now) return `the certificate expired on ${certificate.validTo}`;
  return undefined;
}

/** What identifies a rejected state, so it is logged once. */
function fingerprintOf(pems: TlsPems | undefined, err?: unknown): string {
  return pems ? `${pems.ca}\0${pems.cert}\0${pems.key}` : `error:${(err as Error | undefined)?.message ?? ""}`;
}
