import type { JetStreamManager } from "@nats-io/jetstream";
import { Code, Reason, rejection } from "@bsfg/proto";
import { factStreamName } from "./routing.js";

/**
 * Tracks how full each fact stream is, so appends are refused with
 * resource_exhausted before the stream's hard limit. The fill is read from the
 * server at most once per refresh interval and estimated in between from what
 * this process appended (an append waits for a reading only when the last one is
 * over 10 refresh intervals, and at least 10 s, old); the server's own max_bytes
 * (discard: new) stays the hard stop, so an estimate that lags can never cause a
 * fact to be dropped.
 */
export interface FillGauge {
  /** Throws resource_exhausted (store_full) when the stream is at or above the threshold. */
  admit(stream: string): Promise<void>;
  /** Current fill in percent of max_bytes (fresh from the server). */
  percent(stream: string): Promise<number>;
  /** Accounts for bytes this process just appended. */
  added(stream: string, bytes: number): void;
}

interface StreamFill {
  bytes: number;
  maxBytes: number;
  readAt: number;
  refreshing?: Promise<void> | undefined;
}

export function fillGauge(jsm: JetStreamManager, opts: { rejectAtPercent: number; refreshIntervalMs: number }): FillGauge {
  const fills = new Map<string, StreamFill>();
  /** An estimate this old is not trusted any more: the append waits for a fresh reading. */
  const staleAfterMs = Math.max(10 * opts.refreshIntervalMs, 10_000);

  async function refresh(stream: string): Promise<StreamFill> {
    let fill = fills.get(stream);
    if (!fill) {
      fill = { bytes: 0, maxBytes: -1, readAt: 0 };
      fills.set(stream, fill);
    }
    const current = fill;
    current.refreshing ??= jsm.streams.info(factStreamName(stream)).then((info) => {
      current.bytes = info.state.bytes;
      current.maxBytes = info.config.max_bytes;
      current.readAt = Date.now();
    }).finally(() => { current.refreshing = undefined; });
    await current.refreshing;
    return current;
  }

  const percentOf = (fill: StreamFill) => (fill.maxBytes > 0 ? (fill.bytes * 100) / fill.maxBytes : 0);

  return {
    async admit(stream) {
      let fill = fills.get(stream);
      const age = fill && fill.readAt > 0 ? Date.now() - fill.readAt : Infinity;
      if (!fill || age >= staleAfterMs) fill = await refresh(stream);
      // A due refresh runs beside the append, which goes on with the estimate: while a
      // cluster elects a stream leader, stream info goes unanswered for seconds, and
      // every append waiting on it would fail with it.
      else if (age >= opts.refreshIntervalMs) refresh(stream).catch(() => undefined);
      const percent = percentOf(fill);
      if (percent >= opts.rejectAtPercent) {
        throw rejection(
          Code.ResourceExhausted,
          Reason.StoreFull,
          `stream ${stream} is ${percent.toFixed(1)}% full (refusing appends from ${opts.rejectAtPercent}%); retry when consumers have caught up or capacity is raised`,
          { stream, fill_percent: percent.toFixed(1) },
        );
      }
    },
    async percent(stream) {
      return percentOf(await refresh(stream));
    },
    added(stream, bytes) {
      const fill = fills.get(stream);
      if (fill) fill.bytes += bytes;
    },
  };
}
