import { create, fromBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { FactMessageSchema, StoredFactSchema, type StoredFact } from "@bsfg/proto";
import type { ConsumerDefinition } from "./config.js";
import { readRange } from "./read-range.js";
import { factStreamName } from "./routing.js";
import type { Substrate } from "./substrate.js";

/** A page of a consumer's view of the log. */
export interface FactPage {
  readonly facts: StoredFact[];
  /** The highest offset the page covers, skipped facts included; confirm this to move past it. */
  readonly lastOffset: number;
  /** The stream's last offset when the page was read. */
  readonly highWater: number;
}

export interface PageLimits {
  readonly limit: number;
  readonly maxBytes: number;
  /**
   * "encoded": leave each fact's message as the stored protobuf bytes, carried as
   * field 2 of StoredFact, so a binary response needs no decode and re-encode.
   * Only for binary codecs: JSON serialization would drop it.
   */
  readonly messages?: "decoded" | "encoded";
}

/** The facts after `afterOffset` that a consumer may see: its stream, its subject filter, minus skipped origins. */
export async function readFacts(
  substrate: Substrate,
  consumer: Pick<ConsumerDefinition, "stream" | "subjectFilter" | "skipOrigins">,
  afterOffset: number,
  limits: PageLimits,
): Promise<FactPage> {
  const stream = factStreamName(consumer.stream);
  const highWater = (await substrate.jsm.streams.info(stream)).state.last_seq;
  if (highWater <= afterOffset) return { facts: [], lastOffset: afterOffset, highWater };

  const range = await readRange(substrate, stream, {
    startSeq: afterOffset + 1,
    limit: limits.limit,
    maxBytes: limits.maxBytes,
    ...(consumer.subjectFilter ? { filter: consumer.subjectFilter } : {}),
  });
  const skip = new Set(consumer.skipOrigins);
  const encoded = limits.messages === "encoded";
  const facts: StoredFact[] = [];
  for (const m of range.messages) {
    const message = !encoded || skip.size > 0 ? fromBinary(FactMessageSchema, m.data) : undefined;
    if (message && skip.has(message.envelope?.fromZone ?? "")) continue;
    const fact = create(StoredFactSchema, {
      offset: BigInt(m.seq),
      stream: consumer.stream,
      storedAtUnixMs: BigInt(m.storedAtMs),
      ...(encoded ? {} : { message }),
    });
    // Field 2 (message) as stored: a decoder cannot tell it from a re-encoded message (field order is free).
    if (encoded) fact.$unknown = [{ no: 2, wireType: WireType.LengthDelimited, data: new BinaryWriter().bytes(m.data).finish() }];
    facts.push(fact);
  }
  const lastRead = range.messages.at(-1)?.seq ?? afterOffset;
  // Nothing left that matches: the page covers everything up to the high water
  // mark read before it, including facts the filter skipped.
  const lastOffset = range.complete ? Math.max(highWater, lastRead) : lastRead;
  return { facts, lastOffset, highWater: Math.max(highWater, lastRead) };
}
