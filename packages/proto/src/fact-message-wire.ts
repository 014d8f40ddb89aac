import { Buffer } from "node:buffer";
import { toBinary } from "@bufbuild/protobuf";
import { FactMessageSchema, type Envelope, type Fact, type FactMessage } from "./gen/bsfg/v1/fact_pb.js";

/*
 * Every fact is encoded on its way in: by the producer's client (AppendFact) and
 * again by the zone's append path (in canonical form). protobuf-es's reflective
 * toBinary took about 23 µs for a 256-byte fact, two thirds of a zone's whole
 * validation of it; this encoder writes the same bytes in 2–3 µs.
 * fact-message-wire.test.ts proves it byte for byte against toBinary and fails
 * when the schema gains a field.
 */

/** The fields this encoder writes, by message: what the test holds the schema to. */
export const ENCODED_FIELDS = {
  "bsfg.v1.FactMessage": ["1 envelope", "2 fact"],
  "bsfg.v1.Envelope": ["1 message_id", "2 from_zone", "3 to_zone", "4 produced_at_unix_ms", "5 correlation_id", "6 causation_id", "7 labels", "8 object_media_type", "9 object_schema"],
  "bsfg.v1.Fact": ["1 subject", "2 predicate", "3 object_json"],
} as const;

const LENGTH_DELIMITED = 2;
const tag = (field: number, wireType: number) => (field << 3) | wireType;

/**
 * A FactMessage's protobuf encoding, exactly as `toBinary(FactMessageSchema, message)`
 * writes it: fields in number order, proto3 defaults left out, map entries with both
 * key and value. A message that carries unknown fields (from a newer producer) is
 * handed to toBinary, which writes them back.
 *
 * With `delimited`, the encoding is preceded by its length: the bytes that follow the
 * tag of a FactMessage field, which is how protobuf-es holds a length-delimited
 * unknown field (`$unknown[].data`) — a request can carry pre-encoded facts that way.
 */
export function encodeFactMessage(message: FactMessage, opts: { delimited?: boolean } = {}): Uint8Array {
  const { envelope, fact } = message;
  if (hasUnknown(message) || (envelope && hasUnknown(envelope)) || (fact && hasUnknown(fact))) {
    const bytes = toBinary(FactMessageSchema, message);
    if (!opts.delimited) return bytes;
    const out = new Writer(varintSize(bytes.byteLength) + bytes.byteLength);
    out.varint(bytes.byteLength);
    out.raw(bytes);
    return out.done();
  }
  const envelopeSize = envelope ? sizeOfEnvelope(envelope) : 0;
  const factSize = fact ? sizeOfFact(fact) : 0;
  const size = (envelope ? 1 + varintSize(envelopeSize) + envelopeSize : 0) + (fact ? 1 + varintSize(factSize) + factSize : 0);
  const out = new Writer(opts.delimited ? varintSize(size) + size : size);
  if (opts.delimited) out.varint(size);
  if (envelope) {
    out.byte(tag(1, LENGTH_DELIMITED));
    out.varint(envelopeSize);
    writeEnvelope(out, envelope);
  }
  if (fact) {
    out.byte(tag(2, LENGTH_DELIMITED));
    out.varint(factSize);
    out.string(1, fact.subject);
    out.string(2, fact.predicate);
    out.string(3, fact.objectJson);
  }
  return out.done();
}

function hasUnknown(message: { $unknown?: unknown[] }): boolean {
  return message.$unknown !== undefined && message.$unknown.length > 0;
}

function sizeOfEnvelope(e: Envelope): number {
  let size = stringSize(e.messageId) + stringSize(e.fromZone) + stringSize(e.toZone) + stringSize(e.correlationId) + stringSize(e.causationId) + stringSize(e.objectMediaType) + stringSize(e.objectSchema);
  const producedAt = int64Of(e.producedAtUnixMs);
  if (producedAt !== 0n) size += 1 + int64Size(producedAt);
  for (const key of Object.keys(e.labels)) {
    const entry = labelEntrySize(key, e.labels[key]!);
    size += 1 + varintSize(entry) + entry;
  }
  return size;
}

function writeEnvelope(out: Writer, e: Envelope): void {
  out.string(1, e.messageId);
  out.string(2, e.fromZone);
  out.string(3, e.toZone);
  const producedAt = int64Of(e.producedAtUnixMs);
  if (producedAt !== 0n) {
    out.byte(tag(4, 0));
    out.int64(producedAt);
  }
  out.string(5, e.correlationId);
  out.string(6, e.causationId);
  for (const key of Object.keys(e.labels)) {
    // A map entry carries its key and value even when they are empty.
    const value = e.labels[key]!;
    out.byte(tag(7, LENGTH_DELIMITED));
    out.varint(labelEntrySize(key, value));
    out.byte(tag(1, LENGTH_DELIMITED));
    out.varint(Buffer.byteLength(key));
    out.utf8(key);
    out.byte(tag(2, LENGTH_DELIMITED));
    out.varint(Buffer.byteLength(value));
    out.utf8(value);
  }
  out.string(8, e.objectMediaType);
  out.string(9, e.objectSchema);
}

/** An int64 field's value: a bigint, or — from plain objects — a number or a decimal string, as toBinary takes them. */
function int64Of(value: bigint | number | string): bigint {
  return typeof value === "bigint" ? value : BigInt(value);
}

function sizeOfFact(f: Fact): number {
  return stringSize(f.subject) + stringSize(f.predicate) + stringSize(f.objectJson);
}

function labelEntrySize(key: string, value: string): number {
  const k = Buffer.byteLength(key);
  const v = Buffer.byteLength(value);
  return 1 + varintSize(k) + k + 1 + varintSize(v) + v;
}

/** A singular string field: left out when empty (proto3 implicit presence). */
function stringSize(s: string): number {
  if (s === "") return 0;
  const n = Buffer.byteLength(s);
  return 1 + varintSize(n) + n;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

/** int64 as a varint of its two's complement: a negative value takes 10 bytes. */
function int64Size(value: bigint): number {
  let v = BigInt.asUintN(64, value);
  let size = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    size++;
  }
  return size;
}

class Writer {
  /** Every byte is written (sizes are computed first), so pooled, uninitialized memory is safe; `done` checks. */
  readonly bytes: Buffer;
  private pos = 0;

  constructor(size: number) {
    this.bytes = Buffer.allocUnsafe(size);
  }

  /** The encoding; throws if the size computed first and the bytes written differ. */
  done(): Uint8Array {
    if (this.pos !== this.bytes.byteLength) throw new Error(`FactMessage encoder: wrote ${this.pos} of ${this.bytes.byteLength} bytes`);
    return this.bytes;
  }

  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.byteLength;
  }

  byte(b: number): void {
    this.bytes[this.pos++] = b;
  }

  varint(n: number): void {
    // Lengths only: non-negative and far below 2^53.
    while (n >= 0x80) {
      this.bytes[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.bytes[this.pos++] = n;
  }

  int64(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return this.varint(Number(v));
    while (v >= 0x80n) {
      this.bytes[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.bytes[this.pos++] = Number(v);
  }

  utf8(s: string): void {
    // Short ASCII strings (ids, zones, subjects) are copied here: cheaper than a native call.
    if (s.length <= 64) {
      const start = this.pos;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) {
          this.pos = start;
          break;
        }
        this.bytes[this.pos++] = c;
      }
      if (this.pos - start === s.length) return;
    }
    this.pos += this.bytes.write(s, this.pos, "utf8");
  }

  string(field: number, s: string): void {
    if (s === "") return;
    this.byte(tag(field, LENGTH_DELIMITED));
    this.varint(Buffer.byteLength(s));
    this.utf8(s);
  }
}
