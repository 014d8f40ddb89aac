import type { Interceptor, StreamRequest, StreamResponse, UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { tracer } from "./tracing.js";

/*
 * Spans per RPC from Connect interceptors: instrumentation-http does not see
 * HTTP/2 streams, and W3C trace context must travel in the Connect/gRPC
 * request headers, which only the interceptors see on both sides.
 */

const headerGetter = {
  keys: (carrier: Headers) => [...carrier.keys()],
  get: (carrier: Headers, key: string) => carrier.get(key) ?? undefined,
};
const headerSetter = { set: (carrier: Headers, key: string, value: string) => carrier.set(key, value) };

function rpcAttributes(req: UnaryRequest | StreamRequest, zone: string) {
  return {
    "rpc.system": "connect_rpc",
    "rpc.service": req.service.typeName,
    "rpc.method": req.method.name,
    "bsfg.zone": zone,
  };
}

function fail(span: Span, err: unknown): never {
  const error = ConnectError.from(err);
  // As the Connect protocol spells codes: PermissionDenied → permission_denied.
  span.setAttribute("rpc.connect_rpc.error_code", (Code[error.code] ?? String(error.code)).replace(/[a-z][A-Z]/g, (m) => `${m[0]}_${m[1]}`).toLowerCase());
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.rawMessage });
  throw err;
}

/** Ends `span` when a streaming response has been consumed (or failed), not when it starts. */
function endAfterStream(res: StreamResponse, span: Span): StreamResponse {
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      try {
        yield* messages;
      } catch (err) {
        fail(span, err);
      } finally {
        span.end();
      }
    })(),
  };
}

/** Runs the call inside `span`, ending it when the (possibly streaming) response is done. */
async function traced<R extends UnaryResponse | StreamResponse>(span: Span, ctx: Context, call: () => Promise<R>): Promise<R> {
  try {
    const res = await context.with(ctx, call);
    if (res.stream) return endAfterStream(res, span) as R;
    span.end();
    return res;
  } catch (err) {
    try {
      fail(span, err);
    } finally {
      span.end();
    }
  }
}

/**
 * The server side: continues the caller's trace from the request headers and
 * runs the handler inside a SERVER span (so its own spans are children), with
 * the caller's certificate identity when `identity` can tell it.
 */
export function serverTracing(zone: string, identity: (req: UnaryRequest | StreamRequest) => string | undefined): Interceptor {
  return (next) => async (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const span = tracer().startSpan(`${req.service.typeName}/${req.method.name}`, { kind: SpanKind.SERVER, attributes: rpcAttributes(req, zone) }, parent);
    if (!span.isRecording()) return next(req);
    const peer = identity(req);
    if (peer) span.setAttribute("bsfg.peer.identity", peer);
    return traced(span, trace.setSpan(parent, span), () => next(req));
  };
}

/** The client side: a CLIENT span per call, its context injected into the request headers. */
export function clientTracing(zone: string): Interceptor {
  return (next) => async (req) => {
    const span = tracer().startSpan(`${req.service.typeName}/${req.method.name}`, { kind: SpanKind.CLIENT, attributes: rpcAttributes(req, zone) });
    if (!span.isRecording()) return next(req);
    const ctx = trace.setSpan(context.active(), span);
    propagation.inject(ctx, req.header, headerSetter);
    return traced(span, ctx, () => next(req));
  };
}
