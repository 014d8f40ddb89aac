import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FactMessageSchema } from "./gen/bsfg/v1/fact_pb.js";
import { factHeadOf } from "./fact-head.js";

describe("factHeadOf", () => {
  it("reads the envelope's routing fields and the subject as a full decode does", () => {
    const message = create(FactMessageSchema, {
      envelope: {
        messageId: "m-1", fromZone: "PlantA", toZone: "Enterprise", producedAtUnixMs: 1_700_000_000_000n,
        correlationId: "c", causationId: "k", labels: { site: "a", line: "7" }, objectMediaType: "application/pdf", objectSchema: "urn:x",
      },
      fact: { subject: "document:sop/42", predicate: "was_issued", objectJson: "{\"bucket\":\"document-files\"}" },
    });
    const bytes = toBinary(FactMessageSchema, message);
    const decoded = fromBinary(FactMessageSchema, bytes);
    expect(factHeadOf(bytes)).toEqual({
      messageId: decoded.envelope!.messageId, fromZone: decoded.envelope!.fromZone, toZone: decoded.envelope!.toZone,
      objectMediaType: decoded.envelope!.objectMediaType, subject: decoded.fact!.subject,
    });
  });

  it("gives empty fields for what a message leaves out", () => {
    const bytes = toBinary(FactMessageSchema, create(FactMessageSchema, { envelope: { messageId: "m-2" } }));
    expect(factHeadOf(bytes)).toEqual({ messageId: "m-2", fromZone: "", toZone: "", objectMediaType: "", subject: "" });
  });

  it("throws on bytes that are not a FactMessage", () => {
    expect(() => factHeadOf(new Uint8Array([0x0a, 0x20, 0x01]))).toThrow();
  });
});
