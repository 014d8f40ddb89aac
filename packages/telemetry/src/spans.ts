import { SpanStatusCode, type Attributes, type Link, type Span } from "@opentelemetry/api";
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
