import { AckPolicy, DeliverPolicy, type ConsumerConfig } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nats-core";
import { pullOnce, type RawMessage } from "./pull.js";
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
  const config: Partial<ConsumerConfig> = {
    name: `bsfg_read_${nuid.next()}`,
    ack_policy: AckPolicy.None,
    mem_storage: true,
    num_replicas: 1,
    // Only a safety net: the consumer is deleted right after the read.
    inactive_threshold: nanos(30_000),
    ...(query.startTime
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: query.startTime.toISOString() }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, query.startSeq ?? 1) }),
    ...(query.filter ? { filter_subject: query.filter } : {}),
  };
  const info = await substrate.jsm.consumers.add(stream, config);
  try {
    if (info.num_pending === 0) return { messages: [], complete: true };
    // Ask for one more than needed: a 404 after the page then proves nothing matching was left out.
    const wanted = Math.min(query.limit, info.num_pending);
    const pulled = await pullOnce(substrate, stream, info.name, { batch: wanted === info.num_pending ? wanted + 1 : wanted, maxBytes: query.maxBytes });
    const messages = pulled.messages.slice(0, query.limit);
    return { messages, complete: pulled.end === "no_messages" && messages.length === pulled.messages.length };
  } finally {
    substrate.jsm.consumers.delete(stream, info.name).catch(() => {
      // inactive_threshold removes it if this fails
    });
  }
}
