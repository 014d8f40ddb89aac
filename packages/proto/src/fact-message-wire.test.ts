import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { AppendFactRequestSchema } from "./gen/bsfg/v1/boundary_pb.js";
import { describe, expect, it } from "vitest";
import { EnvelopeSchema, FactMessageSchema, FactSchema, type FactMessage } from "./gen/bsfg/v1/fact_pb.js";
import { ENCODED_FIELDS, encodeFactMessage } from "./fact-message-wire.js";

/** A deterministic pseudo-random source, so a failure names a reproducible case. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const pieces = ["", "a", "batch:PlantA/B1042", "ä", "日本", "🏭", "\ud800", "x".repeat(200), "\u0000", "line\nbreak", '{"k":"v"}'];

function text(next: () => number): string {
  let s = "";
  const parts = Math.floor(next() * 4);
  for (let i = 0; i < parts; i++) s += pieces[Math.floor(next() * pieces.length)]!;
  return s;
}

const timestamps = [0n, 1n, 127n, 128n, 1_764_000_000_000n, 2n ** 53n + 1n, 2n ** 63n - 1n, -1n, -(2n ** 63n)];

function arbitraryMessage(seed: number): FactMessage {
  const next = random(seed);
  const labels: Record<string, string> = {};
  for (let i = Math.floor(next() * 4); i > 0; i--) labels[text(next)] = text(next);
  return create(FactMessageSchema, {
    ...(next() < 0.95 ? {
      envelope: {
        messageId: text(next), fromZone: text(next), toZone: text(next),
        producedAtUnixMs: timestamps[Math.floor(next() * timestamps.length)]!,
        correlationId: text(next), causationId: text(next), labels, objectMediaType: text(next), objectSchema: text(next),
      },
    } : {}),
    ...(next() < 0.95 ? { fact: { subject: text(next), predicate: text(next), objectJson: text(next) } } : {}),
  });
}

describe("encodeFactMessage", () => {
  it("writes exactly the bytes toBinary writes, for 5,000 arbitrary messages", () => {
    for (let seed = 0; seed < 5_000; seed++) {
      const message = arbitraryMessage(seed);
      const ours = encodeFactMessage(message);
      const theirs = toBinary(FactMessageSchema, message);
      if (Buffer.compare(Buffer.from(ours), Buffer.from(theirs)) !== 0) {
        expect({ seed, ours: Buffer.from(ours).toString("hex") }).toEqual({ seed, ours: Buffer.from(theirs).toString("hex") });
      }
    }
  });

  it("writes present but empty envelope and fact, and nothing for an empty message", () => {
    for (const message of [create(FactMessageSchema), create(FactMessageSchema, { envelope: {}, fact: {} }), create(FactMessageSchema, { envelope: { labels: { "": "" } } })]) {
      expect(Buffer.from(encodeFactMessage(message)).toString("hex")).toBe(Buffer.from(toBinary(FactMessageSchema, message)).toString("hex"));
    }
  });

  it("with delimited, gives what a request carries as pre-encoded facts: the same bytes as the request built from messages", () => {
    const withUnknown = create(FactMessageSchema, { envelope: { messageId: "m-9" } });
    withUnknown.envelope!.$unknown = [{ no: 15, wireType: WireType.LengthDelimited, data: Uint8Array.of(3, 0x6e, 0x65, 0x77) }];
    const big = create(FactMessageSchema, { envelope: { messageId: "m-big" }, fact: { objectJson: "x".repeat(20_000) } });
    const messages = [arbitraryMessage(1), arbitraryMessage(2), create(FactMessageSchema), withUnknown, big];
    const preEncoded = create(AppendFactRequestSchema);
    preEncoded.$unknown = messages.map((m) => ({ no: 1, wireType: WireType.LengthDelimited, data: encodeFactMessage(m, { delimited: true }) }));
    const bytes = toBinary(AppendFactRequestSchema, preEncoded);
    expect(Buffer.from(bytes).toString("hex")).toBe(Buffer.from(toBinary(AppendFactRequestSchema, create(AppendFactRequestSchema, { messages }))).toString("hex"));
    expect(fromBinary(AppendFactRequestSchema, bytes).messages.map((m) => m.envelope?.messageId ?? "")).toEqual(messages.map((m) => m.envelope?.messageId ?? ""));
  });

  it("takes produced_at_unix_ms as a number or a decimal string too, as toBinary does", () => {
    for (const producedAtUnixMs of [1_764_000_000_000, "1764000000000", 0, -5] as unknown as bigint[]) {
      const message = create(FactMessageSchema, { envelope: { messageId: "m", producedAtUnixMs } });
      expect(Buffer.from(encodeFactMessage(message)).toString("hex")).toBe(Buffer.from(toBinary(FactMessageSchema, message)).toString("hex"));
    }
  });

  it("keeps unknown fields of a newer producer, as toBinary does", () => {
    const newer = create(FactMessageSchema, { envelope: { messageId: "m-1", fromZone: "plant-a" }, fact: { subject: "batch:B1", predicate: "p", objectJson: "{}" } });
    // Field 15 of Envelope, a string this version does not know.
    const withUnknown = fromBinary(FactMessageSchema, Buffer.concat([toBinary(FactMessageSchema, newer), Buffer.from([0x0a, 0x05, 0x7a, 0x03, 0x6e, 0x65, 0x77])]));
    expect(withUnknown.envelope!.$unknown).toHaveLength(1);
    const encoded = encodeFactMessage(withUnknown);
    expect(Buffer.from(encoded).toString("hex")).toBe(Buffer.from(toBinary(FactMessageSchema, withUnknown)).toString("hex"));
    expect(fromBinary(FactMessageSchema, encoded).envelope!.$unknown).toHaveLength(1);
  });

  it("knows every field of the schema (a field added to the proto must be added to the encoder)", () => {
    const fieldsOf = (schema: typeof FactMessageSchema | typeof EnvelopeSchema | typeof FactSchema) => schema.fields.map((f) => `${f.number} ${f.name}`);
    expect({
      [FactMessageSchema.typeName]: fieldsOf(FactMessageSchema),
      [EnvelopeSchema.typeName]: fieldsOf(EnvelopeSchema),
      [FactSchema.typeName]: fieldsOf(FactSchema),
    }).toEqual(ENCODED_FIELDS);
  });
});
