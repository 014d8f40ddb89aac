export { startTracing, tracingRequested, tracer, type Tracing, type TracingOptions } from "./tracing.js";
export { serverTracing, clientTracing } from "./rpc-tracing.js";
export { traceContextOf, spanContextOf, tracingActive, type FactTraceContext } from "./fact-context.js";
export { withSpan, openSpan, type OpenSpan } from "./spans.js";
export { createMetrics, tlsFailureCode, TLS_FAILURE_CODES, LINK_STATES, type BsfgMetrics, type MetricsOptions, type ScrapeCollector } from "./metrics.js";
export { observeStore, observeLinks, observeCertificates, earliestNotAfter, type CertificateGauges, type StoreGaugeSource, type LinkGaugeSource } from "./metric-sources.js";
export { parseExposition, metricValue, type Sample } from "./exposition.js";
