import { ROOT_CONTEXT, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { spanContextOf, traceContextOf, tracer, tracingActive, type FactTraceContext } from "@bsfg/telemetry";

/** What a relay span needs of a fetched fact. */
export interface TracedFact {
  readonly storedAtUnixMs: bigint;
  readonly traceContext: Readonly<Record<string, string>>;
}

export interface RelayTrace {
  /** The trace context to store with fact `index` of the page. */
  traceContext(index: number): FactTraceContext | undefined;
  /** Ends the relay spans, failed if `error` is given. */
  end(error?: unknown): void;
}

const untraced: RelayTrace = { traceContext: () => undefined, end: () => undefined };

/**
 * Continues each producer's trace where a page of relayed facts is appended.
 * Facts carry the context of the write that stored them (one per producer
 * call, so a page holds few distinct ones): for each, a "relay append" span
 * becomes a CHILD of that context, and the facts are stored under it. A fact's
 * whole journey — AppendFact in PlantA, the relay in IDMZ, the relay in
 * Enterprise — is therefore one trace. Each relay span LINKS to the worker's
 * append span (the active span here), in the page's own trace with fetch,
 * artifact copy and confirm: a page batches many producers' facts, so it
 * cannot be the child of all of them. Call inside the page's append span.
 */
export function relayTrace(zone: string, link: string, facts: readonly TracedFact[]): RelayTrace {
  if (!tracingActive() || facts.length === 0) return untraced;
  const here = trace.getActiveSpan()!;
  const now = Date.now();
  const own = traceContextOf();
  const groups = new Map<string, { span: Span; context: FactTraceContext | undefined; count: number; dwellMs: number }>();
  const byIndex: (FactTraceContext | undefined)[] = [];
  let maxDwellMs = 0;
  for (const fact of facts) {
    const dwellMs = Math.max(0, now - Number(fact.storedAtUnixMs));
    maxDwellMs = Math.max(maxDwellMs, dwellMs);
    const producer = spanContextOf(fact.traceContext);
    if (!producer) {
      byIndex.push(own);
      continue;
    }
    const key = fact.traceContext.traceparent!;
    let group = groups.get(key);
    if (!group) {
      const span = tracer().startSpan("relay append", { links: [{ context: here.spanContext() }], attributes: { "bsfg.zone": zone, "bsfg.link": link } }, trace.setSpanContext(ROOT_CONTEXT, producer));
      group = { span, context: traceContextOf(trace.setSpan(ROOT_CONTEXT, span)), count: 0, dwellMs: 0 };
      groups.set(key, group);
    }
    group.count++;
    group.dwellMs = Math.max(group.dwellMs, dwellMs);
    byIndex.push(group.context);
  }
  // Dwell: from stored in the peer zone to appended here, by the peer's clock.
  here.setAttribute("bsfg.dwell_ms", maxDwellMs);
  return {
    traceContext: (index) => byIndex[index],
    end(error) {
      for (const { span, count, dwellMs } of groups.values()) {
        span.setAttributes({ "bsfg.facts": count, "bsfg.dwell_ms": dwellMs });
        if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        span.end();
      }
    },
  };
}
