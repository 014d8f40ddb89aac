import { createInbox, type Msg, type MsgHdrs } from "@nats-io/nats-core";
import type { Substrate } from "./substrate.js";

/** One message as the stream holds it. */
export interface RawMessage {
  readonly seq: number;
  readonly subject: string;
  readonly storedAtMs: number;
  readonly headers: MsgHdrs | undefined;
  readonly data: Uint8Array;
  /** Messages the consumer still had pending after this one. */
  readonly pending: number;
}

export interface PullRequest {
  readonly batch: number;
  /** Byte budget; the server stops before exceeding it. */
  readonly maxBytes?: number | undefined;
  readonly timeoutMs?: number;
}

/**
 * One pull request with both a message and a byte limit and no waiting: the
 * server sends what it holds, up to either limit, then a status. nats.js v3's
 * fetch() refuses to combine the two limits, which a bounded page needs.
 */
export async function pullOnce(substrate: Substrate, stream: string, consumer: string, request: PullRequest): Promise<RawMessage[]> {
  const { nc, apiPrefix } = substrate;
  const inbox = createInbox();
  const messages: RawMessage[] = [];
  const sub = nc.subscribe(inbox, { timeout: request.timeoutMs ?? 10_000 });
  nc.publish(
    `${apiPrefix}.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    JSON.stringify({ batch: request.batch, no_wait: true, ...(request.maxBytes ? { max_bytes: request.maxBytes } : {}) }),
    { reply: inbox },
  );
  try {
    for await (const m of sub) {
      if (isStatus(m)) break; // 404 no more messages, 408 expired, 409 byte budget reached
      messages.push(toRaw(m));
      if (messages.length >= request.batch) break;
    }
  } finally {
    sub.unsubscribe();
  }
  return messages;
}

/** JetStream deliveries always carry an ack reply subject; status messages never do. */
function isStatus(m: Msg): boolean {
  return !m.reply;
}

/**
 * The reply subject carries the stream sequence, timestamp and pending count:
 *   v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending>
 *   v2: $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending>[.<token>]
 */
function toRaw(m: Msg): RawMessage {
  const tokens = (m.reply ?? "").split(".");
  const at = tokens.length === 9 ? 4 : 6;
  const seq = Number(tokens[at + 1]);
  const nanos = tokens[at + 3] ?? "0";
  if (!Number.isSafeInteger(seq) || seq <= 0) throw new Error(`unexpected JetStream delivery subject "${m.reply}"`);
  return {
    seq,
    subject: m.subject,
    storedAtMs: Number(BigInt(nanos) / 1_000_000n),
    headers: m.headers,
    data: m.data,
    pending: Number(tokens[at + 4]),
  };
}
