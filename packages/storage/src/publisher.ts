import { createInbox, headers as natsHeaders, type MsgHdrs, type NatsConnection, type Msg } from "@nats-io/nats-core";

/** A JetStream publish acknowledgement. */
export interface Ack {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
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
  close(): void;
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

  return {
    publish(subject, data, opts = {}) {
      if (closed) return Promise.reject(new PublishError("publisher closed", undefined));
      const id = (next++).toString(36);
      let headers: MsgHdrs | undefined;
      if (opts.headers || opts.expectLastSubjectSequence !== undefined || opts.msgId !== undefined) {
        headers = natsHeaders();
        for (const [key, value] of Object.entries(opts.headers ?? {})) headers.set(key, value);
        if (opts.expectLastSubjectSequence !== undefined) headers.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectLastSubjectSequence));
        if (opts.msgId !== undefined) headers.set("Nats-Msg-Id", opts.msgId);
      }
      return new Promise<Ack>((resolve, reject) => {
        waiting.set(id, { resolve, reject, deadline: Date.now() + (opts.timeoutMs ?? timeoutMs) });
        try {
          nc.publish(subject, data, { reply: `${prefix}.${id}`, ...(headers ? { headers } : {}) });
        } catch (err) {
          waiting.delete(id);
          reject(err as Error);
        }
      });
    },
    close() {
      closed = true;
      clearInterval(sweep);
      sub.unsubscribe();
      for (const waiter of waiting.values()) waiter.reject(new PublishError("publisher closed", undefined));
      waiting.clear();
    },
  };
}

function settle(waiter: Waiter, msg: Msg): void {
  if (msg.data.length === 0) {
    // A status message: 503 means no stream listens on the subject.
    const code = msg.headers?.code ?? 0;
    waiter.reject(new PublishError(code === 503 ? "no JetStream stream answered (503 no responders)" : `JetStream status ${code}`, undefined, code === 503));
    return;
  }
  let reply: { stream?: string; seq?: number; duplicate?: boolean; error?: { err_code?: number; description?: string } };
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
  waiter.resolve({ stream: reply.stream ?? "", seq: reply.seq ?? 0, duplicate: reply.duplicate === true });
}
