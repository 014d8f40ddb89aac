import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { Code, ConnectError, ErrorInfoSchema, Reason, errorInfoOf, reasonOf, rejection } from "./index.js";

describe("rejections carry a machine-readable reason", () => {
  it("attaches the reason and context as a bsfg.v1.ErrorInfo detail", () => {
    const err = rejection(Code.AlreadyExists, Reason.ConflictingDuplicate, "message m-1 was stored with another payload", { message_id: "m-1" });
    expect(err.code).toBe(Code.AlreadyExists);
    expect(errorInfoOf(err)).toEqual({ reason: "conflicting_duplicate", metadata: { message_id: "m-1" } });
  });

  it("reads the reason of an error received over the wire", () => {
    const wire = toBinary(ErrorInfoSchema, create(ErrorInfoSchema, { reason: "store_full", metadata: { stream: "operational" } }));
    // What the Connect protocol layer stores when it parses an error from the wire.
    const received = new ConnectError("stream operational is 81% full", Code.ResourceExhausted);
    received.details.push({ type: "bsfg.v1.ErrorInfo", value: wire });
    expect(reasonOf(received)).toBe("store_full");
    expect(errorInfoOf(received)?.metadata).toEqual({ stream: "operational" });
  });

  it("quotes at most a few kilobytes of what it refuses, and says how long it was", () => {
    const huge = "x".repeat(1_000_000);
    const err = rejection(Code.InvalidArgument, Reason.InvalidField, `consumer name ${huge} is not valid`, { consumer: huge, field: "consumer_name" });
    expect(err.rawMessage.length).toBeLessThan(4_200);
    expect(err.rawMessage).toMatch(/… \(1000027 characters\)$/);
    expect(errorInfoOf(err)!.metadata.consumer).toMatch(/^x{1024}… \(1000000 characters\)$/);
    // Short values are kept as they are.
    expect(errorInfoOf(err)!.metadata.field).toBe("consumer_name");
  });

  it("has no reason for other errors", () => {
    expect(reasonOf(new Error("boom"))).toBeUndefined();
    expect(reasonOf(new ConnectError("plain", Code.Internal))).toBeUndefined();
  });
});
