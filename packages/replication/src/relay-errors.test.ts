import { describe, expect, it } from "vitest";
import { Code, ConnectError, Reason, rejection } from "@bsfg/proto";
import { classifyRelayError } from "./relay-errors.js";

/*
 * The one table that decides retry or set aside, a case per class. Errors the
 * relay meets from the link itself (fetch, confirm, shipment, lease) never
 * reach it as a fact's: link.test's cases prove those are retried.
 */
describe("relay errors: set aside only what can never be admitted, retry everything else", () => {
  const setAside: Array<[string, ConnectError]> = [
    ["policy: origin not allowed", rejection(Code.PermissionDenied, Reason.FromZoneNotAllowed, "x")],
    ["policy: destination not allowed", rejection(Code.PermissionDenied, Reason.ToZoneNotAllowed, "x")],
    ["policy: relaying identity unknown", rejection(Code.PermissionDenied, Reason.UnknownIdentity, "x")],
    ["policy: its artifact's bucket is not one the relay may write", rejection(Code.PermissionDenied, Reason.BucketNotAllowed, "x")],
    ["artifact: the peer says it does not exist", rejection(Code.NotFound, Reason.ObjectNotFound, "x")],
    ["artifact: digest differs after a verified copy", rejection(Code.InvalidArgument, Reason.DigestMismatch, "x")],
    ["artifact: size differs after a verified copy", rejection(Code.InvalidArgument, Reason.SizeMismatch, "x")],
    ["artifact: another object holds the key here", rejection(Code.AlreadyExists, Reason.ConflictingObject, "x")],
    ["artifact: larger than this zone takes", rejection(Code.InvalidArgument, Reason.ObjectTooLarge, "x")],
    ["envelope: the object is not an artifact reference", rejection(Code.InvalidArgument, Reason.InvalidArtifactRef, "x")],
    ["envelope: no message_id", rejection(Code.InvalidArgument, Reason.MissingField, "x")],
    ["envelope: invalid subject", rejection(Code.InvalidArgument, Reason.InvalidSubject, "x")],
    ["integrity: bytes do not match their digest", rejection(Code.DataLoss, Reason.CorruptFact, "x")],
  ];
  it.each(setAside)("sets aside — %s", (_, err) => {
    expect(classifyRelayError(err)).toBe("set_aside");
  });

  const retried: Array<[string, unknown]> = [
    ["the peer is unreachable", new ConnectError("connect ECONNREFUSED", Code.Unavailable)],
    ["a call timed out", new ConnectError("deadline", Code.DeadlineExceeded)],
    ["the peer's store is unavailable", rejection(Code.Unavailable, Reason.StoreUnavailable, "x")],
    ["this zone's store is full (backpressure)", rejection(Code.ResourceExhausted, Reason.StoreFull, "x")],
    ["this zone is not durable", rejection(Code.Unavailable, Reason.NotDurable, "x")],
    ["this zone lacks the stream (configuration)", rejection(Code.FailedPrecondition, Reason.UnknownStream, "x")],
    ["this zone lacks the bucket (configuration)", rejection(Code.NotFound, Reason.UnknownBucket, "x")],
    ["the peer refuses the consumer", rejection(Code.PermissionDenied, Reason.ConsumerNotAllowed, "x")],
    ["the peer is shutting down", rejection(Code.Unavailable, Reason.ShuttingDown, "x")],
    ["an error without a reason", new ConnectError("stream reset", Code.Internal)],
    ["not a Connect error at all", new Error("socket hang up")],
  ];
  it.each(retried)("retries — %s", (_, err) => {
    expect(classifyRelayError(err)).toBe("retry");
  });
});
