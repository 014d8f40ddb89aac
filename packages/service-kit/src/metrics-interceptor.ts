import { ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { AppendStatus, errorInfoOf, Reason, type AppendFactResponse, type ConfirmReceiptRequest, type ConfirmReceiptResponse, type FetchObjectResponse, type PutObjectRequest } from "@bsfg/proto";
import type { BsfgMetrics } from "@bsfg/telemetry";

const knownReasons = new Set<string>(Object.values(Reason));

/**
 * A bounded `reason` label for a failed call: its bsfg.v1 reason, or (for errors
 * that carry none, such as internal or canceled) its Connect code, snake_case.
 */
export function reasonLabel(err: unknown): string {
  const error = ConnectError.from(err);
  const reason = errorInfoOf(error)?.reason;
  return reason !== undefined && knownReasons.has(reason) ? reason : codeName(error.code);
}

/** Code.PermissionDenied → "permission_denied", as the Connect protocol spells codes. */
export const codeName = codeToString;

/** A call refused before its request was read (authorize-first.ts): counted as the interceptor would have. */
export function countRefusedBeforeRead(metrics: BsfgMetrics, method: string, err: unknown): void {
  if (method === "AppendFact") {
    metrics.appendRequests.inc();
    metrics.appendFailures.inc({ reason: reasonLabel(err) });
  } else if (method === "FetchFacts") metrics.fetchRequests.inc();
  else if (method === "ConfirmReceipt") metrics.confirmRequests.inc();
  metrics.rejections.inc({ method, code: codeName(ConnectError.from(err).code), reason: reasonLabel(err) });
}

/**
 * Counts calls, failures and bytes of the bsfg.v1 services into the deployable's
 * metrics. It runs outside the rejection logger, so it sees every refusal (and
 * internal errors already turned into `internal`).
 *
 * - AppendFact: one request per call; latency per call; a failed call adds one
 *   failure under its reason; a call that succeeds adds its messages by result,
 *   and each conflicting duplicate one failure under reason conflicting_duplicate.
 * - FetchFacts, ConfirmReceipt: one request per call; a confirm sets the consumer's frontier.
 * - PutObject and FetchObject: chunk bytes in and out.
 * - Every failed call of any method: bsfg_rejections_total{method, code, reason}.
 */
export function metricsInterceptor(metrics: BsfgMetrics): Interceptor {
  // Present at 0 from the start, so increase() sees a reason's very first failure.
  for (const reason of knownReasons) metrics.appendFailures.inc({ reason }, 0);
  for (const result of ["appended", "duplicate", "conflicting_duplicate"]) metrics.appendedFacts.inc({ result }, 0);

  const rejected = (method: string, err: unknown) => {
    metrics.rejections.inc({ method, code: codeName(ConnectError.from(err).code), reason: reasonLabel(err) });
  };

  return (next) => async (req) => {
    const method = req.method.name;
    if (method === "AppendFact") {
      metrics.appendRequests.inc();
      const stopTimer = metrics.appendLatency.startTimer();
      try {
        const res = await next(req);
        if (!res.stream) countResults((res.message as AppendFactResponse).results, metrics);
        return res;
      } catch (err) {
        metrics.appendFailures.inc({ reason: reasonLabel(err) });
        rejected(method, err);
        throw err;
      } finally {
        stopTimer();
      }
    }
    if (method === "FetchFacts") metrics.fetchRequests.inc();
    else if (method === "ConfirmReceipt") metrics.confirmRequests.inc();
    if (method === "PutObject" && req.stream) {
      req = { ...req, message: counted(req.message as AsyncIterable<PutObjectRequest>, (m) => (m.part.case === "chunk" ? m.part.value.byteLength : 0), (n) => metrics.objectBytes.inc({ direction: "in" }, n)) };
    }
    let res;
    try {
      res = await next(req);
    } catch (err) {
      rejected(method, err);
      throw err;
    }
    if (method === "ConfirmReceipt" && !req.stream && !res.stream) {
      const consumer = (req.message as ConfirmReceiptRequest).consumerName;
      metrics.frontierOffset.set({ consumer }, Number((res.message as ConfirmReceiptResponse).cursorAdvancedTo));
    }
    if (!res.stream) return res;
    // A server stream fails while it is read (a handler's checks run on the first read).
    const bytesOut = method === "FetchObject" ? (m: FetchObjectResponse) => (m.part.case === "chunk" ? m.part.value.byteLength : 0) : () => 0;
    const stream = res as StreamResponse;
    return { ...stream, message: failuresCounted(counted(stream.message as AsyncIterable<FetchObjectResponse>, bytesOut, (n) => metrics.objectBytes.inc({ direction: "out" }, n)), (err) => rejected(method, err)) } as typeof res;
  };
}

function countResults(results: AppendFactResponse["results"], metrics: BsfgMetrics) {
  for (const result of results) {
    if (result.status === AppendStatus.APPENDED) metrics.appendedFacts.inc({ result: "appended" });
    else if (result.status === AppendStatus.DUPLICATE) metrics.appendedFacts.inc({ result: "duplicate" });
    else if (result.status === AppendStatus.CONFLICTING_DUPLICATE) {
      metrics.appendedFacts.inc({ result: "conflicting_duplicate" });
      metrics.appendFailures.inc({ reason: Reason.ConflictingDuplicate });
    }
  }
}

async function* counted<T>(messages: AsyncIterable<T>, size: (message: T) => number, add: (bytes: number) => void): AsyncGenerator<T> {
  for await (const message of messages) {
    const bytes = size(message);
    if (bytes > 0) add(bytes);
    yield message;
  }
}

async function* failuresCounted<T>(messages: AsyncIterable<T>, failed: (err: unknown) => void): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (err) {
    failed(err);
    throw err;
  }
}
