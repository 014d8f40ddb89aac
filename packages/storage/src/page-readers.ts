import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { pullFromNewConsumer, pullOnce, PullRefusedError, PullUnansweredError, type RawMessage } from "./pull.js";
import { addReadConsumer } from "./read-consumer.js";
import type { Substrate } from "./substrate.js";
import { nanos } from "./units.js";

export interface PageQuery {
  /** The JetStream stream. */
  readonly stream: string;
  readonly filter?: string | undefined;
  /** The page starts right after this offset. */
  readonly afterOffset: number;
  readonly limit: number;
  readonly maxBytes: number;
  /**
   * The stream's last offset, read before this page. Only needed with a filter:
   * a page that finds nothing more matching then covers everything up to it.
   */
  readonly highWater?: number | undefined;
}

export interface Page {
  readonly messages: RawMessage[];
  /** Nothing after the page matched when it was read. */
  readonly complete: boolean;
  /** The highest offset the page covers, non-matching offsets included. */
  readonly lastOffset: number;
  /** Matching messages that were left after the page. */
  readonly pendingAfter: number;
}

/**
 * Page reads for consumers, with one memory-only JetStream consumer kept per
 * BSFG consumer between pages. The usual loop (fetch after N, confirm, fetch
 * after the page) then costs one pull per page; creating and deleting a
 * consumer per page tripled the JetStream requests of a fetch. A reader is
 * reused only when its position is exactly where the next page starts, so
 * a page fetched again before it is confirmed, a second concurrent caller, or
 * another process's confirm just costs a fresh reader, never a wrong page.
 */
export interface PageReaders {
  /** A page; `key` (the BSFG consumer's name) lets the reader be reused for the following page. */
  read(key: string | undefined, query: PageQuery): Promise<Page>;
  close(): void;
}

interface Reader {
  readonly stream: string;
  readonly filter: string | undefined;
  /** The JetStream consumer's name. */
  readonly name: string;
  /** The JetStream consumer delivers next the first matching message after this … */
  lastDelivered: number;
  /** … and every offset up to this one is known not to match: pages starting anywhere in between are its next page. */
  coveredThrough: number;
  busy: boolean;
  /** After this (performance.now()), the server may have removed it for inactivity. */
  expiresAt: number;
}

/** How long an unused reader stays on the server … */
const READER_IDLE_MS = 60_000;
/** … and how long before that it is no longer reused. */
const EXPIRY_MARGIN_MS = 10_000;
/**
 * A no-wait pull is answered at once; a reused reader that stays silent this
 * long is presumed gone (a pull to a missing consumer gets no answer through a
 * domain's API) and replaced, instead of stalling a fetch for the full timeout.
 */
const REUSED_PULL_TIMEOUT_MS = 2_000;

export function pageReaders(substrate: Substrate): PageReaders {
  const readers = new Map<string, Reader>();
  let closed = false;
  void (async () => {
    // Memory-only readers may not survive what a reconnect means (a server restart, another cluster node).
    for await (const status of substrate.nc.status()) {
      if (closed) break;
      if (status.type === "reconnect") readers.clear();
    }
  })();

  async function open(query: PageQuery): Promise<{ reader: Reader; pending: number }> {
    const info = await addReadConsumer(substrate, query.stream, "bsfg_read_", {
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(READER_IDLE_MS),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: query.afterOffset + 1,
      ...(query.filter ? { filter_subject: query.filter } : {}),
    });
    const reader = { stream: query.stream, filter: query.filter, name: info.name, lastDelivered: query.afterOffset, coveredThrough: query.afterOffset, busy: false, expiresAt: 0 };
    return { reader, pending: info.num_pending };
  }

  function drop(reader: Reader): void {
    // The inactivity threshold removes it if this fails.
    substrate.jsm.consumers.delete(reader.stream, reader.name).catch(() => undefined);
  }

  /** Pulls the page; `positioned` says whether the reader is known to stand right after it. */
  async function pullPage(reader: Reader, query: PageQuery, pending: number | undefined): Promise<{ page: Page; positioned: boolean }> {
    if (pending === 0) {
      return { page: { messages: [], complete: true, lastOffset: Math.max(query.afterOffset, query.highWater ?? 0), pendingAfter: 0 }, positioned: true };
    }
    const timeout = pending === undefined ? { timeoutMs: REUSED_PULL_TIMEOUT_MS } : {};
    const request = { batch: query.limit, maxBytes: query.maxBytes, ...timeout };
    const pulled = pending === undefined
      ? await pullOnce(substrate, reader.stream, reader.name, request)
      : await pullFromNewConsumer(substrate, reader.stream, reader.name, request);
    const last = pulled.messages.at(-1);
    // The pending count delivered with the last message says whether anything matching was left.
    const complete = pulled.end === "no_messages" || last?.pending === 0;
    const lastRead = last?.seq ?? query.afterOffset;
    const page = {
      messages: pulled.messages,
      complete,
      lastOffset: complete ? Math.max(lastRead, query.highWater ?? 0) : lastRead,
      pendingAfter: last?.pending ?? 0,
    };
    return { page, positioned: pulled.end === "batch" || pulled.end === "no_messages" };
  }

  function settle(reader: Reader, page: Page): void {
    reader.lastDelivered = page.messages.at(-1)?.seq ?? reader.lastDelivered;
    reader.coveredThrough = page.lastOffset;
    reader.expiresAt = performance.now() + READER_IDLE_MS - EXPIRY_MARGIN_MS;
  }

  async function readFresh(key: string | undefined, query: PageQuery): Promise<Page> {
    const { reader, pending } = await open(query);
    const previous = key === undefined ? undefined : readers.get(key);
    const keep = key !== undefined && !previous?.busy;
    if (keep) {
      if (previous) drop(previous);
      readers.set(key, reader);
    }
    reader.busy = true;
    try {
      const { page, positioned } = await pullPage(reader, query, pending);
      if (keep && positioned) settle(reader, page);
      else forget(key, reader);
      return page;
    } catch (err) {
      forget(key, reader);
      throw err;
    } finally {
      reader.busy = false;
    }
  }

  function forget(key: string | undefined, reader: Reader): void {
    if (key !== undefined && readers.get(key) === reader) readers.delete(key);
    drop(reader);
  }

  return {
    async read(key, query) {
      const reader = key === undefined ? undefined : readers.get(key);
      const reusable = reader !== undefined && !reader.busy && reader.stream === query.stream && reader.filter === query.filter &&
        reader.lastDelivered <= query.afterOffset && query.afterOffset <= reader.coveredThrough && performance.now() < reader.expiresAt;
      if (!reusable) return readFresh(key, query);
      reader.busy = true;
      try {
        const { page, positioned } = await pullPage(reader, query, undefined);
        if (positioned) settle(reader, page);
        else forget(key, reader);
        return page;
      } catch (err) {
        forget(key, reader);
        // The reader is gone on the server (e.g. the server restarted): start a fresh one.
        if (err instanceof PullRefusedError || err instanceof PullUnansweredError) return readFresh(key, query);
        throw err;
      } finally {
        reader.busy = false;
      }
    },
    close() {
      closed = true;
      for (const reader of readers.values()) drop(reader);
      readers.clear();
    },
  };
}
