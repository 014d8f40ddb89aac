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

export interface Pulled {
  readonly messages: RawMessage[];
  /** The server said it had nothing more (404) before the batch was full. */
  readonly exhausted: boolean;
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
export async function pullOnce(substrate: Substrate, stream: string, consumer: string, request: PullRequest): Promise<Pulled> {
  const { nc, apiPrefix } = substrate;
  const inbox = createInbox();
  const messages: RawMessage[] = [];
  let exhausted = false;
  let finished = false;
  const sub = nc.subscribe(inbox);
  // One deadline for the whole pull: a connection lost mid-page must not leave us waiting forever.
  const timeoutMs = request.timeoutMs ?? 10_000;
  const deadline = setTimeout(() => sub.unsubscribe(), timeoutMs);
  nc.publish(
    `${apiPrefix}.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    JSON.stringify({ batch: request.batch, no_wait: true, ...(request.maxBytes ? { max_bytes: request.maxBytes } : {}) }),
    { reply: inbox },
  );
  try {
    for await (const m of sub) {
      if (isStatus(m)) {
        // 404: nothing more; 408: request expired; 409: the byte budget is reached.
        exhausted = m.headers?.code === 404;
        finished = true;
        break;
      }
      messages.push(toRaw(m));
      if (messages.length >= request.batch) {
        finished = true;
        break;
      }
    }
  } finally {
    clearTimeout(deadline);
    sub.unsubscribe();
  }
  if (!finished) throw new Error(`pull from ${stream} did not complete within ${timeoutMs} ms`);
  return { messages, exhausted };
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
