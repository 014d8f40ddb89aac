import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { FastifyBaseLogger } from "fastify";
import { ErrorInfoSchema, errorInfoOf, Reason } from "@bsfg/proto";
import type { BsfgMetrics } from "@bsfg/telemetry";
import { codeName } from "./metrics-interceptor.js";
import { peerIdentityKey } from "./peer-identity.js";

/*
 * A request whose bytes are not a message of the method's type — protobuf that does not
 * decode, text that is not UTF-8, JSON that is not JSON of the type, envelopes that lie
 * about their length — is the caller's mistake: invalid_argument / malformed_request.
 * connect-es 2 answers otherwise: a binary body it cannot decode is `internal` ("parse
 * binary: …": its clients share that code path for a server's reply, where internal is
 * right), a compressed envelope without an encoding is `internal` too, and a JSON or
 * framing error is invalid_argument without an ErrorInfo. For a unary call all of them
 * happen before any interceptor runs; the only place that sees them is the handler
 * context's abort signal, which connect-es raises with the error just before it writes it.
 */

const MALFORMED_INTERNAL = ["parse binary:", "received compressed envelope"];

/** connect-es's refusal of a message larger than the method's readMaxBytes (no ErrorInfo of its own). */
const TOO_LARGE = /^message size (?:\d+ )?is larger than configured readMaxBytes (\d+)/;

/** Errors already logged and counted (by the interceptors, for streaming calls). */
const reported = new WeakSet<ConnectError>();

/**
 * Makes a framework refusal of the request's bytes invalid_argument / malformed_request,
 * in place (the handler writes this very object next); true if it was one.
 */
export function reclassifyMalformedRequest(err: unknown): boolean {
  if (!(err instanceof ConnectError) || errorInfoOf(err) !== undefined) return false;
  const tooLarge = err.code === Code.ResourceExhausted ? TOO_LARGE.exec(err.rawMessage) : null;
  if (tooLarge) {
    err.details.push({ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: Reason.RequestTooLarge, metadata: { max_bytes: tooLarge[1]! } }) });
    return true;
  }
  const internal = err.code === Code.Internal && MALFORMED_INTERNAL.some((prefix) => err.rawMessage.startsWith(prefix));
  if (!internal && err.code !== Code.InvalidArgument) return false;
  (err as { code: Code }).code = Code.InvalidArgument;
  err.details.push({ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: Reason.MalformedRequest }) });
  return true;
}

/** For the interceptors: this error has its log line and its count. */
export function markReported(err: unknown): void {
  if (err instanceof ConnectError) reported.add(err);
}

/**
 * A connect-es request gate (it runs for every call before the body is read) that
 * watches the call's abort signal: a malformed request is reclassified, and logged and
 * counted once like every other rejection when no interceptor saw it.
 */
export function malformedRequestGate(log: FastifyBaseLogger, metrics: BsfgMetrics): (context: HandlerContext) => void {
  return (context) => {
    context.signal.addEventListener("abort", () => {
      const err: unknown = context.signal.reason;
      if (!reclassifyMalformedRequest(err) || reported.has(err as ConnectError)) return;
      const error = err as ConnectError;
      markReported(error);
      const procedure = `${context.service.typeName}/${context.method.name}`;
      const reason = errorInfoOf(error)!.reason;
      log.warn({ event: "rejected", procedure, code: Code[error.code], reason, identity: context.values.get(peerIdentityKey)?.names[0], message: error.rawMessage }, "call rejected");
      metrics.rejections.inc({ method: context.method.name, code: codeName(error.code), reason });
    }, { once: true });
  };
}
