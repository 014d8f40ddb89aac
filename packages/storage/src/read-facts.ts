import { create, fromBinary } from "@bufbuild/protobuf";
import { FactMessageSchema, StoredFactSchema, type StoredFact } from "@bsfg/proto";
import type { ConsumerDefinition } from "./config.js";
import type { PageReaders } from "./page-readers.js";
import type { RawMessage } from "./pull.js";
import { factStreamName } from "./routing.js";
import { isLinkMarker } from "./shipping.js";
import { encodeStoredFacts, messageDigest, routeOf } from "./stored-fact-wire.js";
import type { Substrate } from "./substrate.js";

/** A page of a consumer's view of the log. */
export interface FactPage {
  /** The facts, decoded (`messages: "decoded"`); empty for an encoded page. */
  readonly facts: StoredFact[];
  /**
   * The facts as serialized StoredFacts, each preceded by its length
   * (`messages: "encoded"`): ready to be written as a repeated StoredFact
   * field, e.g. FetchFactsResponse.facts, without decoding anything.
   */
  readonly encodedFacts: Uint8Array[];
  /** How many facts the page holds, in either form. */
  readonly count: number;
  /** The highest offset the page covers, skipped facts included; confirm this to move past it. */
  readonly lastOffset: number;
  /** The stream's last offset as far as the page knows it. */
  readonly highWater: number;
}

export interface PageLimits {
  readonly limit: number;
  readonly maxBytes: number;
  /** "encoded" serves the stored bytes as they are; only binary codecs can carry them. */
  readonly messages?: "decoded" | "encoded";
  /** Include each fact's stored trace context (parses its headers: only when tracing is on). */
  readonly traceContext?: boolean;
}

type ConsumerView = Pick<ConsumerDefinition, "stream" | "subjectFilter" | "skipOrigins" | "targets"> & { readonly name?: string };

/**
 * The facts after `afterOffset` that a consumer may see: its stream, its
 * subject filter, minus skipped origins, and (with `targets`) only facts addressed to
 * one of those zones. A named consumer keeps its reader for the next page.
 */
export async function readFacts(substrate: Substrate, readers: PageReaders, consumer: ConsumerView, afterOffset: number, limits: PageLimits): Promise<FactPage> {
  const stream = factStreamName(consumer.stream);
  // With a filter, a page that finds nothing more matching covers the log up to
  // its end, which only the stream knows; without one the page itself ends there.
  const highWater = consumer.subjectFilter ? (await substrate.jsm.streams.info(stream)).state.last_seq : undefined;
  if (highWater !== undefined && highWater <= afterOffset) return emptyPage(afterOffset, highWater);

  const page = await readers.read(consumer.name, { stream, filter: consumer.subjectFilter, afterOffset, limit: limits.limit, maxBytes: limits.maxBytes, highWater });
  const skip = new Set(consumer.skipOrigins);
  const targets = consumer.targets === undefined ? undefined : new Set(consumer.targets);
  // A link's position markers share the stream with the facts; they are not facts.
  const unfiltered = skip.size === 0 && targets === undefined;
  const visible = unfiltered && !page.messages.some((m) => isLinkMarker(m.subject)) ? page.messages : page.messages.filter((m) => {
    if (isLinkMarker(m.subject)) return false;
    if (unfiltered) return true;
    const route = readableRouteOf(m.data);
    // Bytes that are not a readable fact are served whatever the filters: the reader sets them
    // aside where an operator sees them (its quarantine) instead of their vanishing here.
    if (route === undefined) return true;
    return !skip.has(route.from) && (targets === undefined || targets.has(route.to));
  });
  const lastRead = page.messages.at(-1)?.seq ?? afterOffset;
  const known = {
    lastOffset: page.lastOffset,
    highWater: Math.max(highWater ?? 0, page.complete ? page.lastOffset : lastRead + page.pendingAfter),
  };
  const contexts = limits.traceContext ? visible.map(traceContextOf) : undefined;
  if (limits.messages === "encoded") {
    return { facts: [], encodedFacts: encodeStoredFacts(visible, consumer.stream, contexts), count: visible.length, ...known };
  }
  const facts = visible.map((m, i) => create(StoredFactSchema, {
    offset: BigInt(m.seq),
    stream: consumer.stream,
    storedAtUnixMs: BigInt(m.storedAtMs),
    // Bytes that are not a FactMessage (written past the gateway) are served without a message,
    // with their digest: the page goes on, the reader sees the fact is unreadable.
    message: decodedOrUndefined(m.data),
    messageSha256: messageDigest(m.data),
    ...(contexts?.[i] ? { traceContext: contexts[i] } : {}),
  }));
  return { facts, encodedFacts: [], count: facts.length, ...known };
}

function decodedOrUndefined(data: Uint8Array) {
  try {
    return fromBinary(FactMessageSchema, data);
  } catch {
    return undefined;
  }
}

/** from_zone and to_zone, or undefined when the bytes do not hold a fact with both. */
function readableRouteOf(data: Uint8Array): { from: string; to: string } | undefined {
  try {
    const route = routeOf(data);
    return route.from === "" || route.to === "" ? undefined : route;
  } catch {
    return undefined;
  }
}

/** The W3C trace context the fact was stored with, if any. */
function traceContextOf(m: RawMessage): Record<string, string> | undefined {
  const traceparent = m.headers?.get("traceparent");
  if (!traceparent) return undefined;
  const tracestate = m.headers?.get("tracestate");
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

function emptyPage(afterOffset: number, highWater: number): FactPage {
  return { facts: [], encodedFacts: [], count: 0, lastOffset: afterOffset, highWater };
}
