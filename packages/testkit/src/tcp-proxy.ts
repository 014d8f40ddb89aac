import { connect as netConnect, createServer } from "node:net";
import type { Server, Socket } from "node:net";

/** "upstream" = client -> server, "downstream" = server -> client. */
export type ProxyDirection = "upstream" | "downstream";

export interface TcpProxyOptions {
  /** Default "127.0.0.1". */
  targetHost?: string;
  targetPort: number;
  /** Port to listen on (127.0.0.1); default: a free port picked by the kernel. */
  listenPort?: number;
  /**
   * Per connection and direction, how much the proxy holds while paused before it
   * stops reading the source socket, so the sender then sees TCP backpressure like
   * on a real stalled link instead of the proxy buffering without bound. Default 8 MiB.
   */
  maxHeldBytes?: number;
}

export interface TcpProxy {
  /** Where clients connect (127.0.0.1). */
  readonly port: number;
  /** e.g. url("nats") -> "nats://127.0.0.1:<port>" */
  readonly url: (scheme: string) => string;
  /**
   * Stop forwarding bytes in both directions WITHOUT closing sockets: data is held in
   * the proxy, as on a stalled link. Applies to open and to new connections.
   */
  pause(): void;
  /** Forward everything held while paused, in order, then continue. */
  resume(): void;
  /** Hold only one direction. */
  pauseDirection(direction: ProxyDirection): void;
  resumeDirection(direction: ProxyDirection): void;
  /**
   * Reset every open connection (RST to both the client and the server) and, until
   * restore(), accept new connections only to reset them at once. Data held by a
   * paused connection is dropped with it. The pause state is independent of cut/restore.
   */
  cut(): void;
  /** Accept (and forward) connections again. */
  restore(): void;
  /**
   * A slow link, for open and new connections: every chunk arrives `delayMs` late, and
   * no more than `bytesPerSecond` pass per connection and direction (0: no cap). `{}`
   * takes both away. Order and backpressure are kept, as with pause().
   */
  shape(shape: LinkShape): void;
  /** Number of currently open client connections. */
  readonly connections: number;
  /** Total bytes forwarded per direction, over all connections (for assertions). */
  readonly bytes: { upstream: number; downstream: number };
  /** Bytes currently held (paused) in the proxy per direction, over open connections. */
  readonly held: { upstream: number; downstream: number };
  /** Destroy all connections and stop listening. Idempotent. */
  close(): Promise<void>;
}

export interface LinkShape {
  readonly delayMs?: number;
  readonly bytesPerSecond?: number;
}

const DEFAULT_MAX_HELD_BYTES = 8 * 1024 * 1024;

const liveProxies = new Set<TcpProxyImpl>();

/**
 * A TCP proxy on 127.0.0.1 for tests that stall, cut and restore the link between a
 * client and a server.
 *
 * cut() keeps the listening socket and resets connections as soon as they are accepted
 * rather than closing the listener: a NATS client's reconnect loop then fails every
 * attempt immediately (ECONNRESET instead of ECONNREFUSED, same effect: it waits
 * reconnectTimeWait and tries again), and the port stays ours, so restore() cannot lose
 * it to another process. A link that silently drops packets is what pause() models.
 *
 * Like the nats-server children, the proxy's sockets are unref'd: a forgotten proxy does
 * not keep the process alive (the OS closes its sockets at exit, so the process 'exit'
 * hook has nothing to do for proxies). Use close(), disposeAllProxies() or disposeAll().
 */
export async function startTcpProxy(opts: TcpProxyOptions): Promise<TcpProxy> {
  assertPort(opts.targetPort, "targetPort");
  if (opts.listenPort !== undefined && opts.listenPort !== 0) assertPort(opts.listenPort, "listenPort");
  const maxHeldBytes = opts.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES;
  if (!(maxHeldBytes > 0)) throw new Error(`startTcpProxy: maxHeldBytes must be positive, got ${maxHeldBytes}`);
  const proxy = new TcpProxyImpl(opts.targetHost ?? "127.0.0.1", opts.targetPort, maxHeldBytes);
  // Binding port 0 lets the kernel pick a free port without the freePort() release/rebind race.
  await proxy.listen(opts.listenPort ?? 0);
  liveProxies.add(proxy);
  return proxy;
}

/** Close every proxy this process started (for afterAll hooks). */
export async function disposeAllProxies(): Promise<void> {
  const results = await Promise.allSettled([...liveProxies].map((proxy) => proxy.close()));
  const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  if (failures.length > 0) throw new AggregateError(failures, `${failures.length} TCP prox(ies) failed to close`);
}

function assertPort(port: number, name: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`startTcpProxy: ${name} must be an integer in 1..65535, got ${port}`);
  }
}

interface Counters {
  upstream: number;
  downstream: number;
}

class TcpProxyImpl implements TcpProxy {
  private readonly server: Server;
  private readonly open = new Set<Connection>();
  private readonly paused: Record<ProxyDirection, boolean> = { upstream: false, downstream: false };
  private readonly forwarded: Counters = { upstream: 0, downstream: 0 };
  /** Read by every pipe at each chunk, so a change applies to open connections too. */
  private readonly shaping: { delayMs: number; bytesPerSecond: number } = { delayMs: 0, bytesPerSecond: 0 };
  private isCut = false;
  private closing: Promise<void> | undefined;
  private listenPort = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
    private readonly maxHeldBytes: number,
  ) {
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  readonly url = (scheme: string): string => `${scheme.replace(/:(\/\/)?$/, "")}://127.0.0.1:${this.port}`;

  get port(): number {
    return this.listenPort;
  }

  get connections(): number {
    return this.open.size;
  }

  get bytes(): Counters {
    return { ...this.forwarded };
  }

  get held(): Counters {
    const held: Counters = { upstream: 0, downstream: 0 };
    for (const connection of this.open) {
      held.upstream += connection.up.heldBytes;
      held.downstream += connection.down.heldBytes;
    }
    return held;
  }

  listen(port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
        this.server.off("error", reject);
        // Accept errors (e.g. EMFILE) would otherwise crash the test process; the client sees its failure.
        this.server.on("error", () => undefined);
        this.server.unref();
        const address = this.server.address();
        if (address === null || typeof address === "string") {
          this.server.close();
          reject(new Error(`startTcpProxy: unexpected listen address ${String(address)}`));
          return;
        }
        this.listenPort = address.port;
        resolve();
      });
    });
  }

  pause(): void {
    this.pauseDirection("upstream");
    this.pauseDirection("downstream");
  }

  resume(): void {
    this.resumeDirection("upstream");
    this.resumeDirection("downstream");
  }

  pauseDirection(direction: ProxyDirection): void {
    assertDirection(direction);
    this.paused[direction] = true;
    for (const connection of this.open) connection.pipe(direction).hold();
  }

  resumeDirection(direction: ProxyDirection): void {
    assertDirection(direction);
    this.paused[direction] = false;
    for (const connection of this.open) connection.pipe(direction).release();
  }

  cut(): void {
    this.isCut = true;
    this.dropAll((connection) => connection.reset());
  }

  restore(): void {
    this.isCut = false;
  }

  shape(shape: LinkShape): void {
    const delayMs = shape.delayMs ?? 0;
    const bytesPerSecond = shape.bytesPerSecond ?? 0;
    if (!(delayMs >= 0) || !(bytesPerSecond >= 0)) throw new Error(`TcpProxy.shape: delayMs and bytesPerSecond must be ≥ 0, got ${delayMs}, ${bytesPerSecond}`);
    this.shaping.delayMs = delayMs;
    this.shaping.bytesPerSecond = bytesPerSecond;
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve, reject) => {
      this.isCut = true;
      // close() waits for accepted sockets to close; destroy them right after asking.
      this.server.close((err) => {
        liveProxies.delete(this);
        if (err) reject(err);
        else resolve();
      });
      this.dropAll((connection) => connection.destroy());
    });
    return this.closing;
  }

  private dropAll(how: (connection: Connection) => void): void {
    const connections = [...this.open];
    // Counted as closed right away, so `connections` is 0 as soon as cut()/close() returns.
    this.open.clear();
    for (const connection of connections) how(connection);
  }

  private accept(client: Socket): void {
    client.unref();
    client.on("error", () => undefined);
    if (this.isCut) {
      resetSocket(client);
      return;
    }
    client.setNoDelay(true);
    const upstream = netConnect({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true });
    upstream.unref();
    upstream.setNoDelay(true);
    const connection = new Connection(client, upstream, this.paused, this.forwarded, this.maxHeldBytes, this.shaping, () =>
      this.open.delete(connection),
    );
    this.open.add(connection);
  }
}

function assertDirection(direction: ProxyDirection): void {
  if (direction !== "upstream" && direction !== "downstream") {
    throw new Error(`TcpProxy: direction must be "upstream" or "downstream", got ${String(direction)}`);
  }
}

/** One proxied client connection: the accepted socket, its upstream socket and a pipe each way. */
class Connection {
  readonly up: Pipe;
  readonly down: Pipe;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    paused: Readonly<Record<ProxyDirection, boolean>>,
    forwarded: Counters,
    maxHeldBytes: number,
    shaping: Readonly<{ delayMs: number; bytesPerSecond: number }>,
    private readonly onClosed: () => void,
  ) {
    this.up = new Pipe(client, upstream, paused.upstream, maxHeldBytes, shaping, (n) => (forwarded.upstream += n));
    this.down = new Pipe(upstream, client, paused.downstream, maxHeldBytes, shaping, (n) => (forwarded.downstream += n));
    upstream.on("error", () => undefined);
    client.on("close", (hadError) => this.socketClosed(client, upstream, hadError));
    upstream.on("close", (hadError) => this.socketClosed(upstream, client, hadError));
  }

  pipe(direction: ProxyDirection): Pipe {
    return direction === "upstream" ? this.up : this.down;
  }

  reset(): void {
    resetSocket(this.client);
    resetSocket(this.upstream);
  }

  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
  }

  private socketClosed(socket: Socket, other: Socket, hadError: boolean): void {
    this.onClosed();
    // A clean close means both halves were shut down in order (FINs already forwarded
    // by the pipes), so the other socket is finishing on its own. Anything else (reset,
    // refused upstream connect, destroy) is passed on: a reset as a reset.
    const clean = !hadError && socket.readableEnded && socket.writableFinished;
    if (clean) return;
    if (hadError) resetSocket(other);
    else other.destroy();
  }
}

/**
 * One direction of a connection. While holding, data read from the source is kept (in
 * arrival order) instead of written; release() writes it out before anything newer, so
 * it is delivered in order and exactly once. An end-of-stream (FIN) from the source is
 * held too and forwarded after the held data.
 *
 * Backpressure: the source is paused while the destination's buffer is full (write()
 * returned false, until 'drain') and while the held data reaches maxHeldBytes.
 */
class Pipe {
  private held: Buffer[] = [];
  heldBytes = 0;
  private sourceEnded = false;
  private destEnded = false;
  /** Chunks on their way through a shaped link, in order, each with when it may be written. */
  private inFlight: Array<{ chunk: Buffer; at: number }> = [];
  private inFlightBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the last chunk passes the bandwidth cap (ms, performance.now()). */
  private capFreeAt = 0;

  constructor(
    private readonly source: Socket,
    private readonly dest: Socket,
    private holding: boolean,
    private readonly maxHeldBytes: number,
    private readonly shaping: Readonly<{ delayMs: number; bytesPerSecond: number }>,
    private readonly onForwarded: (bytes: number) => void,
  ) {
    source.on("data", (chunk: Buffer) => {
      if (this.holding) {
        this.held.push(chunk);
        this.heldBytes += chunk.length;
      } else {
        this.forward(chunk);
      }
      this.updateFlow();
    });
    source.on("end", () => {
      this.sourceEnded = true;
      this.maybeEnd();
    });
    dest.on("drain", () => this.updateFlow());
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    if (!this.holding) return;
    this.holding = false;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const chunk of held) this.forward(chunk);
    this.maybeEnd();
    this.updateFlow();
  }

  private forward(chunk: Buffer): void {
    if (this.dest.destroyed || this.destEnded) return;
    const { delayMs, bytesPerSecond } = this.shaping;
    if (delayMs === 0 && bytesPerSecond === 0 && this.inFlight.length === 0) {
      this.dest.write(chunk);
      this.onForwarded(chunk.length);
      return;
    }
    const now = performance.now();
    const sent = bytesPerSecond > 0 ? (this.capFreeAt = Math.max(now, this.capFreeAt) + (chunk.length * 1000) / bytesPerSecond) : now;
    this.inFlight.push({ chunk, at: Math.max(now + delayMs, sent) });
    this.inFlightBytes += chunk.length;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.inFlight.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = performance.now();
      while (this.inFlight.length > 0 && this.inFlight[0]!.at <= now) {
        const { chunk } = this.inFlight.shift()!;
        this.inFlightBytes -= chunk.length;
        if (!this.dest.destroyed && !this.destEnded) {
          this.dest.write(chunk);
          this.onForwarded(chunk.length);
        }
      }
      this.maybeEnd();
      this.updateFlow();
      this.schedule();
    }, Math.max(0, this.inFlight[0]!.at - performance.now()));
    this.timer.unref();
  }

  private maybeEnd(): void {
    if (!this.sourceEnded || this.holding || this.destEnded || this.inFlight.length > 0) return;
    this.destEnded = true;
    if (!this.dest.destroyed) this.dest.end();
  }

  private updateFlow(): void {
    if (this.source.destroyed || this.sourceEnded) return;
    const stall = this.dest.writableNeedDrain || (this.holding && this.heldBytes >= this.maxHeldBytes) || this.inFlightBytes >= this.maxHeldBytes;
    if (stall) this.source.pause();
    else if (this.source.isPaused()) this.source.resume();
  }
}

/** RST instead of FIN, so both peers see the link fail (ECONNRESET) rather than an orderly close. */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  // resetAndDestroy() on a still-connecting socket would wait for the connect; just abort it.
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}
