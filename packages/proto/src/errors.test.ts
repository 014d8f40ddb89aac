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

  it("has no reason for other errors", () => {
    expect(reasonOf(new Error("boom"))).toBeUndefined();
    expect(reasonOf(new ConnectError("plain", Code.Internal))).toBeUndefined();
  });
});
