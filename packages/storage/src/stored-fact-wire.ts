import { hash } from "node:crypto";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { RawMessage } from "./pull.js";

/*
 * The read path's hot loop works on protobuf bytes directly. A page of 500
 * facts decoded into messages and encoded again cost the egress service more
 * CPU than everything else in a fetch together; the stored bytes are already
 * the FactMessage a binary client receives.
 */

/**
 * The envelope's from_zone and to_zone, read from a stored FactMessage's bytes without
 * decoding the rest. Stored facts are written by the FactMessage encoder, so the envelope
 * (field 1) occurs once.
 */
export function routeOf(factMessage: Uint8Array): { from: string; to: string } {
  const route = { from: "", to: "" };
  const message = new BinaryReader(factMessage);
  while (message.pos < message.len) {
    const [no, wireType] = message.tag();
    if (no !== 1 || wireType !== WireType.LengthDelimited) {
      message.skip(wireType, no);
      continue;
    }
    const envelope = new BinaryReader(message.bytes());
    while (envelope.pos < envelope.len) {
      const [field, type] = envelope.tag();
      if (field === 2 && type === WireType.LengthDelimited) route.from = envelope.string();
      else if (field === 3 && type === WireType.LengthDelimited) {
        route.to = envelope.string();
        // to_zone (3) follows from_zone (2): nothing more to read.
        return route;
      } else envelope.skip(type, field);
    }
    return route;
  }
  return route;
}

const encoder = new TextEncoder();

/**
 * Each message as a serialized bsfg.v1.StoredFact preceded by its length: the
 * bytes that follow the tag of a `repeated StoredFact` field (e.g.
 * FetchFactsResponse.facts). All of a page's facts share one buffer.
 *
 *   StoredFact { offset = 1 (varint); message = 2 (bytes as stored); stream = 3; stored_at_unix_ms = 4 (varint);
 *                trace_context = 5 (map entries { key = 1; value = 2 }); message_sha256 = 6 }
 */
export function encodeStoredFacts(messages: readonly RawMessage[], stream: string, traceContexts?: readonly (Readonly<Record<string, string>> | undefined)[]): Uint8Array[] {
  const streamBytes = encoder.encode(stream);
  const entries = messages.map((_, i) => Object.entries(traceContexts?.[i] ?? {}).map(([k, v]) => {
    const key = encoder.encode(k);
    const value = encoder.encode(v);
    return { key, value, size: 1 + varintSize(key.byteLength) + key.byteLength + 1 + varintSize(value.byteLength) + value.byteLength };
  }));
  const digests = messages.map((m) => messageDigest(m.data));
  const bodies = messages.map((m, i) =>
    1 + varintSize(m.seq) +
    1 + varintSize(m.data.byteLength) + m.data.byteLength +
    1 + varintSize(streamBytes.byteLength) + streamBytes.byteLength +
    1 + varintSize(m.storedAtMs) +
    entries[i]!.reduce((sum, e) => sum + 1 + varintSize(e.size) + e.size, 0) +
    1 + 1 + DIGEST_BYTES);
  const total = bodies.reduce((sum, body) => sum + varintSize(body) + body, 0);
  const buf = new Uint8Array(total);
  const out: Uint8Array[] = [];
  let pos = 0;
  const varint = (value: number) => {
    // Offsets and millisecond timestamps exceed 32 bits: no bitwise operators.
    while (value >= 0x80) {
      buf[pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buf[pos++] = value;
  };
  const bytes = (value: Uint8Array) => {
    varint(value.byteLength);
    buf.set(value, pos);
    pos += value.byteLength;
  };
  messages.forEach((m, i) => {
    const start = pos;
    varint(bodies[i]!);
    buf[pos++] = (1 << 3) | WireType.Varint;
    varint(m.seq);
    buf[pos++] = (2 << 3) | WireType.LengthDelimited;
    bytes(m.data);
    buf[pos++] = (3 << 3) | WireType.LengthDelimited;
    bytes(streamBytes);
    buf[pos++] = (4 << 3) | WireType.Varint;
    varint(m.storedAtMs);
    for (const entry of entries[i]!) {
      buf[pos++] = (5 << 3) | WireType.LengthDelimited;
      varint(entry.size);
      buf[pos++] = (1 << 3) | WireType.LengthDelimited;
      bytes(entry.key);
      buf[pos++] = (2 << 3) | WireType.LengthDelimited;
      bytes(entry.value);
    }
    buf[pos++] = (6 << 3) | WireType.LengthDelimited;
    bytes(digests[i]!);
    out.push(buf.subarray(start, pos));
  });
  return out;
}

const DIGEST_BYTES = 32;

/** StoredFact.message_sha256: SHA-256 of a fact's stored bytes, which the receiving zone checks before appending them. */
export function messageDigest(factMessage: Uint8Array): Uint8Array {
  const digest = hash("sha256", factMessage, "buffer");
  // A plain Uint8Array, as protobuf-es decodes bytes fields.
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size++;
  }
  return size;
}
