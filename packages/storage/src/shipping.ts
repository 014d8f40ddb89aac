import { headers as natsHeaders, nuid, type NatsConnection } from "@nats-io/nats-core";
import { factStreamName } from "./routing.js";
import { ApiCode, apiCode, isWrongLastSequenceCode } from "./substrate-errors.js";
import { unlessConnectionLost } from "./connection-loss.js";
import type { Substrate } from "./substrate.js";

/*
 * Log shipping for relayed facts. A receiving zone pulls a peer's stream in the
 * peer's offset order, so "already here" is one number per peer link: the
 * highest peer offset appended locally. That number is a *position marker* in
 * the local fact stream, on a subject of its own per link, written in the same
 * atomic batch as the page's facts; the marker is also the link's fence: it is
 * published with "expected last subject sequence" = the marker the writer last
 * read, so of two writers on one link only the first commits a page and the
 * other's whole batch is refused. No per-fact dedupe entry, no time window.
 */

/** Subject token of link position markers; a fact's kind starts with a letter, so it never collides. */
const MARKER_TOKEN = "_relay";

/** Where a link's position markers live in the local stream of `category`. */
export const linkMarkerSubject = (category: string, link: string): string => `facts.${category}.${MARKER_TOKEN}.${link}`;

/** True for a link position marker: not a fact; every reader of a fact stream passes over it. */
export function isLinkMarker(subject: string): boolean {
  // facts.<category>._relay.<link>
  const first = subject.indexOf(".");
  const second = subject.indexOf(".", first + 1);
  return subject.startsWith(MARKER_TOKEN, second + 1) && subject.charCodeAt(second + 1 + MARKER_TOKEN.length) === 46;
}

/** How far a link has shipped, as its last position marker says. */
export interface LinkPosition {
  /** The highest peer offset whose fact (if admitted) is in the local log; 0 before the first page. */
  readonly peerOffset: number;
  /** The local sequence of that marker: the next page's fence (0: no marker yet). */
  readonly fence: number;
  /** Facts the marker's shipment carried (a page of more than 999 facts is shipped in parts). */
  readonly facts: number;
}

/** What a marker records, as JSON. */
interface MarkerBody {
  readonly peer: string;
  readonly peerStream: string;
  readonly peerOffset: number;
  readonly facts: number;
}

/** One relayed fact as it is appended here: the peer's stored bytes, untouched. */
export interface ShippedFact {
  /** The local subject (facts.<category>.<kind>). */
  readonly subject: string;
  /** The FactMessage bytes exactly as the peer stored and sent them. */
  readonly data: Uint8Array;
  /** Origin position, digest, trace context. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface ShipRequest {
  readonly category: string;
  readonly link: string;
  readonly peer: string;
  readonly peerStream: string;
  /** The highest peer offset this page covers (skipped facts included). */
  readonly peerOffset: number;
  /** The position this writer last read or wrote; the batch commits only if it still holds. */
  readonly fence: number;
  readonly facts: readonly ShippedFact[];
}

/** Atomic batches take at most this many messages (nats-server's default `batch.max_msgs`); one is the marker. */
export const MAX_FACTS_PER_SHIPMENT = 999;

/** Another writer moved the link's position first: this writer must stop and write nothing more. */
export class LinkFenced extends Error {
  constructor(readonly link: string, readonly fence: number) {
    super(`link ${link}: another writer shipped past position marker ${fence}; this writer is fenced`);
    this.name = "LinkFenced";
  }
}

/** A batch the server refused for a reason that is not the fence. */
export class ShipmentRefused extends Error {
  constructor(message: string, readonly apiCode: number | undefined) {
    super(message);
    this.name = "ShipmentRefused";
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * The link's last position marker, read from the stream's leader (a direct get
 * may be answered by a lagging replica, and a stale fence only costs a refused
 * batch, but a stale position would be read as "not shipped yet").
 */
export async function readLinkPosition(substrate: Substrate, category: string, link: string): Promise<LinkPosition> {
  try {
    const marker = await substrate.jsm.streams.getMessage(factStreamName(category), { last_by_subj: linkMarkerSubject(category, link) });
    if (!marker) return { peerOffset: 0, fence: 0, facts: 0 };
    const body = JSON.parse(decoder.decode(marker.data)) as MarkerBody;
    return { peerOffset: body.peerOffset, fence: marker.seq, facts: body.facts };
  } catch (err) {
    if (apiCode(err) === ApiCode.NoMessageFound) return { peerOffset: 0, fence: 0, facts: 0 };
    throw err;
  }
}

/**
 * Appends a page of relayed facts and the link's new position as one atomic
 * batch (marker first, fenced; then the facts; commit on the last). Either all
 * of it is in the log, or none of it. Returns the new position.
 */
export async function shipPage(substrate: Substrate, request: ShipRequest, timeoutMs = 10_000): Promise<LinkPosition> {
  if (request.facts.length > MAX_FACTS_PER_SHIPMENT) throw new RangeError(`a shipment holds at most ${MAX_FACTS_PER_SHIPMENT} facts, got ${request.facts.length}`);
  const { nc } = substrate;
  const batchId = nuid.next();
  const body: MarkerBody = { peer: request.peer, peerStream: request.peerStream, peerOffset: request.peerOffset, facts: request.facts.length };
  const messages: Array<{ subject: string; data: Uint8Array; headers: Readonly<Record<string, string>> }> = [
    { subject: linkMarkerSubject(request.category, request.link), data: encoder.encode(JSON.stringify(body)), headers: { "Nats-Expected-Last-Subject-Sequence": String(request.fence) } },
    ...request.facts,
  ];
  const ack = await publishAtomic(nc, batchId, messages, timeoutMs);
  if (ack.error) {
    if (isWrongLastSequenceCode(ack.error.err_code)) throw new LinkFenced(request.link, request.fence);
    throw new ShipmentRefused(`link ${request.link}: the page was refused: ${ack.error.description ?? "unknown error"}`, ack.error.err_code);
  }
  if (ack.batch !== batchId || ack.count !== messages.length || ack.seq === undefined) {
    throw new ShipmentRefused(`link ${request.link}: the commit acknowledged ${ack.count} messages of batch ${ack.batch}, expected ${messages.length} of ${batchId}`, undefined);
  }
  // The batch is stored contiguously: the marker is its first message.
  return { peerOffset: request.peerOffset, fence: ack.seq - messages.length + 1, facts: request.facts.length };
}

interface BatchAck {
  readonly seq?: number;
  readonly batch?: string;
  readonly count?: number;
  readonly error?: { readonly err_code?: number; readonly description?: string };
}

/**
 * ADR-50 atomic batch over core NATS: every message carries Nats-Batch-Id and
 * Nats-Batch-Sequence 1..n, the last Nats-Batch-Commit: 1. The messages before
 * the last go without a reply subject (the server stages them silently); the
 * commit's answer reports the batch as a whole, refusal included.
 */
async function publishAtomic(nc: NatsConnection, batchId: string, messages: ReadonlyArray<{ subject: string; data: Uint8Array; headers: Readonly<Record<string, string>> }>, timeoutMs: number): Promise<BatchAck> {
  const last = messages.length;
  const headersFor = (sequence: number, extra: Readonly<Record<string, string>>) => {
    const h = natsHeaders();
    for (const [key, value] of Object.entries(extra)) h.set(key, value);
    h.set("Nats-Batch-Id", batchId);
    h.set("Nats-Batch-Sequence", String(sequence));
    if (sequence === last) h.set("Nats-Batch-Commit", "1");
    return h;
  };
  messages.forEach((m, i) => {
    if (i + 1 < last) nc.publish(m.subject, m.data, { headers: headersFor(i + 1, m.headers) });
  });
  const commit = messages[last - 1]!;
  const reply = await unlessConnectionLost(nc, nc.request(commit.subject, commit.data, { headers: headersFor(last, commit.headers), timeout: timeoutMs }), `atomic batch ${batchId}`);
  return reply.json<BatchAck>();
}
