import { create, fromBinary, fromJsonString, toBinary, toJsonString, type DescMethod, type DescMessage, type Message } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  AppendFactRequestSchema, AppendFactResponseSchema, BoundaryService, ConfirmReceiptRequestSchema, DropQuarantinedRequestSchema, FactMessageSchema,
  FetchFactsRequestSchema, FetchObjectRequestSchema, GetQuarantinedRequestSchema, ListQuarantinedRequestSchema, PeerService, PutObjectRequestSchema,
  QuarantineService, ReleaseQuarantinedRequestSchema, StatObjectRequestSchema, type AppendResult, type FactMessage,
} from "@bsfg/proto";
import type { Random } from "./random.js";
import type { Framing } from "./hostile-wire.js";
import { BUCKET, CONSUMER, ZONE, type Caller, type Role } from "./hostile-zone.js";

/*
 * What the hostile groups start from: a well-formed request for every method of the
 * contract (which a group then corrupts, enlarges or sends as the wrong caller), and
 * the helpers to write protobuf and JSON bodies byte by byte.
 */

/** Every method of every service the deployables serve. */
export const METHODS: readonly DescMethod[] = [...BoundaryService.methods, ...PeerService.methods, ...QuarantineService.methods];
export const method = (name: string): DescMethod => METHODS.find((m) => m.name === name)!;

/** The deployable that serves a method; the others answer unimplemented. */
export function servedBy(m: DescMethod): Role {
  if (m.parent.typeName === PeerService.typeName || m.name === "FetchFacts") return "egress";
  if (m.name === "ConfirmReceipt") return "ledger";
  return "ingest";
}

/** The identity whose policy allows the method: a hostile body from it reaches the handler. */
export function rightfulCaller(m: DescMethod): Caller {
  if (m.parent.typeName === QuarantineService.typeName) return "operator";
  if (m.name === "AppendFact" || m.name === "PutObject") return "producer";
  return "reader";
}

/** The object the campaign stores first, so FetchObject/StatObject have something to find. */
export const KNOWN_OBJECT_KEY = "hostile/known-object";

/** Message ids and subjects unique across the campaign (and across campaigns on one zone). */
export interface IdSource {
  nextId(): string;
  readonly rng: Random;
}

/** A fact the producer may append: from this zone, to enterprise, a subject of its own. */
export function legitFact(id: string, objectJson = `{"result":"ok","step":"hostile"}`): FactMessage {
  return create(FactMessageSchema, {
    envelope: { messageId: id, fromZone: ZONE, toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()), correlationId: `corr-${id}` },
    fact: { subject: `batch:PlantA/${id}`, predicate: "step_completed", objectJson },
  });
}

export function randomBytes(rng: Random, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.int(0, 255);
  return out;
}

/** A well-formed request (a stream of them for PutObject) for `m`, as its rightful caller would send it. */
export function sampleRequests(m: DescMethod, s: IdSource): Message[] {
  const { rng } = s;
  const id = () => BigInt(rng.int(0, 20));
  switch (m.name) {
    case "AppendFact":
      return [create(AppendFactRequestSchema, { messages: Array.from({ length: rng.int(1, 3) }, () => legitFact(s.nextId())) })];
    case "FetchFacts":
      return [create(FetchFactsRequestSchema, { consumerName: CONSUMER, limit: rng.int(0, 20), maxWaitMs: 0 })];
    case "ConfirmReceipt":
      return [create(ConfirmReceiptRequestSchema, { consumerName: CONSUMER, offset: BigInt(rng.int(0, 5)) })];
    case "PutObject":
      return [
        create(PutObjectRequestSchema, { part: { case: "header", value: { bucket: BUCKET, key: `hostile/${s.nextId()}`, mediaType: "application/octet-stream" } } }),
        create(PutObjectRequestSchema, { part: { case: "chunk", value: randomBytes(rng, rng.int(1, 256)) } }),
      ];
    case "FetchObject":
      return [create(FetchObjectRequestSchema, { bucket: BUCKET, key: KNOWN_OBJECT_KEY })];
    case "StatObject":
      return [create(StatObjectRequestSchema, { bucket: BUCKET, key: KNOWN_OBJECT_KEY })];
    case "ListQuarantined":
      return [create(ListQuarantinedRequestSchema, { includeSettled: rng.next() < 0.5 })];
    case "GetQuarantined":
      return [create(GetQuarantinedRequestSchema, { id: id() })];
    case "ReleaseQuarantined":
      return [create(ReleaseQuarantinedRequestSchema, { id: id(), note: "hostile" })];
    case "DropQuarantined":
      return [create(DropQuarantinedRequestSchema, { id: id(), reason: "hostile" })];
    default:
      throw new Error(`no sample request for ${m.name}`);
  }
}

/** Encodes request messages with the framing's codec. */
export function encode(m: DescMethod, messages: readonly Message[], framing: Framing): Uint8Array[] {
  const schema: DescMessage = m.input;
  return messages.map((msg) => (framing === "connect-json" ? Buffer.from(toJsonString(schema, msg)) : toBinary(schema, msg)));
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The facts of an AppendFact body as the server decodes them, or undefined when it
 * cannot be decoded. Text that is not UTF-8 counts as undecodable: a zone that accepts
 * it has stored something other than what was sent.
 */
export function decodeAppendRequest(framing: Framing, messages: readonly Uint8Array[]): FactMessage[] | undefined {
  try {
    if (framing === "connect-json") return fromJsonString(AppendFactRequestSchema, strictUtf8.decode(Buffer.concat(messages)), { ignoreUnknownFields: true }).messages;
    // A Connect unary body is one message; concatenated protobuf messages merge.
    const bytes = framing === "connect-proto" ? Buffer.concat(messages) : messages.length === 1 ? messages[0]! : undefined;
    return bytes ? fromBinary(AppendFactRequestSchema, bytes).messages : undefined;
  } catch {
    return undefined;
  }
}

export function decodeAppendResponse(framing: Framing, messages: readonly Uint8Array[]): AppendResult[] | undefined {
  const body = messages[0];
  if (!body) return undefined;
  try {
    return framing === "connect-json" ? fromJsonString(AppendFactResponseSchema, Buffer.from(body).toString("utf8")).results : fromBinary(AppendFactResponseSchema, body).results;
  } catch {
    return undefined;
  }
}

// ---- Mutations ----

export function truncate(bytes: Uint8Array, rng: Random): Uint8Array {
  return bytes.subarray(0, rng.int(0, Math.max(0, bytes.byteLength - 1)));
}

export function flipBits(bytes: Uint8Array, rng: Random, flips: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  if (out.byteLength === 0) return out;
  for (let i = 0; i < flips; i++) out[rng.int(0, out.byteLength - 1)]! ^= 1 << rng.int(0, 7);
  return out;
}

/** Ways a JSON body goes wrong: syntax, types, structure. */
export function malformJson(text: string, rng: Random): string {
  const at = rng.int(0, text.length);
  const pick = rng.int(0, 11);
  switch (pick) {
    case 0: return text.slice(0, at);
    case 1: return text.slice(0, at) + rng.pick(["{", "}", "[", "]", ",", ":", "\"", "\\", "\u0000", "\n"]) + text.slice(at);
    case 2: return text.replace(/"[a-zA-Z]+":/, "\"$&\":");
    case 3: return text.replace(/:\s*"[^"]*"/, ": 12345");
    case 4: return text.replace(/:\s*\d+/, ": \"not a number\"");
    case 5: return text.replace(/\[/, "{").replace(/\]/, "}");
    case 6: return `[${text}]`;
    case 7: return rng.pick(["", "null", "true", "1", "\"string\"", "[]", "{", "{}}", "{\"a\":}", "{'single':'quotes'}", "{\"messages\":null}", "{\"messages\":[null]}", "{\"messages\":[1,2,3]}"]);
    case 8: return text.replace(/\{/, "{\"unknownField\":{\"deep\":[1,2,3]},");
    case 9: return text.replace(/"([a-zA-Z]+)":/, "\"$1\":null,\"$1\":");
    case 10: return `${text}${text}`;
    default: return text.replace(/"/g, () => (rng.next() < 0.05 ? "" : "\""));
  }
}

// ---- Hand-written protobuf, for bytes protobuf-es would never produce ----

/** A string field's content: text, or raw bytes (e.g. invalid UTF-8). */
export type Raw = string | Uint8Array;
const bytesOf = (v: Raw) => (typeof v === "string" ? Buffer.from(v, "utf8") : v);

export interface RawFact {
  messageId: Raw;
  fromZone?: Raw;
  toZone?: Raw;
  producedAt?: bigint;
  correlationId?: Raw;
  causationId?: Raw;
  labels?: Array<[Raw, Raw]>;
  objectMediaType?: Raw;
  objectSchema?: Raw;
  subject: Raw;
  predicate?: Raw;
  objectJson: Raw;
}

function stringField(w: BinaryWriter, field: number, value: Raw | undefined): void {
  if (value === undefined) return;
  w.tag(field, WireType.LengthDelimited).bytes(bytesOf(value));
}

/** A FactMessage with every string field written as the given bytes. */
export function rawFactMessage(f: RawFact): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).fork();
  stringField(w, 1, f.messageId);
  stringField(w, 2, f.fromZone ?? ZONE);
  stringField(w, 3, f.toZone ?? "enterprise");
  w.tag(4, WireType.Varint).int64(f.producedAt ?? BigInt(Date.now()));
  stringField(w, 5, f.correlationId);
  stringField(w, 6, f.causationId);
  for (const [key, value] of f.labels ?? []) {
    w.tag(7, WireType.LengthDelimited).fork();
    stringField(w, 1, key);
    stringField(w, 2, value);
    w.join();
  }
  stringField(w, 8, f.objectMediaType);
  stringField(w, 9, f.objectSchema);
  w.join();
  w.tag(2, WireType.LengthDelimited).fork();
  stringField(w, 1, f.subject);
  stringField(w, 2, f.predicate ?? "step_completed");
  stringField(w, 3, f.objectJson);
  w.join();
  return w.finish();
}

/** An AppendFactRequest of hand-written FactMessages. */
export function rawAppendRequest(facts: readonly Uint8Array[]): Uint8Array {
  const w = new BinaryWriter();
  for (const fact of facts) w.tag(1, WireType.LengthDelimited).bytes(fact);
  return w.finish();
}

/** A request whose string fields (by field number) are the given bytes; varint fields as numbers. */
export function rawRequest(fields: ReadonlyArray<readonly [number, Raw | bigint]>): Uint8Array {
  const w = new BinaryWriter();
  for (const [field, value] of fields) {
    if (typeof value === "bigint") w.tag(field, WireType.Varint).uint64(value);
    else stringField(w, field, value);
  }
  return w.finish();
}

/**
 * `depth` nested groups of an unknown field (start-group tags, then as many end-group
 * tags): a decoder that recurses into unknown groups without a limit runs out of stack.
 */
export function nestedUnknownGroups(depth: number): Uint8Array {
  const start = new BinaryWriter().tag(15, WireType.StartGroup).finish();
  const end = new BinaryWriter().tag(15, WireType.EndGroup).finish();
  return Buffer.concat([Buffer.alloc(start.byteLength * depth, start), Buffer.alloc(end.byteLength * depth, end)]);
}

/** Byte sequences that are not UTF-8: each is refused by a strict decoder. */
export const INVALID_UTF8: readonly Uint8Array[] = [
  Uint8Array.of(0xff),
  Uint8Array.of(0xc0, 0x80), // overlong NUL
  Uint8Array.of(0xed, 0xa0, 0x80), // a UTF-16 surrogate (U+D800) written as UTF-8
  Uint8Array.of(0xf4, 0x90, 0x80, 0x80), // beyond U+10FFFF
  Uint8Array.of(0xe2, 0x82), // truncated sequence
  Uint8Array.of(0x80), // lone continuation byte
  Uint8Array.of(0xfe, 0xfe, 0xff, 0xff),
  Uint8Array.of(0xf8, 0x88, 0x80, 0x80, 0x80), // 5-byte form
];

/** `text` with `bad` bytes in its middle. */
export function withBytes(text: string, bad: Uint8Array): Uint8Array {
  const half = Math.floor(text.length / 2);
  return Buffer.concat([Buffer.from(text.slice(0, half)), bad, Buffer.from(text.slice(half))]);
}
