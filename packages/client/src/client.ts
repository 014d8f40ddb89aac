import { once } from "node:events";
import type { ClientHttp2Stream, Http2Session } from "node:http2";
import { createReadStream } from "node:fs";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import type { Writable } from "node:stream";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, Http2SessionManager, type ConnectTransportOptions } from "@connectrpc/connect-node";
import {
  AppendFactRequestSchema,
  AppendStatus,
  BoundaryService,
  encodeFactMessage,
  FactMessageSchema,
  FetchFactsPageSchema,
  type FetchFactsPage,
  FetchFactsRequestSchema,
  PeerService,
  QuarantineService,
  type QuarantinedFact,
  type ReleaseQuarantinedResponse,
  type DropQuarantinedResponse,
  Reason,
  rejection,
  type AppendResult,
  type FetchFactsResponse,
  ObjectHeaderSchema,
  type ObjectRef,
} from "@bsfg/proto";
import { defaultRetry, isRetryable, withRetry, type RetryOptions } from "./retry.js";

export type FactMessageInit = MessageInitShape<typeof FactMessageSchema>;
export type ObjectHeaderInit = MessageInitShape<typeof ObjectHeaderSchema>;
export type ObjectContent = { readonly file: string } | Uint8Array | AsyncIterable<Uint8Array>;

/**
 * One endpoint ("https://host:port"), or several replicas of the same service. With a
 * list, calls go to one endpoint at a time; a call that fails in a way a retry can fix
 * (see `isRetryable`: unavailable, draining, connection refused or reset, …) is retried
 * on the next endpoint of the list, and later calls stay there until it fails in turn.
 */
export type Endpoints = string | readonly string[];

export interface BsfgClientOptions {
  /** The zone's all-in-one endpoint(s) … */
  readonly url?: Endpoints;
  /** … or the endpoint(s) per verb (missing ones fall back to `url`): ingest (AppendFact, PutObject), egress (FetchFacts, FetchObject, StatObject), ledger (ConfirmReceipt). */
  readonly urls?: { readonly ingest?: Endpoints; readonly egress?: Endpoints; readonly ledger?: Endpoints };
  /** PEM contents: the CA that signed the server, and this client's certificate and key. */
  readonly tls: { readonly ca: string | Buffer; readonly cert: string | Buffer; readonly key: string | Buffer };
  /**
   * The identity (CN or a DNS SAN) the server's certificate must carry, on top
   * of the host name check: a peer zone is authenticated as that zone, not
   * just as anyone the CA signed.
   */
  readonly serverIdentity?: string;
  readonly protocol?: "connect" | "grpc";
  /**
   * Attempts per call and the backoff between them (default 6 attempts, 100 ms doubling
   * up to 5 s, full jitter). With several endpoints every retry goes to the next one, so
   * `attempts` ≥ the number of endpoints lets one call try each replica.
   */
  readonly retry?: Partial<RetryOptions>;
  /** Per-call timeout (long polls add their max wait). */
  readonly timeoutMs?: number;
  /**
   * "gzip" compresses requests and asks for compressed responses: for slow
   * links. Off by default: on a LAN, gzip of fact pages costs more CPU on both
   * ends than the bytes it saves (docs/operations.md, "Compression").
   */
  readonly compression?: "none" | "gzip";
  /** Connect interceptors for every call, e.g. clientTracing() from @bsfg/telemetry to carry trace context. */
  readonly interceptors?: Interceptor[];
  /**
   * Calls to an endpoint for which this returns a session manager go over it instead of a
   * connection the client opens: a peer that dialed this zone (reverse connect, @bsfg/reverse).
   */
  readonly sessionManagers?: (url: string) => SessionManager | undefined;
}

/** What a Connect transport sends its calls through (connect-node's `sessionManager`). */
export type SessionManager = NonNullable<Extract<ConnectTransportOptions, { httpVersion: "2" }>["sessionManager"]>;

export interface FetchOptions {
  readonly limit?: number;
  readonly maxWaitMs?: number;
  readonly afterOffset?: bigint | number;
  readonly signal?: AbortSignal;
}

/** FetchFacts with the response read as a FetchFactsPage: the same bytes on the wire, messages not decoded. */
const fetchFactPageMethod = {
  ...BoundaryService.method.fetchFacts,
  output: FetchFactsPageSchema,
} as DescMethodUnary<typeof FetchFactsRequestSchema, typeof FetchFactsPageSchema>;

function fetchRequest(consumer: string, { limit = 0, maxWaitMs = 0, afterOffset }: FetchOptions) {
  return create(FetchFactsRequestSchema, { consumerName: consumer, limit, maxWaitMs, ...(afterOffset === undefined ? {} : { afterOffset: BigInt(afterOffset) }) });
}

/** The zone's quarantine, for operators (ingest's QuarantineService; see docs/operations.md). */
export interface QuarantineClient {
  list(options?: { readonly includeSettled?: boolean }): Promise<QuarantinedFact[]>;
  /** One entry with its fact's bytes, the fact decoded and its history. */
  get(id: bigint | number): Promise<QuarantinedFact>;
  release(id: bigint | number, note?: string): Promise<ReleaseQuarantinedResponse>;
  drop(id: bigint | number, reason: string): Promise<DropQuarantinedResponse>;
}

export interface BsfgClient {
  readonly quarantine: QuarantineClient;
  /** Appends one message; throws already_exists (conflicting_duplicate) if its id was stored with another payload. */
  appendFact(message: FactMessageInit): Promise<AppendResult>;
  /** Appends a batch; one result per message, conflicts included (not thrown). */
  appendFacts(messages: readonly FactMessageInit[]): Promise<AppendResult[]>;
  /** The page after the consumer's cursor, or after `afterOffset` when that is higher (reading ahead of confirms). */
  fetchFacts(consumer: string, options?: FetchOptions): Promise<FetchFactsResponse>;
  /**
   * fetchFacts as a relaying zone reads it: each fact's message left as the bytes the
   * peer stored, with their SHA-256 (StoredFactBytes), so they can be appended as fetched.
   */
  fetchFactPage(consumer: string, options?: FetchOptions): Promise<FetchFactsPage>;
  confirmReceipt(consumer: string, offset: bigint | number): Promise<bigint>;
  /** Uploads an artifact from a file (`{ file }`), a buffer or a stream (a stream is not retried). */
  putObject(header: ObjectHeaderInit, content: ObjectContent): Promise<ObjectRef>;
  /** Streams an artifact into `destination`; a broken stream resumes from the bytes already written. */
  fetchObject(bucket: string, key: string, destination: Writable, options?: { signal?: AbortSignal }): Promise<ObjectRef>;
  statObject(bucket: string, key: string): Promise<ObjectRef>;
  /**
   * Uses a new certificate set (a rotated certificate) from the next call on: new
   * connections present it; the ones open now finish their calls and are then closed.
   */
  reloadTls(tls: BsfgClientOptions["tls"]): void;
  /** Closes the client's connections (and any call still open on them). */
  close(): void;
}

export function createBsfgClient(options: BsfgClientOptions): BsfgClient {
  const retry: RetryOptions = { ...defaultRetry, ...options.retry };
  const timeoutMs = options.timeoutMs ?? 30_000;
  let tls = options.tls;
  let transports = new Map<string, Transport>();
  let sessions: GuardedSessionManager[] = [];
  /** Managers left by a certificate rotation, closing once their calls are done (or at close()). */
  const retired = new Set<GuardedSessionManager>();
  // One transport per endpoint, with one HTTP/2 session reused by every call.
  const transportFor = (url: string) => {
    let transport = transports.get(url);
    if (!transport) {
      let sessionManager = options.sessionManagers?.(url);
      if (!sessionManager) {
        const own = new GuardedSessionManager(url, {}, {
          ca: tls.ca,
          cert: tls.cert,
          key: tls.key,
          ...(options.serverIdentity ? { checkServerIdentity: serverIdentityCheck(options.serverIdentity) } : {}),
        });
        sessions.push(own);
        sessionManager = own;
      }
      const gzip = options.compression === "gzip";
      const shared = { baseUrl: url, sessionManager, useBinaryFormat: true, acceptCompression: gzip ? [compressionGzip] : [], ...(gzip ? { sendCompression: compressionGzip } : {}), interceptors: options.interceptors ?? [] };
      transport = options.protocol === "grpc" ? createGrpcTransport(shared) : createConnectTransport({ ...shared, httpVersion: "2" });
      transports.set(url, transport);
    }
    return transport;
  };
  const pools = {
    ingest: endpointPool(options.urls?.ingest ?? options.url),
    egress: endpointPool(options.urls?.egress ?? options.url),
    ledger: endpointPool(options.urls?.ledger ?? options.url),
  };
  /**
   * Runs `call` with retries; each attempt uses the verb's current endpoint, and an attempt
   * that failed retryably moves the verb on to the next endpoint before the retry.
   */
  const attempt = <T>(verb: Verb, call: (url: string) => Promise<T>, signal?: AbortSignal, attempts = retry.attempts) =>
    withRetry({ ...retry, attempts }, async () => {
      const url = pools[verb].current();
      try {
        return await call(url);
      } catch (err) {
        if (isRetryable(err)) pools[verb].failed(url);
        throw err;
      }
    }, signal);
  const boundaryClients = new Map<string, Client<typeof BoundaryService>>();
  const peerClients = new Map<string, Client<typeof PeerService>>();
  const boundary = (url: string) => cached(boundaryClients, url, () => createClient(BoundaryService, transportFor(url)));
  const peer = (url: string) => cached(peerClients, url, () => createClient(PeerService, transportFor(url)));
  const quarantineClients = new Map<string, Client<typeof QuarantineService>>();
  const quarantine = (url: string) => cached(quarantineClients, url, () => createClient(QuarantineService, transportFor(url)));

  const appendFacts = async (messages: readonly FactMessageInit[]) => {
    // Encoded once for every attempt, by the fast encoder, as field 1 (`messages`) held in
    // `$unknown`: toBinary writes them as they are. Client interceptors see an empty `messages`.
    const request = create(AppendFactRequestSchema);
    request.$unknown = messages.map((m) => ({ no: 1, wireType: WireType.LengthDelimited, data: encodeFactMessage(create(FactMessageSchema, m), { delimited: true }) }));
    return attempt("ingest", async (url) => (await boundary(url).appendFact(request, { timeoutMs })).results);
  };

  return {
    // Release and drop are safe to retry: a repeated one answers already_released / already_dropped.
    quarantine: {
      list: async ({ includeSettled = false } = {}) => (await attempt("ingest", (url) => quarantine(url).listQuarantined({ includeSettled }, { timeoutMs }))).facts,
      get: async (id) => (await attempt("ingest", (url) => quarantine(url).getQuarantined({ id: BigInt(id) }, { timeoutMs }))).fact!,
      release: (id, note = "") => attempt("ingest", (url) => quarantine(url).releaseQuarantined({ id: BigInt(id), note }, { timeoutMs })),
      drop: (id, reason) => attempt("ingest", (url) => quarantine(url).dropQuarantined({ id: BigInt(id), reason }, { timeoutMs })),
    },
    appendFacts,
    async appendFact(message) {
      const [result] = await appendFacts([message]);
      if (result!.status === AppendStatus.CONFLICTING_DUPLICATE) {
        throw rejection(Code.AlreadyExists, Reason.ConflictingDuplicate, `message ${result!.messageId} was stored before with a different payload (offset ${result!.offset})`, {
          message_id: result!.messageId, offset: String(result!.offset),
        });
      }
      return result!;
    },
    fetchFacts(consumer, options = {}) {
      const { signal, maxWaitMs = 0 } = options;
      const request = fetchRequest(consumer, options);
      return attempt("egress", (url) => boundary(url).fetchFacts(request, { timeoutMs: timeoutMs + maxWaitMs, ...(signal ? { signal } : {}) }), signal);
    },
    fetchFactPage(consumer, options = {}) {
      const { signal, maxWaitMs = 0 } = options;
      const request = fetchRequest(consumer, options);
      return attempt("egress", async (url) => (await transportFor(url).unary(fetchFactPageMethod, signal, timeoutMs + maxWaitMs, undefined, request)).message, signal);
    },
    async confirmReceipt(consumer, offset) {
      const response = await attempt("ledger", (url) => boundary(url).confirmReceipt({ consumerName: consumer, offset: BigInt(offset) }, { timeoutMs }));
      return response.cursorAdvancedTo;
    },
    async putObject(header, content) {
      const replayable = !(Symbol.asyncIterator in content) || content instanceof Uint8Array;
      const send = async (url: string) => {
        const response = await boundary(url).putObject(requests(header, content), { timeoutMs: Math.max(timeoutMs, 10 * 60_000) });
        return response.object!;
      };
      // A stream can be sent once only: no retry, but a failure still moves on to the next endpoint.
      return attempt("ingest", send, undefined, replayable ? undefined : 1);
    },
    async fetchObject(bucket, key, destination, { signal } = {}) {
      let written = 0n;
      let object: ObjectRef | undefined;
      await attempt("egress", async (url) => {
        for await (const part of peer(url).fetchObject({ bucket, key, offset: written }, { timeoutMs: Math.max(timeoutMs, 10 * 60_000), ...(signal ? { signal } : {}) })) {
          if (part.part.case === "object") object = part.part.value;
          else if (part.part.case === "chunk") {
            const chunk = part.part.value;
            if (!destination.write(chunk)) await once(destination, "drain", signal ? { signal } : {});
            written += BigInt(chunk.byteLength);
          }
        }
      }, signal);
      if (!object) throw new ConnectError("the peer sent no object description", Code.Internal);
      return object;
    },
    async statObject(bucket, key) {
      return (await attempt("egress", (url) => peer(url).statObject({ bucket, key }, { timeoutMs }))).object!;
    },
    reloadTls(next) {
      tls = next;
      const retiring = sessions;
      sessions = [];
      transports = new Map();
      boundaryClients.clear();
      peerClients.clear();
      quarantineClients.clear();
      for (const session of retiring) {
        retired.add(session);
        session.retire();
      }
    },
    close() {
      for (const session of [...sessions.splice(0), ...retired]) session.abort();
      retired.clear();
      transports.clear();
      boundaryClients.clear();
      peerClients.clear();
      quarantineClients.clear();
    },
  };
}

type Verb = "ingest" | "egress" | "ledger";

/**
 * The replicas of one service, in the order given. Calls use the current one; when a call
 * fails retryably on it, the next one becomes current (unless another call moved on
 * already), so a dead or draining replica costs one failed attempt, not one per call.
 */
function endpointPool(endpoints: Endpoints | undefined) {
  const list = endpoints === undefined ? [] : typeof endpoints === "string" ? [endpoints] : [...endpoints];
  let index = 0;
  return {
    current(): string {
      const url = list[index];
      if (url === undefined) throw new Error("no endpoint configured for this operation (set url or urls)");
      return url;
    },
    failed(url: string): void {
      if (list.length > 1 && list[index] === url) index = (index + 1) % list.length;
    },
  };
}

/**
 * connect-node 2.1.2 destroys a session that receives GOAWAY while it has no open
 * streams; Node raises that error on the session only once its socket has closed. If
 * the manager has left the session by then — the client was closed, or the next call
 * already reconnected — its listeners are gone and the error is uncaught: the process
 * dies (connectrpc/connect-es#1768, fix proposed in #1769). Here every session a call
 * used keeps a listener of its own, so such a late error is dropped; the manager still
 * sees every error while it uses the session. Seen when a peer zone drains (GOAWAY) as
 * this zone stops or calls again.
 */
class GuardedSessionManager extends Http2SessionManager {
  readonly #guarded = new WeakSet<Http2Session>();
  /** Streams open on this manager's sessions, and whether it closes when they are done. */
  #open = 0;
  #retiring = false;

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<ClientHttp2Stream> {
    // Open from the moment it is asked for: a retiring manager must not abort a call that is still connecting.
    this.#open++;
    let stream: ClientHttp2Stream;
    try {
      stream = await super.request(...args);
    } catch (err) {
      this.#closed();
      throw err;
    }
    const session = stream.session;
    if (session && !this.#guarded.has(session)) {
      this.#guarded.add(session);
      session.on("error", () => {});
    }
    stream.once("close", () => this.#closed());
    return stream;
  }

  /** Closes the session once the calls on it are done (a certificate rotation: new calls use a new manager). */
  retire(): void {
    this.#retiring = true;
    if (this.#open === 0) this.abort();
  }

  #closed(): void {
    this.#open--;
    if (this.#retiring && this.#open === 0) this.abort();
  }
}

function serverIdentityCheck(identity: string) {
  return (host: string, cert: PeerCertificate): Error | undefined => {
    const hostError = checkServerIdentity(host, cert);
    if (hostError) return hostError;
    const names = [cert.subject?.CN, ...(cert.subjectaltname ?? "").split(", ").filter((n) => n.startsWith("DNS:")).map((n) => n.slice(4))];
    if (names.includes(identity)) return undefined;
    return Object.assign(new Error(`the server's certificate (${names.filter(Boolean).join(", ")}) is not identity "${identity}"`), { code: "ERR_BSFG_SERVER_IDENTITY" });
  };
}

async function* requests(header: ObjectHeaderInit, content: ObjectContent) {
  yield { part: { case: "header" as const, value: header } };
  const source: AsyncIterable<Uint8Array> | Uint8Array[] = content instanceof Uint8Array
    ? chunked(content)
    : "file" in content ? createReadStream((content as { file: string }).file, { highWaterMark: 128 * 1024 }) : content as AsyncIterable<Uint8Array>;
  for await (const chunk of source) yield { part: { case: "chunk" as const, value: chunk } };
}

function chunked(bytes: Uint8Array, size = 128 * 1024): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.byteLength; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

function cached<T>(map: Map<string, T>, url: string, make: () => T): T {
  let value = map.get(url);
  if (value === undefined) {
    value = make();
    map.set(url, value);
  }
  return value;
}
