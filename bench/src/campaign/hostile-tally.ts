import type { DescMethod } from "@bufbuild/protobuf";
import { fromBinary, fromJsonString } from "@bufbuild/protobuf";
import { ConfirmReceiptResponseSchema } from "@bsfg/proto";
import type { Random } from "./random.js";
import { decodeAppendRequest, decodeAppendResponse, type IdSource } from "./hostile-inputs.js";
import type { LogExpectations } from "./hostile-verify.js";
import type { Framing, Outcome, WirePool, WireRequest } from "./hostile-wire.js";
import type { Credential, HostileZone, Role } from "./hostile-zone.js";

/*
 * What every hostile group shares: how an input is sent, counted, and remembered for
 * the log check afterwards.
 */

export interface HostileGroupResult {
  readonly group: string;
  readonly inputs: number;
  /** By Connect code name ("invalid_argument", "ok", …) or transport refusal ("tls_refused", "connection_reset", …). */
  readonly responses: Record<string, number>;
  /** Code.Internal / Code.Unknown, HTTP 5xx without a Connect code, or no answer: must be 0. */
  readonly internalErrors: number;
  /** By "code/reason" (reason "-" when the error carried no ErrorInfo): what the zone said, in more detail. */
  readonly reasons?: Record<string, number>;
}

export interface GroupContext {
  readonly rng: Random;
  readonly quick: boolean;
  readonly zone: HostileZone;
  readonly wire: WirePool;
  readonly expectations: LogExpectations;
  readonly ids: IdSource;
  readonly log: (line: string) => void;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** A ConfirmReceipt answered with a cursor below one answered before: durable state moved back. */
  cursorRegressions: number;
  /** The highest cursor of CONSUMER any answer reported. */
  highestCursor: bigint;
}

/** One hostile input: who sends what to which deployable. */
export interface HostileInput {
  readonly role: Role;
  readonly caller: Credential;
  readonly req: WireRequest;
  /** On a connection of its own, closed afterwards (certificates the server must refuse). */
  readonly ownConnection?: boolean;
}

/** Transport outcomes after which an append may or may not have been stored. */
const UNKNOWN_OUTCOMES = new Set(["connection_reset", "stream_reset", "timeout", "unavailable", "deadline_exceeded", "canceled", "resource_exhausted", "no_status", "no_end_of_stream"]);

export class GroupTally {
  private inputs = 0;
  private internalErrors = 0;
  private readonly responses: Record<string, number> = {};
  private readonly reasons: Record<string, number> = {};
  private shownInternal = 0;

  constructor(readonly group: string, private readonly log: (line: string) => void) {}

  record(outcome: Outcome, what: string): void {
    this.inputs++;
    this.responses[outcome.code] = (this.responses[outcome.code] ?? 0) + 1;
    const key = outcome.code === "ok" ? "ok" : `${outcome.code}/${outcome.reason ?? "-"}`;
    this.reasons[key] = (this.reasons[key] ?? 0) + 1;
    if (outcome.internal) {
      this.internalErrors++;
      // A few examples per group are enough to find the defect; the counts say how often.
      if (this.shownInternal++ < 3) this.log(`hostile: INTERNAL in "${this.group}": ${what} → ${outcome.code}: ${outcome.detail}`);
    }
  }

  result(): HostileGroupResult {
    return { group: this.group, inputs: this.inputs, responses: this.responses, internalErrors: this.internalErrors, reasons: this.reasons };
  }
}

const describe = (input: HostileInput) => `${input.req.method.name} on ${input.role} as ${input.caller} (${input.req.framing})`;

/** Sends one input, counts its outcome, and remembers what an AppendFact was told. */
export async function send(ctx: GroupContext, tally: GroupTally, input: HostileInput): Promise<Outcome> {
  const url = ctx.zone.urls[input.role];
  const credentials = ctx.zone.credentials(input.caller);
  const cursorBefore = ctx.highestCursor;
  const outcome = input.ownConnection ? await ctx.wire.callOnce(url, credentials, input.req) : await ctx.wire.call(url, input.caller, credentials, input.req);
  tally.record(outcome, describe(input));
  if (input.req.method.name === "AppendFact") rememberAppend(ctx, input, outcome);
  if (input.req.method.name === "ConfirmReceipt" && outcome.code === "ok") watchCursor(ctx, input.req.framing, outcome.messages[0], cursorBefore);
  return outcome;
}

function rememberAppend(ctx: GroupContext, input: HostileInput, outcome: Outcome): void {
  if (outcome.code === "tls_refused" || outcome.code === "unimplemented") return;
  // A raw body is read as the server reads it: a frame with a reserved flag bit set (not the
  // compression bit) still carries the message, and the zone may store it as sent.
  const messages = input.req.rawBody ? messagesOf(input.req.framing, input.req.rawBody) : input.req.messages ?? [];
  const facts = messages ? decodeAppendRequest(input.req.framing, messages) : undefined;
  if (!facts) {
    // Bytes that are no AppendFactRequest: if the zone stored anything, the log check finds it unaccounted for.
    if (outcome.code === "ok") ctx.log(`hostile: ${describe(input)} answered ok to a body the campaign cannot decode`);
    return;
  }
  if (outcome.code === "ok") {
    const results = decodeAppendResponse(input.req.framing, outcome.messages);
    if (results) ctx.expectations.acknowledged(facts, results);
    else ctx.expectations.unknownOutcome(facts);
  } else if (UNKNOWN_OUTCOMES.has(outcome.code)) {
    ctx.expectations.unknownOutcome(facts);
  } else {
    ctx.expectations.refusedMessages(facts);
  }
}

/** A consumer's cursor only moves forward: no answer may be below one received before the call was sent. */
function watchCursor(ctx: GroupContext, framing: Framing, body: Uint8Array | undefined, before: bigint): void {
  if (!body) return;
  let cursor: bigint;
  try {
    cursor = framing === "connect-json" ? fromJsonString(ConfirmReceiptResponseSchema, Buffer.from(body).toString("utf8")).cursorAdvancedTo : fromBinary(ConfirmReceiptResponseSchema, body).cursorAdvancedTo;
  } catch {
    return;
  }
  // Concurrent confirms may answer out of order: judged only against answers that came before this call was sent.
  if (cursor < before) {
    ctx.cursorRegressions++;
    ctx.log(`hostile: ConfirmReceipt answered cursor ${cursor}, below ${before} answered before it was sent`);
  }
  if (cursor > ctx.highestCursor) ctx.highestCursor = cursor;
}

/** A target for a fuzzed body: mostly the deployable that serves the method, sometimes one that does not. */
export function pickTarget(rng: Random, methods: readonly DescMethod[], servedBy: (m: DescMethod) => Role, roles: readonly Role[]): { method: DescMethod; role: Role } {
  const method = rng.pick(methods);
  return { method, role: rng.next() < 0.85 ? servedBy(method) : rng.pick(roles) };
}

/** The messages of a raw body: the body itself (Connect unary), or its data frames (gRPC, gRPC-web); undefined if it is not well framed or compressed. */
function messagesOf(framing: WireRequest["framing"], body: Uint8Array): Uint8Array[] | undefined {
  if (framing === "connect-proto" || framing === "connect-json") return [body];
  const messages: Uint8Array[] = [];
  for (let at = 0; at < body.byteLength;) {
    if (body.byteLength - at < 5) return undefined;
    const flags = body[at]!;
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    if ((flags & 0x01) !== 0 || at + 5 + length > body.byteLength) return undefined;
    // gRPC-web's trailer frame is not a message.
    if ((flags & 0x80) === 0 || framing === "grpc") messages.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return messages;
}
