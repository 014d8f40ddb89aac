import type { BsfgClient } from "@bsfg/client";
import type { FetchFactsPage } from "@bsfg/proto";
import { openSpan, type OpenSpan } from "@bsfg/telemetry";
import type { Attributes, Context } from "@opentelemetry/api";

export interface PagerOptions {
  /** The peer's consumer this link pulls. */
  readonly consumer: string;
  readonly pageLimit: number;
  /** Long poll of an idle link. */
  readonly maxWait: number;
  /** Pages fetched ahead of the one being handled (0: each page is fetched when asked for). */
  readonly prefetch: number;
  readonly signal: AbortSignal;
  /** Each page has a span from its fetch to its confirm: its attributes and parent. */
  readonly span: { readonly attributes: Attributes; readonly parent: Context };
}

export interface FetchedPage {
  readonly page: FetchFactsPage;
  /** Ends with the page's confirm; the caller ends it. */
  readonly span: OpenSpan;
  /** The page covers offsets past what was read before it (an empty long poll does not). */
  readonly moved: boolean;
}

/**
 * The link's reads from the peer, in offset order. Pages are fetched after the
 * last page read, not after the peer's confirmed cursor, so up to `prefetch`
 * pages are on their way while the current one is shipped. Only a page that
 * moved is read past: after an empty long poll the link is idle.
 */
export interface Pager {
  /** The next page: already fetched ahead, or fetched now. A failed fetch throws; reset() then. */
  next(): Promise<FetchedPage>;
  /** Drops what was read ahead (fetches in flight are cancelled): the next page is read after the peer's confirmed cursor. */
  reset(): void;
  /**
   * A function that makes the current (or next) `next()` throw `err` — until the next reset,
   * after which it does nothing: a confirm sent in the background that failed ends the
   * round at once, instead of when an idle link's long poll answers.
   */
  interrupter(): (err: unknown) => void;
}

interface Fetch {
  /** The offset this fetch reads after; undefined: after the confirmed cursor. */
  readonly after: number | undefined;
  readonly result: Promise<FetchedPage>;
  settled?: FetchedPage;
  watched?: boolean;
}

export function pager(peer: Pick<BsfgClient, "fetchFactPage">, options: PagerOptions): Pager {
  /** Fetched (or being fetched) and not handed out yet, in offset order. */
  let ahead: Fetch[] = [];
  /** The newest fetch issued: the next one reads after it. */
  let newest: Fetch | undefined;
  /** Cancels this round's fetches at reset(). */
  let round = new AbortController();
  let interruption = interruptible();

  function issue(after: number | undefined): Fetch {
    const span = openSpan("sync page", options.span.attributes, options.span.parent);
    const fetch: { -readonly [K in keyof Fetch]: Fetch[K] } = { after, result: undefined! };
    fetch.result = span.run(() => peer.fetchFactPage(options.consumer, {
      limit: options.pageLimit, maxWaitMs: options.maxWait, signal: AbortSignal.any([options.signal, round.signal]), ...(after === undefined ? {} : { afterOffset: after }),
    })).then((page) => {
      const fetched = { page, span, moved: Number(page.lastOffset) > (after ?? Number(page.cursor)) };
      fetch.settled = fetched;
      return fetched;
    }, (err: unknown) => {
      span.end(err);
      throw err;
    });
    fetch.result.catch(() => undefined);
    newest = fetch;
    return fetch;
  }

  /** Reads ahead of the newest fetch once it has answered, up to `prefetch` pages not yet handed out. */
  function readAhead(): void {
    const tail = newest;
    if (!tail || ahead.length >= options.prefetch || options.signal.aborted) return;
    if (!tail.settled) {
      if (!tail.watched) {
        tail.watched = true;
        tail.result.then(readAhead, () => undefined);
      }
      return;
    }
    if (!tail.settled.moved) return;
    ahead.push(issue(Number(tail.settled.page.lastOffset)));
    readAhead();
  }

  return {
    async next() {
      if (ahead.length === 0) {
        // Nothing read ahead: read after the last page handed out (it has answered), or after the cursor.
        const last = newest?.settled;
        ahead.push(issue(last ? (last.moved ? Number(last.page.lastOffset) : newest!.after) : undefined));
      }
      const head = ahead.shift()!;
      readAhead();
      return Promise.race([head.result, interruption.promise]);
    },
    reset() {
      for (const fetch of ahead) fetch.result.then((fetched) => fetched.span.end(), () => undefined);
      ahead = [];
      newest = undefined;
      round.abort();
      round = new AbortController();
      interruption = interruptible();
    },
    interrupter() {
      const current = interruption;
      return (err) => current.reject(err);
    },
  };
}

/** A promise that only ever rejects, when told to (and is never an unhandled rejection). */
function interruptible(): { promise: Promise<never>; reject(err: unknown): void } {
  let reject!: (err: unknown) => void;
  const promise = new Promise<never>((_resolve, rejectWith) => {
    reject = rejectWith;
  });
  promise.catch(() => undefined);
  return { promise, reject };
}
