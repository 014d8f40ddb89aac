import { AckPolicy, DeliverPolicy, type ConsumerConfig } from "@nats-io/jetstream";
import { pullFromNewConsumer, pullOnce, type RawMessage } from "./pull.js";
import { addReadConsumer } from "./read-consumer.js";
import type { Substrate } from "./substrate.js";
import { nanos } from "./units.js";

export type { RawMessage };

export interface RangeQuery {
  /** NATS subject filter inside the stream; default: the whole stream. */
  readonly filter?: string | undefined;
  /** First sequence to read (inclusive) … */
  readonly startSeq?: number;
  /** … or first stored time to read from. */
  readonly startTime?: Date;
  readonly limit: number;
  /** Byte budget for the page; the server stops before exceeding it. */
  readonly maxBytes?: number | undefined;
}

export interface Range {
  readonly messages: RawMessage[];
  /** The server confirmed it held no further matching message when the range was read. */
  readonly complete: boolean;
}

/**
 * Reads a bounded range of a stream with one short-lived, memory-only
 * consumer: one request to create it and one pull for the whole page, so a
 * page of hundreds costs a few round trips rather than one per message.
 */
export async function readRange(substrate: Substrate, stream: string, query: RangeQuery): Promise<Range> {
  const reader = await openRange(substrate, stream, query);
  try {
    return await reader.next(query.limit, query.maxBytes);
  } finally {
    reader.close();
  }
}

/** Consecutive pages of a stream from one consumer. */
export interface RangeReader {
  /** The next page: up to `limit` messages (and `maxBytes`) after the previous page. */
  next(limit: number, maxBytes?: number): Promise<Range>;
  /** Deletes the consumer (its inactivity threshold removes it if that fails). */
  close(): void;
}

/**
 * Opens a stream for reading page after page with one memory-only consumer, so a scan
 * of thousands of facts creates one consumer, not one per page: on a cluster each create
 * is a round trip through the meta leader, and while a node is down a create may go
 * unanswered and be retried (see read-consumer.ts). A page cut short by the byte budget
 * leaves the consumer's position unknown; the next page then starts a fresh consumer
 * right after it.
 */
export async function openRange(substrate: Substrate, stream: string, query: Omit<RangeQuery, "limit" | "maxBytes">): Promise<RangeReader> {
  const configFor = (from: { startSeq?: number | undefined; startTime?: Date | undefined }): Partial<ConsumerConfig> => ({
    ack_policy: AckPolicy.None,
    mem_storage: true,
    num_replicas: 1,
    // Only a safety net: the consumer is deleted right after the read.
    inactive_threshold: nanos(30_000),
    ...(from.startTime
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.startTime.toISOString() }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, from.startSeq ?? 1) }),
    ...(query.filter ? { filter_subject: query.filter } : {}),
  });
  const drop = (name: string) => {
    substrate.jsm.consumers.delete(stream, name).catch(() => {
      // inactive_threshold removes it if this fails
    });
  };
  let info = await addReadConsumer(substrate, stream, "bsfg_read_", configFor(query));
  /** What the consumer said it held when it was created; unknown after a pull. */
  let pending: number | undefined = info.num_pending;
  let lastSeq: number | undefined;
  let positioned = true;
  return {
    async next(limit, maxBytes) {
      if (!positioned) {
        drop(info.name);
        info = await addReadConsumer(substrate, stream, "bsfg_read_", configFor(lastSeq === undefined ? query : { startSeq: lastSeq + 1 }));
        pending = info.num_pending;
        positioned = true;
      }
      if (pending === 0) return { messages: [], complete: true };
      const pull = pending === undefined ? pullOnce : pullFromNewConsumer;
      const pulled = await pull(substrate, stream, info.name, { batch: limit, maxBytes });
      pending = undefined;
      const last = pulled.messages.at(-1);
      lastSeq = last?.seq ?? lastSeq;
      positioned = pulled.end === "batch" || pulled.end === "no_messages";
      // The pending count delivered with the last message says whether anything matching was left.
      return { messages: pulled.messages, complete: pulled.end === "no_messages" || last?.pending === 0 };
    },
    close() {
      drop(info.name);
    },
  };
}
