import type { KV } from "@nats-io/kv";
import { isWrongLastSequence } from "./substrate-errors.js";

/**
 * Consumer cursors in JetStream KV. A cursor only moves forward: every advance
 * is a compare-and-set on the entry's revision, retried on conflict, so two
 * ledgers confirming at once can never move it backwards.
 */
export interface Cursors {
  get(consumer: string): Promise<number | undefined>;
  /** Creates the cursor if it does not exist yet; an existing cursor is kept. */
  initialize(consumer: string, offset: number): Promise<void>;
  /** Moves the cursor to `offset` if that is ahead of it; returns the cursor afterwards. */
  advance(consumer: string, offset: number): Promise<number>;
}

const encode = (offset: number) => String(offset);

export function cursors(kv: KV): Cursors {
  return {
    async get(consumer) {
      const entry = await kv.get(consumer);
      return entry && entry.operation === "PUT" ? Number(entry.string()) : undefined;
    },
    async initialize(consumer, offset) {
      try {
        await kv.create(consumer, encode(offset));
      } catch (err) {
        if ((await kv.get(consumer))?.operation !== "PUT") throw err;
      }
    },
    async advance(consumer, offset) {
      for (;;) {
        const entry = await kv.get(consumer);
        if (!entry || entry.operation !== "PUT") throw new Error(`cursor ${consumer} does not exist`);
        const current = Number(entry.string());
        if (offset <= current) return current;
        try {
          await kv.update(consumer, encode(offset), entry.revision);
          return offset;
        } catch (err) {
          // Another writer moved it first; read again and decide again.
          if (!isWrongLastSequence(err)) throw err;
        }
      }
    },
  };
}
