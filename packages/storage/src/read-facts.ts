import { create, fromBinary } from "@bufbuild/protobuf";
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
  const facts: StoredFact[] = [];
  for (const m of range.messages) {
    const message = fromBinary(FactMessageSchema, m.data);
    if (skip.has(message.envelope?.fromZone ?? "")) continue;
    facts.push(create(StoredFactSchema, {
      offset: BigInt(m.seq),
      message,
      stream: consumer.stream,
      storedAtUnixMs: BigInt(m.storedAtMs),
    }));
  }
  const lastRead = range.messages.at(-1)?.seq ?? afterOffset;
  // Nothing left that matches: the page covers everything up to the high water
  // mark read before it, including facts the filter skipped.
  const lastOffset = range.complete ? Math.max(highWater, lastRead) : lastRead;
  return { facts, lastOffset, highWater: Math.max(highWater, lastRead) };
}
