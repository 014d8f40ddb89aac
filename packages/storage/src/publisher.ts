import { createInbox, headers as natsHeaders, nuid, type MsgHdrs, type NatsConnection, type Msg } from "@nats-io/nats-core";
import { ConnectionLost, onConnectionLoss } from "./connection-loss.js";

/** A JetStream publish acknowledgement. */
export interface Ack {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
  /** An atomic batch's commit: its id and how many messages it stored (ending at `seq`). */
  readonly batch?: string;
  readonly count?: number;
}

/** A JetStream API error from a publish, with the server's err_code. */
export class PublishError extends Error {
  constructor(
    message: string,
    readonly apiCode: number | undefined,
    /** The server answered and refused: the message was certainly not stored. */
    readonly definite = false,
  ) {
    super(message);
    this.name = "PublishError";
  }
}

export interface PublishOptions {
  /** More headers to store with the message, e.g. a fact's trace context. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Publish only if the subject's last sequence is this (0: no message on the subject yet). */
  readonly expectLastSubjectSequence?: number;
  /** JetStream's own duplicate detection key (Nats-Msg-Id), honoured within the stream's duplicate window. */
  readonly msgId?: string;
  /** Give up waiting for the acknowledgement after this long; default: the publisher's timeout. */
  readonly timeoutMs?: number;
}

/**
 * Pipelined JetStream publishing for the append path. Every publish gets its
 * own reply subject under one wildcard subscription, and one sweep times out
 * unanswered publishes, so a publish costs one protocol write and one JSON
 * parse. nats.js's js.publish() goes through a full request per message and
 * costs several times more client CPU, which made the client, not the server,
 * the limit of a zone's append rate (see docs/storage.md, "Throughput").
 */
export interface Publisher {
  publish(subject: string, data: Uint8Array, opts?: PublishOptions): Promise<Ack>;
  /**
   * Publishes messages into one stream (allow_atomic) as one atomic batch (ADR-50):
   * the server stores all of them, contiguously, or none. The messages before the
   * last go without a reply subject (the server stages them silently); the commit's
   * answer is the batch's, refusal included, and resolves with `batch` and `count`.
   * At most 1,000 messages (the server's default `batch.max_msgs`).
   */
  publishAtomic(messages: readonly AtomicMessage[], opts?: Pick<PublishOptions, "timeoutMs">): Promise<Ack>;
  close(): void;
}

/** One message of an atomic batch. */
export interface AtomicMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly opts?: Pick<PublishOptions, "headers" | "msgId">;
}

interface Waiter {
  resolve(ack: Ack): void;
  reject(err: Error): void;
  deadline: number;
}

const decoder = new TextDecoder();

const SWEEP_MS = 50;

export function publisher(nc: NatsConnection, timeoutMs: number): Publisher {
  const prefix = createInbox();
  const waiting = new Map<string, Waiter>();
  let next = 0;
  let closed = false;

  const sub = nc.subscribe(`${prefix}.*`, {
    callback: (err, msg) => {
      if (err) return;
      const waiter = waiting.get(msg.subject.slice(prefix.length + 1));
      if (!waiter) return;
      waiting.delete(msg.subject.slice(prefix.length + 1));
      settle(waiter, msg);
    },
  });

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [id, waiter] of waiting) {
      if (waiter.deadline <= now) {
        waiting.delete(id);
        waiter.reject(new PublishError("no acknowledgement from JetStream in time", undefined));
      }
    }
  }, SWEEP_MS);
  sweep.unref();

  // An acknowledgement that was due from a server the connection lost never comes: say so now.
  const watchLosses = (): (() => void) => onConnectionLoss(nc, () => {
    for (const waiter of waiting.values()) waiter.reject(new PublishError(new ConnectionLost("publish").message, undefined));
    waiting.clear();
    if (!closed) unwatch = watchLosses();
  });
  let unwatch = watchLosses();

  const send = (subject: string, data: Uint8Array, headers: MsgHdrs | undefined, timeout: number) => {
    if (closed) return Promise.reject(new PublishError("publisher closed", undefined));
    const id = (next++).toString(36);
    return new Promise<Ack>((resolve, reject) => {
      waiting.set(id, { resolve, reject, deadline: Date.now() + timeout });
      try {
        nc.publish(subject, data, { reply: `${prefix}.${id}`, ...(headers ? { headers } : {}) });
      } catch (err) {
        waiting.delete(id);
        reject(err as Error);
      }
    });
  };

  const atomicSlots = slots(ATOMIC_BATCHES_IN_FLIGHT);
  const sendAtomic = (messages: readonly AtomicMessage[], opts: Pick<PublishOptions, "timeoutMs">): Promise<Ack> => {
    const batchId = nuid.next();
    const last = messages.length;
    const batchHeaders = (sequence: number, message: AtomicMessage) => {
      const headers = headersOf(message.opts ?? {});
      headers.set("Nats-Batch-Id", batchId);
      headers.set("Nats-Batch-Sequence", String(sequence));
      if (sequence === last) headers.set("Nats-Batch-Commit", "1");
      return headers;
    };
    try {
      for (let i = 0; i + 1 < last; i++) nc.publish(messages[i]!.subject, messages[i]!.data, { headers: batchHeaders(i + 1, messages[i]!) });
    } catch (err) {
      // Nothing is committed without the last message: the server abandons the staged ones.
      return Promise.reject(new PublishError(`atomic batch not sent: ${(err as Error).message}`, undefined, true));
    }
    const commit = messages[last - 1]!;
    return send(commit.subject, commit.data, batchHeaders(last, commit), opts.timeoutMs ?? timeoutMs);
  };

  return {
    publish(subject, data, opts = {}) {
      let headers: MsgHdrs | undefined;
      if (opts.headers || opts.expectLastSubjectSequence !== undefined || opts.msgId !== undefined) {
        headers = headersOf(opts);
        if (opts.expectLastSubjectSequence !== undefined) headers.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectLastSubjectSequence));
      }
      return send(subject, data, headers, opts.timeoutMs ?? timeoutMs);
    },
    async publishAtomic(messages, opts = {}) {
      if (closed) throw new PublishError("publisher closed", undefined);
      // Past the server's limit of batches in flight per stream, a batch is refused and must be
      // sent again: waiting here for a slot costs less than a refusal and a retry.
      await atomicSlots.acquire();
      try {
        return await sendAtomic(messages, opts);
      } finally {
        atomicSlots.release();
      }
    },
    close() {
      closed = true;
      clearInterval(sweep);
      unwatch();
      sub.unsubscribe();
      for (const waiter of waiting.values()) waiter.reject(new PublishError("publisher closed", undefined));
      waiting.clear();
    },
  };
}

/**
 * Atomic batches one connection keeps in flight: below nats-server's default limit per stream
 * (`max_batch_inflight_per_stream`, 50), which several gateways on one stream share.
 */
const ATOMIC_BATCHES_IN_FLIGHT = 32;

/** A counting semaphore, first come first served. */
function slots(size: number): { acquire(): Promise<void>; release(): void } {
  let free = size;
  const queue: Array<() => void> = [];
  return {
    acquire() {
      if (free > 0) {
        free--;
        return Promise.resolve();
      }
      return new Promise((resolve) => queue.push(resolve));
    },
    release() {
      const next = queue.shift();
      if (next) next();
      else free++;
    },
  };
}

function headersOf(opts: Pick<PublishOptions, "headers" | "msgId">): MsgHdrs {
  const headers = natsHeaders();
  for (const [key, value] of Object.entries(opts.headers ?? {})) headers.set(key, value);
  if (opts.msgId !== undefined) headers.set("Nats-Msg-Id", opts.msgId);
  return headers;
}

function settle(waiter: Waiter, msg: Msg): void {
  if (msg.data.length === 0) {
    // A status message: 503 means no stream listens on the subject.
    const code = msg.headers?.code ?? 0;
    waiter.reject(new PublishError(code === 503 ? "no JetStream stream answered (503 no responders)" : `JetStream status ${code}`, undefined, code === 503));
    return;
  }
  let reply: { stream?: string; seq?: number; duplicate?: boolean; batch?: string; count?: number; error?: { err_code?: number; description?: string } };
  try {
    reply = JSON.parse(decoder.decode(msg.data)) as typeof reply;
  } catch {
    waiter.reject(new PublishError("unreadable JetStream acknowledgement", undefined));
    return;
  }
  if (reply.error) {
    waiter.reject(new PublishError(reply.error.description ?? "JetStream error", reply.error.err_code, true));
    return;
  }
  waiter.resolve({ stream: reply.stream ?? "", seq: reply.seq ?? 0, duplicate: reply.duplicate === true, ...(reply.batch !== undefined ? { batch: reply.batch, count: reply.count ?? 0 } : {}) });
}
