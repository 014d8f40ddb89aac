import { create, toJson, toJsonString, type DescMethod, type Message } from "@bufbuild/protobuf";
import { AppendFactRequestSchema, FactMessageSchema, PutObjectRequestSchema } from "@bsfg/proto";
import {
  encode, flipBits, INVALID_UTF8, legitFact, malformJson, method, METHODS, nestedUnknownGroups, randomBytes, rawAppendRequest, rawFactMessage,
  rawRequest, rightfulCaller, sampleRequests, servedBy, truncate, withBytes, KNOWN_OBJECT_KEY, type RawFact,
} from "./hostile-inputs.js";
import { GroupTally, pickTarget, send, type GroupContext, type HostileGroupResult, type HostileInput } from "./hostile-tally.js";
import { BINARY_FRAMINGS, envelope, forEachLimited, type Framing } from "./hostile-wire.js";
import { BUCKET, CONSUMER, FORBIDDEN_BUCKET, OTHER_CONSUMER, ROLES, ZONE, type Caller, type Role } from "./hostile-zone.js";

/*
 * The hostile input groups. Each sends its inputs (seeded), counts the answers and
 * returns them; what a group sends is said at its top. A group runs its inputs with
 * bounded concurrency over pooled HTTP/2 connections, like a busy client would.
 */

export type Group = (ctx: GroupContext) => Promise<HostileGroupResult>;

/** Runs `count` inputs made by `make(i)` and tallies them under `name`. */
async function runInputs(ctx: GroupContext, name: string, count: number, make: (i: number) => HostileInput, concurrency = ctx.concurrency): Promise<HostileGroupResult> {
  const tally = new GroupTally(name, ctx.log);
  // Inputs are made in order before sending, so the seed decides them whatever the timing.
  const inputs = Array.from({ length: count }, (_, i) => make(i));
  await forEachLimited(inputs.length, concurrency, (i) => send(ctx, tally, inputs[i]!).then(() => undefined));
  return tally.result();
}

const size = (ctx: GroupContext, full: number, quick: number) => (ctx.quick ? quick : full);

/** A fuzz target with its rightful caller and a well-formed request to corrupt. */
function fuzzTarget(ctx: GroupContext): { m: DescMethod; role: Role; caller: Caller; messages: Message[] } {
  const { method: m, role } = pickTarget(ctx.rng, METHODS, servedBy, ROLES);
  return { m, role, caller: rightfulCaller(m), messages: sampleRequests(m, ctx.ids) };
}

/** Random bytes as the request message(s), in one of the binary framings. */
export const randomBodies: Group = (ctx) =>
  runInputs(ctx, "random protobuf bodies", size(ctx, 1_200, 100), () => {
    const { m, role, caller } = fuzzTarget(ctx);
    const length = () => (ctx.rng.next() < 0.8 ? ctx.rng.int(0, 64) : ctx.rng.int(65, 4_096));
    const messages = Array.from({ length: m.methodKind === "unary" ? 1 : ctx.rng.int(1, 3) }, () => randomBytes(ctx.rng, length()));
    return { role, caller, req: { method: m, framing: ctx.rng.pick(BINARY_FRAMINGS), messages } };
  });

/** A well-formed request cut off at a random byte. */
export const truncatedBodies: Group = (ctx) =>
  runInputs(ctx, "truncated protobuf bodies", size(ctx, 800, 80), () => {
    const { m, role, caller, messages } = fuzzTarget(ctx);
    const framing = ctx.rng.pick(BINARY_FRAMINGS);
    const encoded = encode(m, messages, framing);
    const cut = ctx.rng.int(0, encoded.length - 1);
    encoded[cut] = truncate(encoded[cut]!, ctx.rng);
    return { role, caller, req: { method: m, framing, messages: encoded } };
  });

/** A well-formed request with 1–8 random bits flipped, in one framing per group. */
export const bitFlipped = (framing: Framing, full: number, quick: number): Group => (ctx) =>
  runInputs(ctx, `bit-flipped protobuf (${framing})`, size(ctx, full, quick), () => {
    const { m, role, caller, messages } = fuzzTarget(ctx);
    const encoded = encode(m, messages, framing).map((bytes) => flipBits(bytes, ctx.rng, ctx.rng.int(1, 8)));
    return { role, caller, req: { method: m, framing, messages: encoded } };
  });

/** A well-formed request as Connect JSON, then broken: syntax, types, structure, duplicates. */
export const malformedJson: Group = (ctx) =>
  runInputs(ctx, "malformed JSON (connect)", size(ctx, 1_000, 80), () => {
    const { m, role, caller, messages } = fuzzTarget(ctx);
    const encoded = encode(m, messages, "connect-json").map((bytes) => Buffer.from(malformJson(Buffer.from(bytes).toString("utf8"), ctx.rng)));
    return { role, caller, req: { method: m, framing: "connect-json", messages: encoded } };
  });

/** Envelopes and content types that lie: lengths, flags, compression, media types, HTTP methods. */
export const corruptFraming: Group = (ctx) =>
  runInputs(ctx, "corrupt framing and content types", size(ctx, 400, 40), () => {
    const { m, role, caller, messages } = fuzzTarget(ctx);
    const framing = ctx.rng.pick(["grpc", "grpc-web", "connect-proto"] as const);
    const payload = encode(m, messages, framing)[0]!;
    const req = { method: m, framing };
    const variants: Array<() => HostileInput["req"]> = [
      () => ({ ...req, rawBody: envelope(0, payload, payload.byteLength + ctx.rng.int(1, 1_000)) }),
      () => ({ ...req, rawBody: Buffer.concat([envelope(0, payload, Math.max(0, payload.byteLength - 3)), randomBytes(ctx.rng, 3)]) }),
      () => ({ ...req, rawBody: envelope(1, payload) }),
      () => ({ ...req, rawBody: envelope(1, randomBytes(ctx.rng, 40)), headers: { "grpc-encoding": "gzip", "connect-content-encoding": "gzip" } }),
      () => ({ ...req, rawBody: envelope(ctx.rng.pick([0x02, 0x80, 0x7f, 0xff]), payload) }),
      () => ({ ...req, rawBody: new Uint8Array() }),
      () => ({ ...req, rawBody: Buffer.concat([envelope(0, payload), envelope(0, payload)]) }),
      () => ({ ...req, rawBody: Buffer.concat([envelope(0, randomBytes(ctx.rng, 10), 0xffffffff)]) }),
      () => ({ ...req, rawBody: randomBytes(ctx.rng, ctx.rng.int(1, 4)) }),
      () => ({ method: m, framing: "connect-proto" as const, messages: [randomBytes(ctx.rng, 30)], headers: { "content-encoding": "gzip" } }),
      () => ({ ...req, messages: [payload], headers: { "content-type": ctx.rng.pick(["application/xml", "text/plain", "application/grpc+thrift", "application/connect+xml", "multipart/form-data; boundary=x", ""]) } }),
      () => ({ ...req, messages: [payload], headers: { ":method": ctx.rng.pick(["GET", "PUT", "DELETE", "PATCH"]) } }),
      () => ({ ...req, messages: [payload], headers: { "connect-timeout-ms": ctx.rng.pick(["-1", "abc", "99999999999", "0"]), "grpc-timeout": ctx.rng.pick(["1n", "99999999H", "x", "-5S"]) } }),
      () => ({ ...req, messages: [payload], headers: { "connect-protocol-version": ctx.rng.pick(["2", "", "one"]) } }),
    ];
    return { role, caller, req: ctx.rng.pick(variants)() };
  });

/** Every method sent to every deployable, well formed, by its rightful caller: served or unimplemented. */
export const everyMethodEverywhere: Group = (ctx) => {
  const targets = METHODS.flatMap((m) => ROLES.map((role) => ({ m, role })));
  return runInputs(ctx, "every method on every deployable", targets.length, (i) => {
    const { m, role } = targets[i]!;
    const framing = ctx.rng.pick(["connect-proto", "connect-json", "grpc", "grpc-web"] as const);
    return { role, caller: rightfulCaller(m), req: { method: m, framing, messages: encode(m, sampleRequests(m, ctx.ids), framing) } };
  });
};

/** An AppendFact of the given facts, well-formed protobuf. */
const appendOf = (facts: Message[], framing: Framing = "connect-proto"): HostileInput => ({
  role: "ingest",
  caller: "producer",
  req: { method: method("AppendFact"), framing, messages: encode(method("AppendFact"), [create(AppendFactRequestSchema, { messages: facts as never })], framing) },
});

/** Facts and batches beyond the storage limits (64 KiB per fact, 1,000 and 4 MiB per batch), and requests beyond other bounds. */
export const oversizeFacts: Group = (ctx) => {
  const big = (bytes: number) => legitFact(ctx.ids.nextId(), JSON.stringify({ blob: "x".repeat(bytes) }));
  const variants: Array<() => HostileInput> = [
    () => appendOf([big(70_000)]),
    () => appendOf([big(65_536 - 200)], ctx.rng.pick(BINARY_FRAMINGS)),
    () => appendOf(Array.from({ length: 1_001 }, () => legitFact(ctx.ids.nextId()))),
    () => appendOf(Array.from({ length: 70 }, () => big(60_000))),
    () => appendOf([]),
    () => {
      const fact = legitFact(ctx.ids.nextId());
      fact.envelope!.labels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`label-${i}`, "v"]));
      return appendOf([fact]);
    },
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: "connect-proto", messages: [rawRequest([[1, CONSUMER], [2, 0xffffffffn], [3, 0xffffffffn]])] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: "grpc", messages: encode(method("PutObject"), [
      create(PutObjectRequestSchema, { part: { case: "header", value: { bucket: BUCKET, key: `hostile/${ctx.ids.nextId()}`, mediaType: "application/octet-stream", size: 10n } } }),
      create(PutObjectRequestSchema, { part: { case: "chunk", value: randomBytes(ctx.rng, 300_000) } }),
    ], "grpc") } }),
  ];
  return runInputs(ctx, "oversize facts and batches", size(ctx, 48, variants.length), (i) => variants[i % variants.length]!(), 2);
};

/** Request bodies beyond the server's read limit (8 MiB), in each framing. */
export const oversizeBodies: Group = (ctx) => {
  const nineMiB = () => randomBytes(ctx.rng, 9 * 2 ** 20);
  const variants: Array<() => HostileInput> = [
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-proto", messages: [nineMiB()] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "grpc", messages: [nineMiB()] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-json", messages: [Buffer.from(`{"messages":[{"fact":{"objectJson":"${"y".repeat(9 * 2 ** 20)}"}}]}`)] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: "connect-proto", messages: [
      encode(method("PutObject"), [create(PutObjectRequestSchema, { part: { case: "header", value: { bucket: BUCKET, key: `hostile/${ctx.ids.nextId()}`, mediaType: "application/octet-stream" } } })], "connect-proto")[0]!,
      nineMiB(),
    ] } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: "grpc-web", messages: [nineMiB()] } }),
  ];
  // Each on a connection of its own: HTTP/2 may refuse every later stream of a connection
  // whose memory budget such a body used up, which is the connection's fate, not the next input's.
  return runInputs(ctx, "oversized request bodies", size(ctx, 15, variants.length), (i) => ({ ...variants[i % variants.length]!(), ownConnection: true }), 1);
};

/** object_json, JSON bodies and protobuf nested 100,000 deep (and 30,000: under the fact size limit). */
export const deepNesting: Group = (ctx) => {
  const arrays = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  const objects = (depth: number) => "{\"a\":".repeat(depth) + "1" + "}".repeat(depth);
  const variants: Array<() => HostileInput> = [
    () => appendOf([legitFact(ctx.ids.nextId(), arrays(100_000))]),
    () => appendOf([legitFact(ctx.ids.nextId(), objects(100_000))]),
    () => appendOf([legitFact(ctx.ids.nextId(), arrays(30_000))], ctx.rng.pick(BINARY_FRAMINGS)),
    () => appendOf([legitFact(ctx.ids.nextId(), `{"v":${arrays(20_000)}}`)], "connect-json"),
    // Connect JSON bodies whose own structure is 100k deep: in an unknown field, and where a string belongs.
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-json", messages: [Buffer.from(`{"deep":${arrays(100_000)},"messages":[]}`)] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-json", messages: [Buffer.from(`{"messages":[{"fact":{"objectJson":${objects(100_000)}}}]}`)] } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: "connect-json", messages: [Buffer.from(`{"consumerName":${arrays(100_000)}}`)] } }),
    // Protobuf: 100k nested groups of an unknown field, at the top and inside a FactMessage.
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [nestedUnknownGroups(100_000)] } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [Buffer.concat([rawRequest([[1, CONSUMER]]), nestedUnknownGroups(100_000)])] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-proto", messages: [rawAppendRequest([Buffer.concat([rawFactMessage({ messageId: ctx.ids.nextId(), subject: "batch:PlantA/deep", objectJson: "{}" }), nestedUnknownGroups(50_000)])])] } }),
  ];
  return runInputs(ctx, "nesting 100k deep", size(ctx, 30, variants.length), (i) => variants[i % variants.length]!(), 2);
};

/** Bytes that are not UTF-8 in every string field of every request, over the binary framings and in Connect JSON text. */
export const invalidUtf8: Group = (ctx) => {
  const bad = () => ctx.rng.pick(INVALID_UTF8);
  const factWith = (field: keyof RawFact): Uint8Array => {
    const id = ctx.ids.nextId();
    const fact: RawFact = { messageId: id, subject: `batch:PlantA/${id}`, objectJson: "{\"result\":\"ok\"}" };
    if (field === "labels") fact.labels = [ctx.rng.next() < 0.5 ? [withBytes("label", bad()), "v"] : ["label", withBytes("value", bad())]];
    else if (field === "objectJson") fact.objectJson = withBytes("{\"result\":\"okok\"}", bad());
    else (fact as unknown as Record<string, unknown>)[field] = withBytes(String((fact as unknown as Record<string, unknown>)[field] ?? "text-value"), bad());
    return rawAppendRequest([rawFactMessage(fact)]);
  };
  const factFields: Array<keyof RawFact> = ["messageId", "fromZone", "toZone", "correlationId", "causationId", "labels", "objectMediaType", "objectSchema", "subject", "predicate", "objectJson"];
  const others: Array<[string, () => Uint8Array]> = [
    ["FetchFacts", () => rawRequest([[1, withBytes(CONSUMER, bad())]])],
    ["ConfirmReceipt", () => rawRequest([[1, withBytes(CONSUMER, bad())], [2, 1n]])],
    ["FetchObject", () => rawRequest([[1, BUCKET], [2, withBytes(KNOWN_OBJECT_KEY, bad())]])],
    ["StatObject", () => rawRequest([[1, withBytes(BUCKET, bad())], [2, KNOWN_OBJECT_KEY]])],
    ["ReleaseQuarantined", () => rawRequest([[1, 1n], [2, withBytes("note", bad())]])],
    ["DropQuarantined", () => rawRequest([[1, 1n], [2, withBytes("reason", bad())]])],
  ];
  const make = (): HostileInput => {
    const roll = ctx.rng.next();
    if (roll < 0.55) return { role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [factWith(ctx.rng.pick(factFields))] } };
    if (roll < 0.7) {
      // PutObject's header fields, in a client stream.
      const header = rawRequest([[1, ctx.rng.pick([BUCKET, withBytes(BUCKET, bad())])], [2, withBytes(`hostile/${ctx.ids.nextId()}`, bad())], [3, "application/octet-stream"]]);
      return { role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [Buffer.concat([new Uint8Array([0x0a]), varint(header.byteLength), header]), rawRequest([[2, "chunk"]])] } };
    }
    if (roll < 0.85) {
      const [name, body] = ctx.rng.pick(others);
      const m = method(name);
      return { role: servedBy(m), caller: rightfulCaller(m), req: { method: m, framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [body()] } };
    }
    // Connect JSON whose text is not UTF-8, inside a string value (JSON itself must be UTF-8).
    const id = ctx.ids.nextId();
    const json = toJsonString(AppendFactRequestSchema, create(AppendFactRequestSchema, { messages: [legitFact(id)] }));
    const at = json.indexOf(ctx.rng.pick(["corr-", "\\\"result", "batch:PlantA"]));
    return { role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-json", messages: [Buffer.concat([Buffer.from(json.slice(0, at + 2)), bad(), Buffer.from(json.slice(at + 2))])] } };
  };
  return runInputs(ctx, "invalid UTF-8 in string fields", size(ctx, 300, 30), make);
};

function varint(value: number): Uint8Array {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return Uint8Array.from(out);
}

/** Lone UTF-16 surrogates, escaped in Connect JSON text, in every string field (and inside object_json, raw and escaped). */
export const loneSurrogates: Group = (ctx) => {
  const lone = () => ctx.rng.pick(["\\ud800", "\\udfff", "\\udbff", "\\udc00x", "x\\ud83d"]);
  type JsonFact = { envelope: Record<string, unknown>; fact: Record<string, unknown> };
  const appendJson = (mutate: (json: JsonFact) => void): HostileInput => {
    const json = toJson(AppendFactRequestSchema, create(AppendFactRequestSchema, { messages: [legitFact(ctx.ids.nextId())] })) as { messages: JsonFact[] };
    mutate(json.messages[0]!);
    // JSON.stringify would escape the backslash: the surrogate escape goes in as text.
    const text = JSON.stringify(json).replace(/@@LONE(\\\\u[0-9a-f]{4}|[^@]*)@@/g, (_, s: string) => s.replace(/\\\\/g, "\\"));
    return { role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-json", messages: [Buffer.from(text)] } };
  };
  const marked = () => `@@LONE${lone()}@@`;
  const variants: Array<() => HostileInput> = [
    () => appendJson((m) => (m.envelope.messageId = `id-${marked()}`)),
    () => appendJson((m) => (m.envelope.correlationId = `corr-${marked()}`)),
    () => appendJson((m) => (m.envelope.causationId = marked())),
    () => appendJson((m) => (m.envelope.objectSchema = `urn:${marked()}`)),
    () => appendJson((m) => (m.envelope.labels = { lab: `v-${marked()}` })),
    () => appendJson((m) => (m.envelope.labels = { [`k-${marked()}`]: "v" })),
    () => appendJson((m) => (m.fact.subject = `batch:PlantA/${marked()}`)),
    // Inside object_json: a raw lone surrogate in the string, and an escaped one in the JSON it holds.
    () => appendJson((m) => (m.fact.objectJson = `{"v":"${marked()}"}`)),
    () => appendJson((m) => (m.fact.objectJson = `{"v":"@@LONE\\\\ud800@@"}`)),
    () => appendJson((m) => (m.fact.objectJson = `{"k${marked()}":1}`)),
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: "connect-json", messages: [Buffer.from(`{"consumerName":"${CONSUMER}${lone()}"}`)] } }),
    () => ({ role: "ledger", caller: "reader", req: { method: method("ConfirmReceipt"), framing: "connect-json", messages: [Buffer.from(`{"consumerName":"${lone()}","offset":"1"}`)] } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("StatObject"), framing: "connect-json", messages: [Buffer.from(`{"bucket":"${BUCKET}","key":"k${lone()}"}`)] } }),
    () => ({ role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: "connect-json", messages: [
      Buffer.from(`{"header":{"bucket":"${BUCKET}","key":"hostile/${ctx.ids.nextId()}${lone()}","mediaType":"text/plain"}}`),
      Buffer.from(`{"chunk":"aGVsbG8="}`),
    ] } }),
    () => ({ role: "ingest", caller: "operator", req: { method: method("ReleaseQuarantined"), framing: "connect-json", messages: [Buffer.from(`{"id":"1","note":"${lone()}"}`)] } }),
  ];
  return runInputs(ctx, "lone surrogates", size(ctx, 200, 20), () => ctx.rng.pick(variants)());
};

/** Numbers at and beyond every edge: in object_json, and in the JSON codec's integer fields. */
export const numericEdges: Group = (ctx) => {
  const inObject = ["9007199254740991", "9007199254740992", "-9007199254740993", "12345678901234567890", "1e400", "-1e400", "1e-400", "5e-324", "-0", "-0.0", "1e308", "1.7976931348623157e308",
    "NaN", "Infinity", "-Infinity", "0x10", "00", "+1", ".5", "1.", "1e", "0.10000000000000000001", "9007199254740993.0", "1e16", "\"NaN\"", "1E3", "4.50"];
  const int64s = ["\"9223372036854775807\"", "\"9223372036854775808\"", "\"-9223372036854775809\"", "1e400", "-0", "\"NaN\"", "\"Infinity\"", "1.5", "\"0x10\"", "9007199254740993", "\"-1\"", "\"1e3\"", "\" 12\"", "\"\"", "NaN", "true", "[]"];
  const uint32s = ["-1", "4294967296", "4294967295", "1.5", "\"NaN\"", "1e400", "-0", "\"12abc\"", "1e2", "\"1e2\""];
  const uint64s = ["\"18446744073709551615\"", "\"18446744073709551616\"", "-1", "9007199254740993", "1e400", "\"-0\"", "\"NaN\"", "\"9223372036854775808\"", "0.5", "\"1e30\""];
  const json = (m: string, role: Role, caller: Caller, text: string): HostileInput => ({ role, caller, req: { method: method(m), framing: "connect-json", messages: [Buffer.from(text)] } });
  const variants: Array<() => HostileInput> = [
    () => appendOf([legitFact(ctx.ids.nextId(), `{"v":${ctx.rng.pick(inObject)}}`)], ctx.rng.pick(["connect-proto", "grpc", "connect-json"] as const)),
    () => {
      const fact = toJson(FactMessageSchema, legitFact(ctx.ids.nextId())) as { envelope: Record<string, unknown> };
      return json("AppendFact", "ingest", "producer", `{"messages":[${JSON.stringify(fact).replace(/"producedAtUnixMs":"\d+"/, `"producedAtUnixMs":${ctx.rng.pick(int64s)}`)}]}`);
    },
    () => json("FetchFacts", "egress", "reader", `{"consumerName":"${CONSUMER}","limit":${ctx.rng.pick(uint32s)},"maxWaitMs":${ctx.rng.pick(["0", ...uint32s])}}`),
    () => json("FetchFacts", "egress", "reader", `{"consumerName":"${CONSUMER}","afterOffset":${ctx.rng.pick(uint64s)}}`),
    () => json("ConfirmReceipt", "ledger", "reader", `{"consumerName":"${CONSUMER}","offset":${ctx.rng.pick(uint64s)}}`),
    () => json(ctx.rng.pick(["GetQuarantined", "ReleaseQuarantined", "DropQuarantined"]), "ingest", "operator", `{"id":${ctx.rng.pick(uint64s)}}`),
    () => json("FetchObject", "egress", "reader", `{"bucket":"${BUCKET}","key":"${KNOWN_OBJECT_KEY}","offset":${ctx.rng.pick(uint64s)}}`),
    // Binary: the largest varints, and an 11-byte varint no 64-bit field can hold.
    () => ({ role: "ledger", caller: "reader", req: { method: method("ConfirmReceipt"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [rawRequest([[1, CONSUMER], [2, ctx.rng.pick([2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n])]])] } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [rawRequest([[1, CONSUMER], [4, ctx.rng.pick([2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n])]])] } }),
    () => ({ role: "ledger", caller: "reader", req: { method: method("ConfirmReceipt"), framing: "connect-proto", messages: [Buffer.concat([rawRequest([[1, CONSUMER]]), Uint8Array.of(0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)])] } }),
    () => ({ role: "ingest", caller: "operator", req: { method: method("GetQuarantined"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [rawRequest([[1, ctx.rng.pick([2n ** 64n - 1n, 2n ** 53n + 1n, 2n ** 32n])]])] } }),
  ];
  return runInputs(ctx, "numeric edge cases", size(ctx, 300, 30), () => ctx.rng.pick(variants)());
};

/** Identifiers of 1 MB: message_id, subject, predicate, labels, zones, consumer names, buckets, keys, notes. */
export const hugeIdentifiers: Group = (ctx) => {
  const mb = () => "m".repeat(2 ** 20);
  const fact = (field: keyof RawFact): HostileInput => {
    const id = ctx.ids.nextId();
    const f: RawFact = { messageId: id, subject: `batch:PlantA/${id}`, objectJson: "{}" };
    if (field === "labels") f.labels = [[mb(), "v"]];
    else (f as unknown as Record<string, unknown>)[field] = field === "subject" ? `batch:PlantA/${mb()}` : mb();
    return { role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [rawAppendRequest([rawFactMessage(f)])] } };
  };
  const raw = (m: string, fields: ReadonlyArray<readonly [number, string | bigint]>): HostileInput => ({ role: servedBy(method(m)), caller: rightfulCaller(method(m)), req: { method: method(m), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [rawRequest(fields)] } });
  const putHeader = (fields: ReadonlyArray<readonly [number, string]>): HostileInput => {
    const header = rawRequest(fields);
    return { role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: ctx.rng.pick(BINARY_FRAMINGS), messages: [Buffer.concat([Uint8Array.of(0x0a), varint(header.byteLength), header]), rawRequest([[2, "chunk"]])] } };
  };
  const variants: Array<() => HostileInput> = [
    () => fact("messageId"), () => fact("subject"), () => fact("predicate"), () => fact("correlationId"), () => fact("labels"),
    () => fact("objectSchema"), () => fact("fromZone"), () => fact("toZone"),
    () => raw("FetchFacts", [[1, mb()]]), () => raw("ConfirmReceipt", [[1, mb()], [2, 1n]]),
    () => raw("FetchObject", [[1, BUCKET], [2, mb()]]), () => raw("StatObject", [[1, mb()], [2, "k"]]), () => raw("StatObject", [[1, BUCKET], [2, mb()]]),
    () => raw("ReleaseQuarantined", [[1, 1n], [2, mb()]]), () => raw("DropQuarantined", [[1, 1n], [2, mb()]]),
    () => putHeader([[1, BUCKET], [2, mb()], [3, "text/plain"]]), () => putHeader([[1, mb()], [2, "k"], [3, "text/plain"]]),
    () => putHeader([[1, BUCKET], [2, `hostile/${ctx.ids.nextId()}`], [3, mb()]]), () => putHeader([[1, BUCKET], [2, `hostile/${ctx.ids.nextId()}`], [3, "text/plain"], [4, mb()]]),
    () => ({ role: "ingest", caller: "producer", req: { method: method("AppendFact"), framing: "connect-json", messages: [Buffer.from(`{"messages":[{"envelope":{"messageId":"${mb()}","fromZone":"${ZONE}","toZone":"enterprise","producedAtUnixMs":"1"},"fact":{"subject":"batch:a","predicate":"p","objectJson":"{}"}}]}`)] } }),
  ];
  return runInputs(ctx, "1 MB identifiers", size(ctx, 40, variants.length), (i) => variants[i % variants.length]!(), 2);
};

/**
 * Control characters (line breaks, NUL, DEL) wherever a name may end up in a header, a
 * subject or a log line: object keys, media types and file names (NATS headers of the
 * object's record), consumer names, and the envelope's free text.
 */
export const controlCharacters: Group = (ctx) => {
  // Real control characters; JSON.stringify writes them as escapes, so the JSON stays valid.
  const nasty = () => ctx.rng.pick(["\r\nX-Injected: 1", "\n", "\u0000", "\u007f", "\t", "\r"]);
  const json = (m: string, role: Role, caller: Caller, body: unknown): HostileInput =>
    ({ role, caller, req: { method: method(m), framing: "connect-json", messages: [Buffer.from(JSON.stringify(body))] } });
  const put = (field: "key" | "mediaType" | "fileName"): HostileInput => {
    const header: Record<string, string> = { bucket: BUCKET, key: `hostile/${ctx.ids.nextId()}`, mediaType: "text/plain" };
    header[field] = `${header[field] ?? "report.pdf"}${nasty()}`;
    return { role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: "connect-json", messages: [Buffer.from(JSON.stringify({ header })), Buffer.from(JSON.stringify({ chunk: "aGVsbG8=" }))] } };
  };
  const variants: Array<() => HostileInput> = [
    () => put("key"), () => put("mediaType"), () => put("fileName"),
    () => json("StatObject", "egress", "reader", { bucket: BUCKET, key: `${KNOWN_OBJECT_KEY}${nasty()}` }),
    () => json("FetchFacts", "egress", "reader", { consumerName: `${CONSUMER}${nasty()}` }),
    () => json("ConfirmReceipt", "ledger", "reader", { consumerName: `${nasty()}${CONSUMER}`, offset: "1" }),
    () => json("ReleaseQuarantined", "ingest", "operator", { id: "1", note: nasty() }),
    () => {
      const fact = toJson(FactMessageSchema, legitFact(ctx.ids.nextId())) as { envelope: Record<string, unknown> };
      const field = ctx.rng.pick(["correlationId", "causationId", "objectSchema", "messageId"]);
      fact.envelope[field] = `${String(fact.envelope[field] ?? "text")}${nasty()}`;
      return json("AppendFact", "ingest", "producer", { messages: [fact] });
    },
  ];
  return runInputs(ctx, "control characters in names and headers", size(ctx, 100, 24), (i) => variants[i % variants.length]!());
};

/** Consumer names the reader is not bound to (10,000 in the full run): FetchFacts and ConfirmReceipt. */
export const unknownConsumers: Group = (ctx) => {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_";
  const word = (n: number) => Array.from({ length: n }, () => alphabet[ctx.rng.int(0, alphabet.length - 1)]).join("");
  const odd = ["*", ">", "a.b", "a b", "a\tb", "../../etc/passwd", "%00", "verbraucher-ü", "consumer-🙂", "$JS.API.CONSUMER.INFO", "KV_bsfg-consumers", `${CONSUMER} `, CONSUMER.toUpperCase(), OTHER_CONSUMER, `${CONSUMER}.>`, "x".repeat(300), "\u0000"];
  const name = () => (ctx.rng.next() < 0.9 ? `${word(ctx.rng.int(3, 12))}-from-${word(ctx.rng.int(3, 12))}` : ctx.rng.pick(odd));
  return runInputs(ctx, "unknown consumer names", size(ctx, 10_000, 300), () => {
    const m = method(ctx.rng.next() < 0.5 ? "FetchFacts" : "ConfirmReceipt");
    const framing = ctx.rng.next() < 0.8 ? "connect-proto" : ctx.rng.pick(["grpc", "grpc-web", "connect-json"] as const);
    const request = m.name === "FetchFacts" ? { consumerName: name(), limit: 10 } : { consumerName: name(), offset: BigInt(ctx.rng.int(0, 1_000)) };
    return { role: servedBy(m), caller: "reader", req: { method: m, framing, messages: encode(m, [create(m.input, request as never)], framing) } };
  }, Math.max(ctx.concurrency, 32));
};

/** A certificate the server must refuse at the TLS layer, each attempt on a connection of its own. */
export const impostor = (who: "foreign" | "expired" | "none", group: string): Group => (ctx) =>
  runInputs(ctx, group, size(ctx, 20, 5), () => {
    const { m, role, messages } = fuzzTarget(ctx);
    return { role, caller: who, ownConnection: true, req: { method: m, framing: ctx.rng.pick(["connect-proto", "grpc"] as const), messages: encode(m, messages, "connect-proto") } };
  }, 4);

/** Well-formed calls by identities the policy does not allow for the verb (or at all). */
export const deniedVerbs: Group = (ctx) => {
  const all = METHODS.map((m) => m.name);
  const quarantine = ["ListQuarantined", "GetQuarantined", "ReleaseQuarantined", "DropQuarantined"];
  const matrix: Array<[Caller, string]> = [
    ...all.map((m): [Caller, string] => ["auditor", m]),
    ...all.map((m): [Caller, string] => ["stranger", m]),
    ...["AppendFact", "PutObject", ...quarantine].map((m): [Caller, string] => ["reader", m]),
    ...["FetchFacts", "ConfirmReceipt", "FetchObject", "StatObject", ...quarantine].map((m): [Caller, string] => ["producer", m]),
    ...["AppendFact", "FetchFacts", "ConfirmReceipt", "PutObject", "FetchObject", "StatObject"].map((m): [Caller, string] => ["operator", m]),
  ];
  const special: Array<() => HostileInput> = [
    () => appendOf([withZones(legitFact(ctx.ids.nextId()), "enterprise", "enterprise")]),
    () => appendOf([withZones(legitFact(ctx.ids.nextId()), ZONE, ZONE)]),
    () => appendOf([legitFact(ctx.ids.nextId()), withZones(legitFact(ctx.ids.nextId()), "idmz", "enterprise")]),
    () => ({ role: "ingest", caller: "producer", req: { method: method("PutObject"), framing: "grpc", messages: encode(method("PutObject"), [
      create(PutObjectRequestSchema, { part: { case: "header", value: { bucket: FORBIDDEN_BUCKET, key: "k", mediaType: "text/plain" } } }),
      create(PutObjectRequestSchema, { part: { case: "chunk", value: Buffer.from("x") } }),
    ], "grpc") } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("StatObject"), framing: "connect-proto", messages: [rawRequest([[1, FORBIDDEN_BUCKET], [2, "k"]])] } }),
    () => ({ role: "egress", caller: "reader", req: { method: method("FetchFacts"), framing: "connect-proto", messages: [rawRequest([[1, OTHER_CONSUMER]])] } }),
    () => ({ role: "ledger", caller: "otherReader", req: { method: method("ConfirmReceipt"), framing: "connect-proto", messages: [rawRequest([[1, CONSUMER], [2, 1n]])] } }),
  ];
  const count = size(ctx, 300, matrix.length + special.length);
  return runInputs(ctx, "identity not allowed for the verb", count, (i) => {
    if (i % (matrix.length + special.length) >= matrix.length) return special[(i % (matrix.length + special.length)) - matrix.length]!();
    const [caller, name] = matrix[i % (matrix.length + special.length)]!;
    const m = method(name);
    const framing = ctx.rng.pick(["connect-proto", "connect-json", "grpc", "grpc-web"] as const);
    return { role: servedBy(m), caller, req: { method: m, framing, messages: encode(m, sampleRequests(m, ctx.ids), framing) } };
  });
};

function withZones(message: ReturnType<typeof legitFact>, from: string, to: string): ReturnType<typeof legitFact> {
  message.envelope!.fromZone = from;
  message.envelope!.toZone = to;
  return message;
}

/**
 * ConfirmReceipt below the cursor (a no-op that must not move it back), beyond the log,
 * at the largest offsets, on another identity's consumer, and without a name. Sent one
 * at a time so the cursor each answer reports can be checked against the last.
 */
export const confirmAbuse = (highWater: () => Promise<bigint>): Group => async (ctx) => {
  const top = await highWater();
  const confirm = (caller: Caller, consumer: string, offset: bigint): HostileInput => ({ role: "ledger", caller, req: { method: method("ConfirmReceipt"), framing: ctx.rng.pick(["connect-proto", "grpc", "grpc-web"] as const), messages: [rawRequest([[1, consumer], [2, offset]])] } });
  const below = () => BigInt(ctx.rng.int(0, Number(ctx.highestCursor)));
  const variants: Array<() => HostileInput> = [
    () => confirm("reader", CONSUMER, below()),
    () => confirm("reader", CONSUMER, 0n),
    () => confirm("reader", CONSUMER, ctx.highestCursor),
    () => confirm("reader", CONSUMER, top + BigInt(ctx.rng.int(1, 1_000_000))),
    () => confirm("reader", CONSUMER, ctx.rng.pick([2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n, 2n ** 32n])),
    () => confirm("reader", OTHER_CONSUMER, BigInt(ctx.rng.int(0, Number(top)))),
    () => confirm("otherReader", CONSUMER, BigInt(ctx.rng.int(0, Number(top)))),
    () => confirm("reader", "", 1n),
  ];
  return runInputs(ctx, "ConfirmReceipt backwards, beyond the log, on another's consumer", size(ctx, 150, 24), (i) => variants[i % variants.length]!(), 1);
};
