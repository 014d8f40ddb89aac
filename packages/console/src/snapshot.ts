import { X509Certificate } from "node:crypto";
import type { LinkRates } from "./rates.js";

/** A peer link as the console shows it: the sync worker's status (its error text only to operators: see viewedBy). */
export interface ConsoleLink {
  readonly link: string;
  readonly peer: string;
  readonly consumer: string;
  readonly state: string;
  readonly connection: { readonly dial: string; readonly peerIdentity: string };
  readonly cursor: number;
  readonly highWater: number;
  readonly lagFacts: number;
  readonly lagSeconds: number;
  readonly appended: number;
  readonly quarantined: number;
  readonly lastError: { readonly code: string; readonly reason: string | undefined; readonly at: string; readonly message?: string | undefined } | undefined;
  /** Set while an operator holds the link paused. */
  readonly paused?: { readonly by: string; readonly at: string; readonly note?: string | undefined; readonly checkedAt?: string | undefined } | undefined;
  /** From storage in the peer zone to the append here, over the last minutes; undefined before any fact crossed. */
  readonly crossing?: { readonly p50Seconds: number; readonly p99Seconds: number; readonly samples: number } | undefined;
}

/** Where the console reads the zone: the sync deployable's store and worker. */
export interface ConsoleSource {
  readonly zone: string;
  readonly version: string;
  /** The zone's certificate (PEM), for its expiry. */
  readonly certificatePem: string;
  readonly streams: ReadonlyArray<{ readonly name: string; readonly maxBytes: number; readonly maxAgeMs: number }>;
  readonly rejectAtPercent: number;
  fillPercent(stream: string): Promise<number>;
  highWater(stream: string): Promise<number>;
  readonly consumers: ReadonlyArray<{ readonly name: string; readonly stream: string }>;
  cursor(consumer: string): Promise<number>;
  links(): readonly ConsoleLink[];
  /** Which sync replica holds a link's lease now (the one pulling it), if any. */
  leaseHolder(link: string): Promise<string | undefined>;
  /** When the first fact after `offset` in `stream` was stored (ms since the epoch), or undefined if there is none. */
  storedAfter(stream: string, offset: number): Promise<number | undefined>;
  /** The facts set aside and waiting for an operator. */
  quarantine(): Promise<readonly QuarantinedFact[]>;
}

/** A quarantine entry as the console lists it (its detail text only to viewers who may read the quarantine: see viewedBy). */
export interface QuarantinedFact {
  readonly id: number;
  readonly link: string;
  readonly reason: string;
  readonly messageId: string;
  readonly peerOffset: number;
  readonly state: string;
  readonly quarantinedAtMs: number;
  /** Why it was refused, in words (may name hosts, identities, values). */
  readonly detail?: string | undefined;
}

/**
 * Who is looking, when the console was reached over mTLS (docs/operations.md, "Console"):
 * the identity its certificate names and what the zone's policy lets it do. On the probe
 * port nobody is known, and the page is read-only.
 */
export interface ConsoleViewer {
  readonly identity: string;
  /** May pause and resume links and act on the quarantine (with the verbs below): policy `console: operate`. */
  readonly operate: boolean;
  /** Its quarantine verbs (policy `quarantine`): release and drop need operate as well. */
  readonly quarantine: readonly ("read" | "release" | "drop")[];
}

/** The newest entries the page lists; the counts cover them all. */
const QUARANTINE_LISTED = 50;

export interface ConsoleSnapshot {
  readonly zone: string;
  readonly version: string;
  readonly takenAt: string;
  readonly uptimeSeconds: number;
  readonly certificate: { readonly notAfter: string; readonly daysLeft: number } | undefined;
  readonly streams: ReadonlyArray<{
    readonly name: string; readonly fillPercent: number; readonly rejectAtPercent: number; readonly maxBytes: number; readonly maxAgeDays: number; readonly highWater: number;
    /** Age of the oldest fact some consumer of the stream has not confirmed; 0 when all are confirmed (or none consumes it). */
    readonly oldestUnconfirmedSeconds: number;
  }>;
  readonly links: ReadonlyArray<ConsoleLink & {
    /** The sync replica holding the link's lease (host:pid:suffix), if any: the one pulling it. */
    readonly holder: string | undefined;
    /** Seconds since the link's position last moved (0 while it moves or has nothing to move). */
    readonly sinceProgressSeconds: number;
    /** Facts appended per second, one point per sample, oldest first (the last 15 minutes). */
    readonly ratePerSecond: readonly number[];
  }>;
  readonly consumers: ReadonlyArray<{ readonly name: string; readonly stream: string; readonly cursor: number; readonly highWater: number; readonly behind: number }>;
  readonly quarantine: {
    readonly counts: ReadonlyArray<{ readonly link: string; readonly reason: string; readonly count: number }>;
    /** The newest entries, newest first, with their age. */
    readonly entries: ReadonlyArray<QuarantinedFact & { readonly ageSeconds: number }>;
  };
  /** Parts that could not be read (the store unavailable, say), by part: shown, not hidden. */
  readonly problems: readonly string[];
  /** Who is looking (mTLS console); absent on the probe port, where the page is read-only. */
  readonly viewer?: ConsoleViewer | undefined;
}

type LinkText = {
  readonly lastError?: { readonly code: string; readonly reason: string | undefined; readonly at: string; readonly message?: string | undefined } | undefined;
  readonly paused?: { readonly by: string; readonly at: string; readonly note?: string | undefined; readonly checkedAt?: string | undefined } | undefined;
};

/**
 * A link as anyone who reaches the probe port may see it (the read-only console, `/links`):
 * the last error's code, reason and time, not its text; who paused it and when, not the
 * operator's note. Free text can name hosts, identities and paths.
 */
export function withoutOperatorText<L extends LinkText>(link: L): Omit<L, "lastError" | "paused"> & {
  readonly lastError: { readonly code: string; readonly reason: string | undefined; readonly at: string } | undefined;
  readonly paused?: { readonly by: string; readonly at: string; readonly checkedAt?: string } | undefined;
} {
  const { lastError, paused, ...rest } = link;
  return {
    ...rest,
    lastError: lastError && { code: lastError.code, reason: lastError.reason, at: lastError.at },
    ...(paused ? { paused: { by: paused.by, at: paused.at, ...(paused.checkedAt !== undefined ? { checkedAt: paused.checkedAt } : {}) } } : {}),
  };
}

/**
 * The snapshot as `viewer` may see it: error text only for operators, a quarantine entry's
 * detail only for those who may read the quarantine (as `bsfg quarantine show` does). Anyone
 * else — the probe port's anonymous viewers — sees codes and reasons, never text, which can
 * name hosts, identities and paths.
 */
export function viewedBy(snapshot: ConsoleSnapshot, viewer: ConsoleViewer | undefined): ConsoleSnapshot {
  const text = viewer?.operate === true;
  const detail = viewer?.quarantine.includes("read") === true;
  return {
    ...snapshot,
    links: snapshot.links.map((l) => (text ? l : withoutOperatorText(l))),
    quarantine: { counts: snapshot.quarantine.counts, entries: detail ? snapshot.quarantine.entries : snapshot.quarantine.entries.map(({ detail: _hidden, ...entry }) => entry) },
    // What could not be read, by part; why (the substrate's error text) only for operators.
    problems: text ? snapshot.problems : snapshot.problems.map((p) => p.split(":")[0]!),
    ...(viewer ? { viewer } : {}),
  };
}

const processStarted = Date.now() - process.uptime() * 1_000;

/** Reads everything the page shows, once; a part that fails is reported, the rest still shown. */
export async function takeSnapshot(source: ConsoleSource, rates: LinkRates, now = Date.now()): Promise<ConsoleSnapshot> {
  const problems: string[] = [];
  const attempt = async <T>(part: string, read: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      problems.push(`${part}: ${(err as Error).message.slice(0, 200)}`);
      return fallback;
    }
  };
  const highWaters = new Map(await Promise.all(source.streams.map(async (st) => [st.name, await attempt(`stream ${st.name}`, () => source.highWater(st.name), 0)] as const)));
  const consumers = await Promise.all(source.consumers.map(async (c) => {
    const cursor = await attempt(`consumer ${c.name}`, () => source.cursor(c.name), 0);
    const highWater = highWaters.get(c.stream) ?? 0;
    return { name: c.name, stream: c.stream, cursor, highWater, behind: Math.max(0, highWater - cursor) };
  }));
  const streams = await Promise.all(source.streams.map(async (st) => {
    const highWater = highWaters.get(st.name) ?? 0;
    const behind = consumers.filter((c) => c.stream === st.name && c.cursor < highWater);
    const oldestCursor = Math.min(...behind.map((c) => c.cursor));
    const storedAt = behind.length === 0 ? undefined : await attempt(`stream ${st.name}`, () => source.storedAfter(st.name, oldestCursor), undefined);
    return {
      name: st.name,
      fillPercent: await attempt(`stream ${st.name}`, () => source.fillPercent(st.name), 0),
      rejectAtPercent: source.rejectAtPercent,
      maxBytes: st.maxBytes,
      maxAgeDays: Math.round((st.maxAgeMs / 86_400_000) * 10) / 10,
      highWater,
      oldestUnconfirmedSeconds: storedAt === undefined ? 0 : Math.max(0, Math.round((now - storedAt) / 1_000)),
    };
  }));
  const links = source.links();
  rates.sample(links, now);
  const holders = await Promise.all(links.map((l) => attempt(`link ${l.link}`, () => source.leaseHolder(l.link), undefined)));
  const quarantined = await attempt("quarantine", () => source.quarantine(), []);
  const counts = new Map<string, { link: string; reason: string; count: number }>();
  for (const q of quarantined) {
    const key = `${q.link}\u0000${q.reason}`;
    counts.set(key, { link: q.link, reason: q.reason, count: (counts.get(key)?.count ?? 0) + 1 });
  }
  return {
    zone: source.zone,
    version: source.version,
    takenAt: new Date(now).toISOString(),
    uptimeSeconds: Math.round((now - processStarted) / 1_000),
    certificate: certificateExpiry(source.certificatePem, now),
    streams,
    links: links.map((l, i) => ({
      ...l,
      holder: holders[i],
      lastError: currentError(l, rates.lastProgressAt(l.link)),
      sinceProgressSeconds: rates.sinceProgressSeconds(l.link, now),
      ratePerSecond: rates.series(l.link),
    })),
    consumers,
    quarantine: {
      counts: [...counts.values()],
      entries: [...quarantined].sort((a, b) => b.quarantinedAtMs - a.quarantinedAtMs).slice(0, QUARANTINE_LISTED)
        .map((q) => ({ ...q, ageSeconds: Math.max(0, Math.round((now - q.quarantinedAtMs) / 1_000)) })),
    },
    problems,
  };
}

/**
 * A link's last error, until the link moves again: an active link that progressed after it no
 * longer shows it, nor does one an operator paused after it moved again.
 */
function currentError(link: ConsoleLink, lastProgressAt: number | undefined): ConsoleLink["lastError"] {
  const error = link.lastError;
  if (!error || (link.state !== "active" && link.state !== "paused") || lastProgressAt === undefined) return error;
  return Date.parse(error.at) > lastProgressAt ? error : undefined;
}

function certificateExpiry(pem: string, now: number): ConsoleSnapshot["certificate"] {
  try {
    const notAfter = new Date(new X509Certificate(pem).validTo);
    return { notAfter: notAfter.toISOString(), daysLeft: Math.floor((notAfter.getTime() - now) / 86_400_000) };
  } catch {
    return undefined;
  }
}
