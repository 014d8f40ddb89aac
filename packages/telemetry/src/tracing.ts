import { context, propagation, trace, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, TracerProvider, type SpanProcessor } from "@opentelemetry/sdk-trace";

/** The tracer every BSFG span comes from; spans carry the zone as `bsfg.zone`. */
export const tracer = (): Tracer => trace.getTracer("bsfg");

export interface TracingOptions {
  /** service.name unless OTEL_SERVICE_NAME says otherwise, e.g. "bsfg-ingest". */
  readonly serviceName: string;
  readonly zone: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Instead of the OTLP exporter (tests: an in-memory exporter). */
  readonly spanProcessors?: SpanProcessor[];
}

export interface Tracing {
  readonly enabled: boolean;
  /** Flushes and stops the exporter. */
  shutdown(): Promise<void>;
}

/**
 * Whether the standard OTEL_* variables turn tracing on. Off by default: only
 * an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) or
 * OTEL_TRACES_EXPORTER=otlp turns it on; OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none keep it off.
 */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.toLowerCase() === "true") return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.toLowerCase();
  if (exporter === "none") return false;
  return exporter === "otlp" || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

let installed: Tracing | undefined;

/**
 * Installs the process's tracer provider when tracing is requested (OTLP over
 * HTTP, batched, W3C trace context), once per process; otherwise every span is
 * a no-op and costs next to nothing. Several deployables in one process (the
 * all-in-one zone, tests) share the first provider.
 */
export function startTracing(opts: TracingOptions): Tracing {
  if (installed) return installed;
  const env = opts.env ?? process.env;
  if (!opts.spanProcessors && !tracingRequested(env)) return { enabled: false, shutdown: async () => undefined };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME ?? opts.serviceName, "bsfg.zone": opts.zone }),
    // The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself.
    spanProcessors: opts.spanProcessors ?? [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
  });
  // What NodeTracerProvider.register() did before SDK 3: the provider, async context across
  // awaits, and W3C trace context + baggage for the Connect interceptors and stored facts.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  trace.setGlobalTracerProvider(provider);
  installed = {
    enabled: true,
    async shutdown() {
      installed = undefined;
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
  return installed;
}
