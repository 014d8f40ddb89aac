import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { fromBinary, type DescMethod } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { ErrorInfoSchema } from "@bsfg/proto";
import type { Credentials } from "./hostile-zone.js";

/*
 * A raw HTTP/2 client for the hostile campaign: it sends exactly the bytes it is
 * given (so a corrupt body reaches the server as corrupt, which no generated client
 * would do), framed for one of the protocols the boundary serves, and turns what
 * comes back into one outcome: a Connect code name (gRPC codes by the same names),
 * a transport-level refusal, or an HTTP answer that is no protocol error at all.
 */

/** The wire protocol (and codec) of a request. */
export type Framing = "connect-proto" | "connect-json" | "grpc" | "grpc-web";
export const BINARY_FRAMINGS: readonly Framing[] = ["connect-proto", "grpc", "grpc-web"];

/** Connect code names by gRPC status number. */
const CODE_NAMES = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied",
  "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
] as const;

export interface Outcome {
  /**
   * "ok", a Connect code name ("invalid_argument", …), or what the transport did:
   * "tls_refused" (the connection closed before HTTP/2 started: the handshake's verdict),
   * "connection_reset", "stream_reset", "timeout" (no answer in time), or "http_<status>"
   * for an answer that carries no protocol error (e.g. 415 for a content type nobody serves).
   */
  readonly code: string;
  /** ErrorInfo.reason of an error, if it carried one. */
  readonly reason: string | undefined;
  /** Code internal/unknown, a 5xx without a protocol code, an answer cut short, or none in time. */
  readonly internal: boolean;
  /** The response messages of a successful call, as encoded by the framing's codec. */
  readonly messages: Uint8Array[];
  /** For a log line: status and error message. */
  readonly detail: string;
}

export interface WireRequest {
  readonly method: DescMethod;
  readonly framing: Framing;
  /** Request messages, each encoded by the framing's codec (protobuf or JSON bytes). */
  readonly messages?: readonly Uint8Array[];
  /** The body exactly (corrupt framing); the content type still follows `framing`. */
  readonly rawBody?: Uint8Array;
  readonly headers?: OutgoingHttpHeaders;
}

const isUnary = (method: DescMethod) => method.methodKind === "unary";
const pathOf = (method: DescMethod) => `/${method.parent.typeName}/${method.name}`;

/** Content type and body of a request as `framing` puts it on the wire. */
export function frame(req: WireRequest): { contentType: string; body: Uint8Array } {
  const messages = req.messages ?? [];
  const unary = isUnary(req.method);
  const contentType = {
    "connect-proto": unary ? "application/proto" : "application/connect+proto",
    "connect-json": unary ? "application/json" : "application/connect+json",
    grpc: "application/grpc",
    "grpc-web": "application/grpc-web+proto",
  }[req.framing];
  if (req.rawBody) return { contentType, body: req.rawBody };
  // A Connect unary body is the message itself; every other form is enveloped.
  const body = req.framing.startsWith("connect") && unary ? Buffer.concat(messages) : Buffer.concat(messages.map((m) => envelope(0, m)));
  return { contentType, body };
}

/** The 5-byte prefix (flags, big-endian length) of gRPC, gRPC-Web and Connect streaming. */
export function envelope(flags: number, payload: Uint8Array, declaredLength = payload.byteLength): Uint8Array {
  const out = Buffer.alloc(5 + payload.byteLength);
  out.writeUInt8(flags, 0);
  out.writeUInt32BE(declaredLength >>> 0, 1);
  out.set(payload, 5);
  return out;
}

interface Envelope {
  readonly flags: number;
  readonly data: Uint8Array;
}

/** Splits enveloped bytes; undefined when they do not end on an envelope boundary. */
function envelopes(body: Uint8Array): Envelope[] | undefined {
  const out: Envelope[] = [];
  const view = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let at = 0;
  while (at < view.byteLength) {
    if (view.byteLength - at < 5) return undefined;
    const length = view.readUInt32BE(at + 1);
    if (view.byteLength - at - 5 < length) return undefined;
    out.push({ flags: view.readUInt8(at), data: view.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Uint8Array;
  readonly trailers: IncomingHttpHeaders;
  /** The stream ended normally (not reset after the answer began). */
  readonly complete: boolean;
}

const transport = (code: string, detail: string, internal = false): Outcome => ({ code, reason: undefined, internal, messages: [], detail });

/** ErrorInfo.reason from Connect's JSON details ([{type, value: base64}]). */
function reasonOfJsonDetails(details: unknown): string | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const d of details as Array<{ type?: unknown; value?: unknown }>) {
    if (d.type === ErrorInfoSchema.typeName && typeof d.value === "string") {
      try {
        return fromBinary(ErrorInfoSchema, Buffer.from(d.value, "base64")).reason;
      } catch {
        return "(undecodable ErrorInfo)";
      }
    }
  }
  return undefined;
}

/** ErrorInfo.reason from gRPC's grpc-status-details-bin (a google.rpc.Status). */
function reasonOfStatusDetails(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    const status = new BinaryReader(Buffer.from(value, "base64"));
    while (status.pos < status.len) {
      const [field, wireType] = status.tag();
      if (field !== 3) {
        status.skip(wireType);
        continue;
      }
      const any = new BinaryReader(status.bytes());
      let typeUrl = "";
      let payload: Uint8Array | undefined;
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1) typeUrl = any.string();
        else if (f === 2) payload = any.bytes();
        else any.skip(w);
      }
      if (typeUrl.endsWith(`/${ErrorInfoSchema.typeName}`) && payload) return fromBinary(ErrorInfoSchema, payload).reason;
    }
  } catch {
    return "(undecodable status details)";
  }
  return undefined;
}

function connectError(res: RawResponse): Outcome {
  try {
    const error = JSON.parse(Buffer.from(res.body).toString("utf8")) as { code?: unknown; message?: unknown; details?: unknown };
    // Only Connect's codes: Fastify answers what never reaches Connect (a content type it cannot parse) with JSON of its own.
    if (typeof error.code === "string" && (CODE_NAMES as readonly string[]).includes(error.code)) {
      const detail = `HTTP ${res.status}: ${String(error.message ?? "")}`.slice(0, 300);
      return { code: error.code, reason: reasonOfJsonDetails(error.details), internal: error.code === "internal" || error.code === "unknown", messages: [], detail };
    }
  } catch {
    // Not a Connect error body: judged by its HTTP status below.
  }
  return transport(`http_${res.status}`, `HTTP ${res.status} without a Connect error`, res.status >= 500);
}

function grpcStatus(status: string | undefined, message: string | undefined, details: string | undefined, messages: Uint8Array[]): Outcome {
  const number = Number(status);
  const code = Number.isInteger(number) ? CODE_NAMES[number] ?? `grpc_${status}` : undefined;
  if (code === undefined) return transport("no_status", "a gRPC answer without grpc-status", true);
  if (code === "ok") return { code, reason: undefined, internal: false, messages, detail: "" };
  return { code, reason: reasonOfStatusDetails(details), internal: code === "internal" || code === "unknown", messages: [], detail: decodeURIComponent(message ?? "").slice(0, 300) };
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** What a response means, by the protocol it was asked in. */
export function classify(req: WireRequest, res: RawResponse): Outcome {
  const cut = (what: string) => (res.complete ? transport(what, `${what} (HTTP ${res.status})`, true) : transport("stream_reset", "the answer was cut short"));
  if (req.framing.startsWith("connect")) {
    if (res.status !== 200) return connectError(res);
    if (isUnary(req.method)) return { code: "ok", reason: undefined, internal: false, messages: [res.body], detail: "" };
    const parts = envelopes(res.body);
    const end = parts?.find((p) => (p.flags & 0x02) !== 0);
    if (!parts || !end) return cut("no_end_of_stream");
    const trailer = JSON.parse(Buffer.from(end.data).toString("utf8") || "{}") as { error?: { code?: string; message?: string; details?: unknown } };
    if (trailer.error?.code) {
      const code = trailer.error.code;
      return { code, reason: reasonOfJsonDetails(trailer.error.details), internal: code === "internal" || code === "unknown", messages: [], detail: String(trailer.error.message ?? "").slice(0, 300) };
    }
    return { code: "ok", reason: undefined, internal: false, messages: parts.filter((p) => p !== end).map((p) => p.data), detail: "" };
  }
  if (res.status !== 200) return transport(`http_${res.status}`, `HTTP ${res.status}`, res.status >= 500);
  const parts = envelopes(res.body);
  if (req.framing === "grpc") {
    const status = header(res.trailers, "grpc-status") ?? header(res.headers, "grpc-status");
    if (status === undefined) return cut("no_status");
    const from = header(res.trailers, "grpc-status") !== undefined ? res.trailers : res.headers;
    return grpcStatus(status, header(from, "grpc-message"), header(from, "grpc-status-details-bin"), (parts ?? []).map((p) => p.data));
  }
  // gRPC-Web: the status is in the headers (trailers-only) or in a trailer frame (flag 0x80).
  if (header(res.headers, "grpc-status") !== undefined) {
    return grpcStatus(header(res.headers, "grpc-status"), header(res.headers, "grpc-message"), header(res.headers, "grpc-status-details-bin"), []);
  }
  const trailerFrame = parts?.find((p) => (p.flags & 0x80) !== 0);
  if (!parts || !trailerFrame) return cut("no_status");
  const trailer: Record<string, string> = {};
  for (const line of Buffer.from(trailerFrame.data).toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailer[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return grpcStatus(trailer["grpc-status"], trailer["grpc-message"], trailer["grpc-status-details-bin"], parts.filter((p) => p !== trailerFrame).map((p) => p.data));
}

/** One HTTP/2 connection with a client certificate; knows whether HTTP/2 ever started on it. */
export interface Connection {
  readonly session: ClientHttp2Session;
  /** The server's SETTINGS arrived: TLS accepted us. */
  readonly established: () => boolean;
  readonly closed: () => boolean;
  close(): void;
}

export function openConnection(url: string, credentials: Credentials): Connection {
  let established = false;
  let closed = false;
  const session = connect(url, { ...credentials, servername: "localhost", ALPNProtocols: ["h2"] });
  session.on("remoteSettings", () => (established = true));
  // Errors surface through the streams; an unheard session error would end the process.
  session.on("error", () => undefined);
  session.on("close", () => (closed = true));
  session.on("goaway", () => (closed = true));
  return {
    session,
    established: () => established,
    closed: () => closed || session.closed || session.destroyed,
    close: () => {
      closed = true;
      session.destroy();
    },
  };
}

/** Sends one request on `connection` and waits for its whole answer (or `timeoutMs`). */
export function exchange(connection: Connection, req: WireRequest, timeoutMs: number): Promise<Outcome> {
  const { contentType, body } = frame(req);
  const headers: OutgoingHttpHeaders = {
    ":method": "POST",
    ":path": pathOf(req.method),
    "content-type": contentType,
    ...(req.framing.startsWith("connect") ? { "connect-protocol-version": "1" } : {}),
    ...(req.framing === "grpc" ? { te: "trailers" } : {}),
    ...(req.framing === "grpc-web" ? { "x-grpc-web": "1" } : {}),
    ...req.headers,
  };
  return new Promise((resolve) => {
    let status: number | undefined;
    let responseHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    let ended = false;
    let timedOut = false;
    let failure: Error | undefined;
    const chunks: Buffer[] = [];
    let stream;
    try {
      stream = connection.session.request(headers);
    } catch (err) {
      // The session is already gone (refused or closed by the server).
      resolve(connection.established() ? transport("connection_reset", String(err)) : transport("tls_refused", String(err)));
      return;
    }
    const timer = setTimeout(() => {
      timedOut = true;
      stream.close(constants.NGHTTP2_CANCEL);
    }, timeoutMs);
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h;
    });
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => (ended = true));
    stream.on("error", (err) => (failure = err));
    stream.on("close", () => {
      clearTimeout(timer);
      if (timedOut && !ended) return resolve(transport("timeout", `no answer within ${timeoutMs} ms`, true));
      if (status === undefined) {
        if (!connection.established()) return resolve(transport("tls_refused", failure?.message ?? "closed before HTTP/2 started"));
        return resolve(transport(stream.rstCode && stream.rstCode !== constants.NGHTTP2_NO_ERROR ? "stream_reset" : "connection_reset", failure?.message ?? `rst ${stream.rstCode}`));
      }
      resolve(classify(req, { status, headers: responseHeaders, body: Buffer.concat(chunks), trailers, complete: ended }));
    });
    // A server that answers before reading the whole body resets the rest: that error is
    // the stream's, reported above.
    stream.end(body);
  });
}

/**
 * Pooled connections per (url, credential name): hostile requests share a few HTTP/2
 * connections like any client would, and a connection the server closed is replaced.
 */
export class WirePool {
  private readonly connections = new Map<string, Connection>();

  constructor(private readonly timeoutMs: number) {}

  call(url: string, who: string, credentials: Credentials, req: WireRequest): Promise<Outcome> {
    const key = `${url} ${who}`;
    let connection = this.connections.get(key);
    if (!connection || connection.closed()) {
      connection?.close();
      connection = openConnection(url, credentials);
      this.connections.set(key, connection);
    }
    return exchange(connection, req, this.timeoutMs);
  }

  /** One request on a connection of its own, closed afterwards (certificates that must be refused). */
  async callOnce(url: string, credentials: Credentials, req: WireRequest): Promise<Outcome> {
    const connection = openConnection(url, credentials);
    try {
      return await exchange(connection, req, this.timeoutMs);
    } finally {
      connection.close();
    }
  }

  close(): void {
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }
}

/** Runs `task(i)` for i in [0, count) with at most `limit` at a time. */
export async function forEachLimited(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}
