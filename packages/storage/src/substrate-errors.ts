import { JetStreamApiError } from "@nats-io/jetstream";
import { Code, ConnectError, Reason, rejection } from "@bsfg/proto";
import { PublishError } from "./publisher.js";

/** JetStream API error codes this package branches on. */
export const ApiCode = {
  StreamNotFound: 10059,
  NoMessageFound: 10037,
  WrongLastSequence: 10071,
  /** "wrong last sequence" without the sequence: a replicated stream (2.12+) refusing a conditional write. */
  WrongLastSequenceConstant: 10164,
  StoreFailed: 10077,
  ConsumerNotFound: 10014,
  /** An atomic batch holds a Nats-Msg-Id the stream has seen within its duplicate window: nothing stored. */
  AtomicDuplicateMessageId: 10201,
  /** The stream has too many atomic batches in flight (50 by default): nothing stored. */
  AtomicTooManyInflight: 10210,
  /** A replicated stream or bucket could not be placed: too few peers online, or with room. */
  NoSuitablePeers: 10005,
} as const;

export function apiCode(err: unknown): number | undefined {
  if (err instanceof JetStreamApiError) return err.code;
  if (err instanceof PublishError) return err.apiCode;
  return undefined;
}

/** The server's code for a conditional write (expected last subject sequence) lost to another writer. */
export function isWrongLastSequenceCode(code: number | undefined): boolean {
  return code === ApiCode.WrongLastSequence || code === ApiCode.WrongLastSequenceConstant;
}

/** A conditional write (expected last subject sequence, a KV revision) lost to another writer. */
export function isWrongLastSequence(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return isWrongLastSequenceCode(apiCode(err) ?? (err as { code?: number }).code) || /wrong last sequence/i.test(err.message);
}

/** The server refused a write because the stream reached max_bytes (discard: new). */
export function isStoreFull(err: unknown): boolean {
  return err instanceof Error && /maximum (bytes|messages) exceeded|insufficient resources/i.test(err.message);
}

/**
 * Maps an error from the substrate to a rejection. Anything not recognised is
 * `unavailable`: the client may retry, because every operation is idempotent.
 */
export function substrateRejection(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (isStoreFull(err)) {
    return rejection(Code.ResourceExhausted, Reason.StoreFull, `${what}: the store is full (${(err as Error).message})`);
  }
  const detail = err instanceof Error ? err.message : String(err);
  return rejection(Code.Unavailable, Reason.StoreUnavailable, `${what}: JetStream did not answer (${detail}); retry`);
}
