import type { BsfgClient } from "@bsfg/client";

/**
 * Confirms shipped pages to the peer without waiting for each: one confirm is
 * in flight at a time, and a page's confirm is sent only after the previous
 * one landed, so confirms trail the local log by at most a page. Only offsets
 * already shipped here are ever confirmed (the caller's promise).
 */
export interface Confirmer {
  /**
   * Waits for the confirm in flight, then sends one up to `offset` unless the peer's cursor
   * is there already. Resolves once it is sent; the returned `landed` settles when the peer answered.
   */
  confirm(offset: number): Promise<{ readonly landed: Promise<void> }>;
  /** The confirm in flight, settled (its failure is the next confirm's). */
  settled(): Promise<void>;
  /** Learns the peer's cursor from a page. */
  observe(cursor: number): void;
  /** The peer's confirmed offset, as last seen. */
  readonly cursor: number;
  /** Forgets the confirm in flight (after a failure or a lease change; its outcome no longer matters here). */
  reset(): void;
}

export function confirmer(peer: Pick<BsfgClient, "confirmReceipt">, consumer: string): Confirmer {
  let cursor = 0;
  let inFlight: Promise<void> = Promise.resolve();
  return {
    async confirm(offset) {
      await inFlight;
      if (offset <= cursor) return { landed: Promise.resolve() };
      const landed = peer.confirmReceipt(consumer, offset).then((advancedTo) => {
        cursor = Math.max(cursor, Number(advancedTo));
      });
      inFlight = landed;
      return { landed };
    },
    settled: () => inFlight.catch(() => undefined),
    observe(seen) {
      cursor = Math.max(cursor, seen);
    },
    get cursor() {
      return cursor;
    },
    reset() {
      inFlight.catch(() => undefined);
      inFlight = Promise.resolve();
    },
  };
}
