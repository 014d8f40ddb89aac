import { createInbox, type Msg, type MsgHdrs } from "@nats-io/nats-core";
import { ConnectionLost, onConnectionLoss } from "./connection-loss.js";
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

/**
 * Why a pull ended. "batch" and "no_messages" leave the consumer right after
 * the last delivered message; after "byte_budget" or "expired" its position is
 * not known exactly (the server may have passed over the message that did not fit).
 */
export type PullEnd = "batch" | "no_messages" | "byte_budget" | "expired";

export interface Pulled {
  readonly messages: RawMessage[];
  readonly end: PullEnd;
}

/** The pull was answered by something other than the consumer (e.g. it no longer exists). */
export class PullRefusedError extends Error {
  constructor(readonly status: number, description: string) {
    super(`pull refused: ${status} ${description}`);
    this.name = "PullRefusedError";
  }
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
  let end: PullEnd | undefined;
  const sub = nc.subscribe(inbox);
  // One deadline for the whole pull: a connection lost mid-page must not leave us waiting forever.
  const timeoutMs = request.timeoutMs ?? 10_000;
  const deadline = setTimeout(() => sub.unsubscribe(), timeoutMs);
  // … nor a server that went away with the pull: the page is not coming.
  let lost = false;
  const unwatch = onConnectionLoss(nc, () => {
    lost = true;
    sub.unsubscribe();
  });
  nc.publish(
    `${apiPrefix}.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    JSON.stringify({ batch: request.batch, no_wait: true, ...(request.maxBytes ? { max_bytes: request.maxBytes } : {}) }),
    { reply: inbox },
  );
  try {
    for await (const m of sub) {
      if (isStatus(m)) {
        end = statusEnd(m);
        break;
      }
      messages.push(toRaw(m));
      if (messages.length >= request.batch) {
        end = "batch";
        break;
      }
    }
  } finally {
    clearTimeout(deadline);
    unwatch();
    sub.unsubscribe();
  }
  if (end === undefined) throw new PullUnansweredError(lost ? new ConnectionLost(`pull from ${stream}`).message : `pull from ${stream} did not complete within ${timeoutMs} ms`);
  return { messages, end };
}

/** How long a just-created consumer may take to become reachable across a cluster. */
const NEW_CONSUMER_DEADLINE_MS = 2_000;

/**
 * The first pull from a consumer just created. In a clustered zone the create
 * is answered before every server has learned where the consumer listens, so a
 * pull can briefly meet "503 no responders"; that alone is retried, with a
 * short backoff, until NEW_CONSUMER_DEADLINE_MS.
 */
export async function pullFromNewConsumer(substrate: Substrate, stream: string, consumer: string, request: PullRequest): Promise<Pulled> {
  const deadline = performance.now() + NEW_CONSUMER_DEADLINE_MS;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    try {
      return await pullOnce(substrate, stream, consumer, request);
    } catch (err) {
      if (!(err instanceof PullRefusedError && err.status === 503) || performance.now() + wait > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/** No answer in time: the consumer may be gone (a pull to a missing consumer is not answered through a domain's API) or JetStream is slow. */
export class PullUnansweredError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PullUnansweredError";
  }
}

function statusEnd(m: Msg): PullEnd {
  const code = m.headers?.code ?? 0;
  const description = m.headers?.description ?? "";
  if (code === 404) return "no_messages";
  if (code === 408) return "expired";
  // 409 also reports a deleted consumer or an exceeded limit: only the byte budget is an ordinary end.
  if (code === 409 && /message size exceeds maxbytes/i.test(description)) return "byte_budget";
  throw new PullRefusedError(code, description);
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
    storedAtMs: nanos.length > 6 ? Number(nanos.slice(0, -6)) : 0,
    // Parsed only when asked for: the read path never needs them.
    get headers() {
      return m.headers;
    },
    data: m.data,
    pending: Number(tokens[at + 4]),
  };
}
