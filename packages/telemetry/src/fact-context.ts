import { context, propagation, ROOT_CONTEXT, trace, type Context, type SpanContext } from "@opentelemetry/api";

/** A fact's stored trace context: W3C headers (traceparent, tracestate). */
export type FactTraceContext = Readonly<Record<string, string>>;

/** The trace context of `ctx` (default: the active one) as W3C headers, or undefined when nothing is traced. */
export function traceContextOf(ctx: Context = context.active()): FactTraceContext | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent ? carrier : undefined;
}

/** The span context a fact was stored under, to continue its trace from. */
export function spanContextOf(stored: FactTraceContext | undefined): SpanContext | undefined {
  if (!stored?.traceparent) return undefined;
  const span = trace.getSpan(propagation.extract(ROOT_CONTEXT, stored));
  const spanContext = span?.spanContext();
  return spanContext && trace.isSpanContextValid(spanContext) ? spanContext : undefined;
}

/** True when the active span is recorded: callers skip tracing-only work otherwise. */
export function tracingActive(): boolean {
  return trace.getActiveSpan()?.isRecording() ?? false;
}
