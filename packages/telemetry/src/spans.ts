import { context, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from "@opentelemetry/api";
import { tracer } from "./tracing.js";

/**
 * Runs `work` inside a child span of the active one, ending it when the work
 * settles and marking it failed when the work throws. When tracing is off the
 * span is a no-op and `work` runs as is.
 */
export async function withSpan<T>(name: string, attributes: Attributes, work: (span: Span) => Promise<T>, links?: Link[]): Promise<T> {
  return tracer().startActiveSpan(name, { attributes, ...(links ? { links } : {}) }, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** A span that outlives one call: work is run inside it now and later, and it ends when told. */
export interface OpenSpan {
  readonly span: Span;
  /** Runs `work` with this span active (its spans become children). */
  run<T>(work: () => Promise<T>): Promise<T>;
  /** Ends the span (once), failed if `error` is given. */
  end(error?: unknown): void;
}

/**
 * Starts a span under `parent` (default: the active context) that the caller
 * ends; for work that overlaps other work of its kind, such as a sync page
 * fetched while the one before it is still stored.
 */
export function openSpan(name: string, attributes: Attributes, parent: Context = context.active()): OpenSpan {
  const span = tracer().startSpan(name, { attributes }, parent);
  const active = trace.setSpan(parent, span);
  let ended = false;
  return {
    span,
    run: (work) => context.with(active, work),
    end(error) {
      if (ended) return;
      ended = true;
      if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      span.end();
    },
  };
}
