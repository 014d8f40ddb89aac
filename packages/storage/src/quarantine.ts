import { DeliverPolicy } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import { Code, Reason, rejection } from "@bsfg/proto";
import { ApiCode, apiCode, isStoreFull, isWrongLastSequence } from "./substrate-errors.js";
import type { Substrate } from "./substrate.js";

/*
 * The quarantine: relayed facts this zone can never admit as they are (policy
 * denies them, their artifact does not exist, their bytes are not a valid
 * fact), set aside so that the facts behind them keep flowing. A stream of its
 * own, `bsfg-quarantine`; each entry is one subject, bsfg.quarantine.<link>.<peer
 * offset>: its first message is the fact's bytes exactly as the peer stored them
 * ("parked"), later messages record what an operator did with it ("releasing",
 * "released", "dropped"). Every write is conditional on the subject's last
 * sequence, so a fact is parked once however often a crashed page is retried,
 * and two operators cannot both release one entry.
 */

export const QUARANTINE_STREAM = "bsfg-quarantine";
const SUBJECT_PREFIX = "bsfg.quarantine";

export type QuarantineState = "parked" | "releasing" | "released" | "dropped";

/** Where a set-aside fact came from and why, as recorded when it was parked. */
export interface SetAsideRecord {
  readonly link: string;
  readonly peer: string;
  /** The peer's stream category the fact was read from (and this zone's it would go to). */
  readonly stream: string;
  readonly peerOffset: number;
  /** Empty when the bytes are not a readable fact. */
  readonly messageId: string;
  readonly reason: string;
  /** The human-readable why. */
  readonly detail: string;
  readonly peerStoredAtMs: number;
  /** The SHA-256 the peer served with the bytes, hex. */
  readonly servedDigest: string;
}

export interface QuarantineEntry extends SetAsideRecord {
  /** The parked message's sequence in bsfg-quarantine: the entry's id for operators. */
  readonly id: number;
  readonly state: QuarantineState;
  readonly quarantinedAtMs: number;
  /** The sequence of the entry's last record: the next transition's condition. */
  readonly lastSeq: number;
  /** When the state last changed (quarantinedAtMs while parked). */
  readonly stateAtMs: number;
  /** Who released or dropped it (the operator's certificate identity), and why. */
  readonly by?: string;
  readonly note?: string;
  /** Where a released fact is now: this zone's offset in `stream`. */
  readonly releasedOffset?: number;
}

const H = {
  state: "Bsfg-Quarantine-State",
  link: "Bsfg-Link",
  peer: "Bsfg-Peer",
  stream: "Bsfg-Stream",
  peerOffset: "Bsfg-Peer-Offset",
  messageId: "Bsfg-Message-Id",
  reason: "Bsfg-Reason",
  detail: "Bsfg-Reason-Detail",
  peerStoredAt: "Bsfg-Peer-Stored-At",
  servedDigest: "Bsfg-Served-Sha256",
  entry: "Bsfg-Quarantine-Entry",
  quarantinedAt: "Bsfg-Quarantined-At",
  by: "Bsfg-By",
  note: "Bsfg-Note",
  releasedOffset: "Bsfg-Released-Offset",
} as const;

export const entrySubject = (link: string, peerOffset: number): string => `${SUBJECT_PREFIX}.${link}.${peerOffset}`;

/** Header values are one line: a reason's detail may quote anything. */
const oneLine = (text: string, max = 1_000) => text.replace(/[\r\n]+/g, " ").slice(0, max);

function recordHeaders(record: SetAsideRecord): MsgHdrs {
  const h = natsHeaders();
  h.set(H.link, record.link);
  h.set(H.peer, record.peer);
  h.set(H.stream, record.stream);
  h.set(H.peerOffset, String(record.peerOffset));
  if (record.messageId !== "") h.set(H.messageId, oneLine(record.messageId, 256));
  h.set(H.reason, record.reason);
  h.set(H.detail, oneLine(record.detail));
  h.set(H.peerStoredAt, String(record.peerStoredAtMs));
  h.set(H.servedDigest, record.servedDigest);
  return h;
}

export interface Parked {
  readonly id: number;
  /** It was parked before (a page repeated after a crash): nothing was written. */
  readonly already: boolean;
}

/**
 * Parks a fact: its bytes as the peer stored them, with where it came from and
 * why. Refused with "maximum bytes exceeded" when the quarantine is full (the
 * link then waits and retries: nothing is dropped to make room).
 */
export async function park(substrate: Substrate, record: SetAsideRecord, fact: Uint8Array): Promise<Parked> {
  const subject = entrySubject(record.link, record.peerOffset);
  const h = recordHeaders(record);
  h.set(H.state, "parked");
  try {
    const ack = await substrate.js.publish(subject, fact, { headers: h, expect: { lastSubjectSequence: 0 } });
    return { id: ack.seq, already: false };
  } catch (err) {
    if (isStoreFull(err)) {
      throw rejection(Code.ResourceExhausted, Reason.StoreFull, `the quarantine (${QUARANTINE_STREAM}) is full: the link waits until an operator releases or drops entries, or storage.quarantine.maxBytes is raised`, { stream: QUARANTINE_STREAM });
    }
    if (!isWrongLastSequence(err)) throw err;
    const first = await substrate.jsm.direct.getMessage(QUARANTINE_STREAM, { next_by_subj: subject, seq: 1 });
    return { id: first?.seq ?? 0, already: true };
  }
}

/** Thrown when an entry moved on (another operator acted first) between reading and writing it. */
export class QuarantineEntryMoved extends Error {
  constructor(readonly id: number) {
    super(`quarantine entry ${id} changed while this action was in progress`);
    this.name = "QuarantineEntryMoved";
  }
}

export interface Transition {
  readonly state: Exclude<QuarantineState, "parked">;
  readonly by: string;
  readonly note?: string;
  readonly releasedOffset?: number;
}

/** Records the entry's next state, conditional on its last record being the one read. */
export async function transition(substrate: Substrate, entry: QuarantineEntry, next: Transition): Promise<QuarantineEntry> {
  const h = recordHeaders(entry);
  h.set(H.state, next.state);
  h.set(H.entry, String(entry.id));
  h.set(H.quarantinedAt, String(entry.quarantinedAtMs));
  h.set(H.by, oneLine(next.by, 256));
  if (next.note !== undefined) h.set(H.note, oneLine(next.note));
  if (next.releasedOffset !== undefined) h.set(H.releasedOffset, String(next.releasedOffset));
  try {
    const ack = await substrate.js.publish(entrySubject(entry.link, entry.peerOffset), undefined, { headers: h, expect: { lastSubjectSequence: entry.lastSeq } });
    return { ...entry, state: next.state, lastSeq: ack.seq, stateAtMs: Date.now(), by: next.by, ...(next.note !== undefined ? { note: next.note } : {}), ...(next.releasedOffset !== undefined ? { releasedOffset: next.releasedOffset } : {}) };
  } catch (err) {
    if (isWrongLastSequence(err)) throw new QuarantineEntryMoved(entry.id);
    throw err;
  }
}

function entryOf(seq: number, storedAtMs: number, h: MsgHdrs | undefined): QuarantineEntry | undefined {
  const state = h?.get(H.state) as QuarantineState | undefined;
  if (!h || !state) return undefined;
  const id = state === "parked" ? seq : Number(h.get(H.entry));
  const optional = (name: string) => (h.has(name) ? h.get(name) : undefined);
  const released = optional(H.releasedOffset);
  const by = optional(H.by);
  const note = optional(H.note);
  return {
    id,
    state,
    lastSeq: seq,
    link: h.get(H.link),
    peer: h.get(H.peer),
    stream: h.get(H.stream),
    peerOffset: Number(h.get(H.peerOffset)),
    messageId: optional(H.messageId) ?? "",
    reason: h.get(H.reason),
    detail: h.get(H.detail),
    peerStoredAtMs: Number(h.get(H.peerStoredAt)),
    servedDigest: h.get(H.servedDigest),
    quarantinedAtMs: state === "parked" ? storedAtMs : Number(h.get(H.quarantinedAt)),
    stateAtMs: storedAtMs,
    ...(by !== undefined ? { by } : {}),
    ...(note !== undefined ? { note } : {}),
    ...(released !== undefined ? { releasedOffset: Number(released) } : {}),
  };
}

/**
 * Every entry in its current state, oldest first; settled ones (released,
 * dropped) only when asked for. Reads the last record of each entry's subject.
 */
export async function listQuarantine(substrate: Substrate, options: { readonly settled?: boolean } = {}): Promise<QuarantineEntry[]> {
  const info = await substrate.jsm.streams.info(QUARANTINE_STREAM);
  if (info.state.messages === 0) return [];
  const consumer = await substrate.js.consumers.get(QUARANTINE_STREAM, { deliver_policy: DeliverPolicy.LastPerSubject, filter_subjects: [`${SUBJECT_PREFIX}.>`], headers_only: true });
  const entries: QuarantineEntry[] = [];
  try {
    // The newest record per subject, up to the last sequence at the time of asking.
    const last = info.state.last_seq;
    const subjects = info.state.num_subjects ?? Infinity;
    let seen = 0;
    const messages = await consumer.consume({ max_messages: 256 });
    for await (const m of messages) {
      seen++;
      const entry = entryOf(m.seq, Math.floor(m.info.timestampNanos / 1_000_000), m.headers);
      if (entry && (options.settled || entry.state === "parked" || entry.state === "releasing")) entries.push(entry);
      if (m.info.pending === 0 || seen >= subjects || m.seq >= last) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return entries.sort((a, b) => a.id - b.id);
}

/** One entry in its current state, with the fact's bytes; undefined if there is no such entry. */
export async function getQuarantined(substrate: Substrate, id: number): Promise<{ entry: QuarantineEntry; fact: Uint8Array } | undefined> {
  if (!Number.isSafeInteger(id) || id <= 0) return undefined;
  let parked;
  try {
    parked = await substrate.jsm.streams.getMessage(QUARANTINE_STREAM, { seq: id });
  } catch (err) {
    if (apiCode(err) === ApiCode.NoMessageFound) return undefined;
    throw err;
  }
  if (!parked || parked.header?.get(H.state) !== "parked") return undefined;
  const latest = await substrate.jsm.streams.getMessage(QUARANTINE_STREAM, { last_by_subj: parked.subject });
  const entry = latest ? entryOf(latest.seq, latest.timestamp ? Date.parse(latest.timestamp) : Date.now(), latest.header) : undefined;
  if (!entry) return undefined;
  // A stored message's time is its record's: the parked one's for a parked entry.
  return { entry: entry.state === "parked" ? { ...entry, quarantinedAtMs: Date.parse(parked.timestamp) } : entry, fact: parked.data };
}

/** One record of an entry: what happened to it, when, by whom. */
export interface QuarantineRecord {
  readonly state: QuarantineState;
  readonly atMs: number;
  readonly by?: string;
  readonly note?: string;
  readonly releasedOffset?: number;
}

/** Every record of an entry, oldest first (a handful: parked, then at most releasing and a settlement). */
export async function historyOf(substrate: Substrate, entry: Pick<QuarantineEntry, "id" | "link" | "peerOffset">): Promise<QuarantineRecord[]> {
  const subject = entrySubject(entry.link, entry.peerOffset);
  const records: QuarantineRecord[] = [];
  for (let seq = entry.id; ;) {
    const m = await substrate.jsm.direct.getMessage(QUARANTINE_STREAM, { next_by_subj: subject, seq }).catch((err: unknown) => {
      if (apiCode(err) === ApiCode.NoMessageFound || /no message found/i.test(String(err))) return null;
      throw err;
    });
    if (!m) return records;
    const record = entryOf(m.seq, m.timestamp ? Date.parse(m.timestamp) : 0, m.header);
    if (record) {
      records.push({
        state: record.state, atMs: record.stateAtMs,
        ...(record.by !== undefined ? { by: record.by } : {}), ...(record.note !== undefined ? { note: record.note } : {}),
        ...(record.releasedOffset !== undefined ? { releasedOffset: record.releasedOffset } : {}),
      });
    }
    seq = m.seq + 1;
  }
}

/** How the quarantine stands, for the gauges: parked entries by link and reason, and each link's oldest. */
export interface QuarantineSummary {
  readonly byLinkAndReason: ReadonlyArray<{ readonly link: string; readonly reason: string; readonly count: number }>;
  readonly oldestByLink: ReadonlyMap<string, number>;
}

export async function summarizeQuarantine(substrate: Substrate): Promise<QuarantineSummary> {
  const counts = new Map<string, { link: string; reason: string; count: number }>();
  const oldest = new Map<string, number>();
  for (const entry of await listQuarantine(substrate)) {
    const key = `${entry.link}\u0000${entry.reason}`;
    const row = counts.get(key) ?? { link: entry.link, reason: entry.reason, count: 0 };
    row.count++;
    counts.set(key, row);
    oldest.set(entry.link, Math.min(oldest.get(entry.link) ?? Infinity, entry.quarantinedAtMs));
  }
  return { byLinkAndReason: [...counts.values()], oldestByLink: oldest };
}
