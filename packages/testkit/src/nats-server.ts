import { randomBytes } from "node:crypto";
import { appendFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ManagedChild } from "./child-process.js";
import type { ExitInfo } from "./child-process.js";
import { readLogTail } from "./log-tail.js";
import { locateNatsServerBinary } from "./nats-binary.js";
import { assertValidDomain, renderNatsConfig } from "./nats-config.js";
import { freePort } from "./ports.js";
import { waitForClusterNode, waitForJetStream } from "./readiness.js";
import { track, tracked, untrack } from "./registry.js";

export interface NatsServerOptions {
  /** JetStream domain, e.g. "plant-a". Required: every zone has its own domain. */
  domain: string;
  /**
   * Existing store dir to reuse (never deleted by the harness); default: a fresh
   * temp dir, removed by dispose() and at process exit.
   */
  storeDir?: string;
  /** Extra lines appended verbatim to the generated nats-server config file. */
  extraConfig?: string;
  /** JetStream memory store limit, bytes or a size like "512MB"; default "1GB". */
  maxMemoryStore?: string | number;
  /** JetStream file store limit, bytes or a size like "2GB"; default "10GB". */
  maxFileStore?: string | number;
  /**
   * `sync_interval`: "always" (default: fsync before every acknowledgement, what every zone
   * the project generates runs) or a duration such as "2m" (the server's own default).
   */
  syncInterval?: string;
  /** Clients must log in as this user (nats-server `authorization`); anonymous connections are refused. */
  auth?: { user: string; password: string };
  /** Clients must use TLS; the server presents this certificate (PEM). */
  tls?: { certPem: string; keyPem: string; caPem: string };
}

/** How a client reaches a server with `auth` / `tls` (spread into nats.js connect options). */
export interface NatsClientOptions {
  readonly user?: string;
  readonly pass?: string;
  readonly tls?: { readonly ca: string };
}

export interface NatsServerHandle {
  readonly domain: string;
  /** Client port on 127.0.0.1. */
  readonly port: number;
  /** "nats://127.0.0.1:<port>" */
  readonly url: string;
  /** HTTP monitoring port (for /varz, /jsz). */
  readonly monitorPort: number;
  /** "http://127.0.0.1:<monitorPort>": what a zone's `nats.monitor` lists. */
  readonly monitorUrl: string;
  readonly storeDir: string;
  /** What a client needs besides the URL: the server's user and CA, when it has them. */
  readonly clientOptions: NatsClientOptions;
  /** Current process pid, undefined while stopped. */
  readonly pid: number | undefined;
  /** Graceful stop (SIGTERM, SIGKILL after 5 s), waits for exit. */
  stop(): Promise<void>;
  /** SIGKILL, waits for exit. Data on disk stays. */
  kill(): Promise<void>;
  /** Start again on the SAME ports and store dir (stopping first if running); resolves when JetStream answers. */
  restart(): Promise<void>;
  /** Resident set size of the server process in bytes (from /proc/<pid>/status VmRSS). */
  rssBytes(): Promise<number>;
  /** Stop and remove the temp dir (and the store dir, if the harness created it). Idempotent. */
  dispose(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
/** A cluster's first start needs a meta leader election; a restarted node has to catch up. */
const CLUSTER_READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
/** Another process may grab a port between freePort() and the server binding it. */
const START_ATTEMPTS = 3;

export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServerHandle> {
  assertValidDomain(opts.domain);
  const binary = locateNatsServerBinary();
  const workDir = await mkdtemp(join(tmpdir(), `bsfg-nats-${opts.domain}-`));
  const server = new NatsServer(binary, workDir, opts);
  track(server);
  try {
    await server.firstStart();
  } catch (err) {
    await server.dispose();
    throw err;
  }
  return server;
}

/** Dispose every server this process started (for afterAll hooks). */
export async function disposeAllNatsServers(): Promise<void> {
  const results = await Promise.allSettled(tracked().map((server) => server.dispose()));
  const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  if (failures.length > 0) throw new AggregateError(failures, `${failures.length} nats-server(s) failed to dispose`);
}

export class StartupError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "NatsServerStartupError";
  }
}

/** Where a node of a cluster listens: chosen by the cluster, fixed for the node's lifetime. */
export interface ClusterPlacement {
  readonly serverName: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly cluster: { readonly name: string; readonly port: number; readonly routes: readonly number[] };
  /** The other nodes' monitoring ports: a (re)starting node is ready once it caught up with them. */
  readonly peerMonitorPorts: readonly number[];
}

export class NatsServer implements NatsServerHandle {
  readonly domain: string;
  readonly storeDir: string;
  private readonly ownsStoreDir: boolean;
  private readonly serverName: string;
  private readonly configPath: string;
  private readonly logPath: string;
  private ports: { port: number; monitorPort: number } = { port: 0, monitorPort: 0 };
  private child: ManagedChild | undefined;
  private startedOnce = false;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly binary: string,
    private readonly workDir: string,
    private readonly opts: NatsServerOptions,
    private readonly placement?: ClusterPlacement,
  ) {
    this.domain = opts.domain;
    this.ownsStoreDir = opts.storeDir === undefined;
    // Absolute, because nats-server resolves relative paths against its cwd, not the config file.
    this.storeDir = opts.storeDir === undefined ? join(workDir, "store") : resolve(opts.storeDir);
    this.serverName = placement?.serverName ?? `${opts.domain}-${randomBytes(4).toString("hex")}`;
    this.configPath = join(workDir, "nats-server.conf");
    this.logPath = join(workDir, "nats-server.log");
  }

  get port(): number {
    return this.ports.port;
  }

  get monitorUrl(): string {
    return `http://127.0.0.1:${this.ports.monitorPort}`;
  }

  get monitorPort(): number {
    return this.ports.monitorPort;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.ports.port}`;
  }

  get clientOptions(): NatsClientOptions {
    return {
      ...(this.opts.auth ? { user: this.opts.auth.user, pass: this.opts.auth.password } : {}),
      ...(this.opts.tls ? { tls: { ca: this.opts.tls.caPem } } : {}),
    };
  }

  get name(): string {
    return this.serverName;
  }

  /** Route port of a cluster node (0 for a standalone server). */
  get clusterPort(): number {
    return this.placement?.cluster.port ?? 0;
  }

  get pid(): number | undefined {
    return this.child !== undefined && !this.child.hasExited ? this.child.pid : undefined;
  }

  /** Ports are only chosen here; restart() must keep them, so later starts never re-pick. */
  async firstStart(): Promise<void> {
    if (this.placement !== undefined) {
      // A cluster node's ports are the cluster's choice (the other nodes' routes name them);
      // the cluster retries as a whole when one is taken.
      this.ports = { port: this.placement.port, monitorPort: this.placement.monitorPort };
      await writeFile(this.configPath, this.renderConfig());
      await this.launch();
      this.startedOnce = true;
      return;
    }
    for (let attempt = 1; ; attempt++) {
      this.ports = await pickDistinctPorts();
      await writeFile(this.configPath, this.renderConfig());
      try {
        await this.launch();
        this.startedOnce = true;
        return;
      } catch (err) {
        if (!(err instanceof StartupError && err.addressInUse) || attempt >= START_ATTEMPTS) throw err;
      }
    }
  }

  stop(): Promise<void> {
    return this.serialize(() => this.terminate());
  }

  kill(): Promise<void> {
    return this.serialize(async () => {
      await this.child?.killNow();
      this.child = undefined;
    });
  }

  restart(): Promise<void> {
    return this.serialize(async () => {
      if (this.disposed) throw new Error(`nats-server for domain "${this.domain}" was disposed; start a new one`);
      await this.terminate();
      await this.launch();
    });
  }

  async rssBytes(): Promise<number> {
    const pid = this.pid;
    if (pid === undefined) throw new Error(`nats-server for domain "${this.domain}" is not running`);
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
    if (kib === undefined) throw new Error(`no VmRSS line in /proc/${pid}/status`);
    return Number(kib) * 1024;
  }

  dispose(): Promise<void> {
    this.disposing ??= this.serialize(async () => {
      this.disposed = true;
      await this.terminate();
      // The work dir holds config, log and (unless the caller brought one) the store.
      await rm(this.workDir, { recursive: true, force: true, maxRetries: 3 });
      untrack(this);
    }).catch((err: unknown) => {
      this.disposing = undefined; // allow a retry; the exit hook still covers us meanwhile
      throw err;
    });
    return this.disposing;
  }

  /** Called from the process 'exit' hook only. */
  cleanupSync(): void {
    this.child?.killSync();
    rmSync(this.workDir, { recursive: true, force: true, maxRetries: 3 });
  }

  private renderConfig(): string {
    return renderNatsConfig({
      ...this.ports,
      serverName: this.serverName,
      domain: this.domain,
      storeDir: this.storeDir,
      maxMemoryStore: this.opts.maxMemoryStore ?? "1GB",
      maxFileStore: this.opts.maxFileStore ?? "10GB",
      extraConfig: this.opts.extraConfig,
      syncInterval: this.opts.syncInterval,
      auth: this.opts.auth,
      tls: this.opts.tls && this.writeTlsFiles(this.opts.tls),
      cluster: this.placement?.cluster,
    });
  }

  private writeTlsFiles(tls: { certPem: string; keyPem: string }): { certFile: string; keyFile: string } {
    const files = { certFile: join(this.workDir, "server.crt"), keyFile: join(this.workDir, "server.key") };
    writeFileSync(files.certFile, tls.certPem);
    writeFileSync(files.keyFile, tls.keyPem, { mode: 0o600 });
    return files;
  }

  private async terminate(): Promise<void> {
    await this.child?.terminate(STOP_GRACE_MS);
    this.child = undefined;
  }

  private async launch(): Promise<void> {
    appendFileSync(this.logPath, `[bsfg-testkit] ${new Date().toISOString()} starting ${this.binary} -c ${this.configPath}\n`);
    const logOffset = statSync(this.logPath).size;
    const child = await ManagedChild.spawn(this.binary, ["-c", this.configPath], this.logPath);
    this.child = child;

    const abort = new AbortController();
    const target = { url: this.url, monitorPort: this.monitorPort, domain: this.domain, client: this.clientOptions };
    // A cluster node is ready once JetStream answers through it *and* it has caught up
    // with its peers (see waitForClusterNode).
    const ready = this.placement === undefined
      ? waitForJetStream(target, READY_TIMEOUT_MS, abort.signal)
      : waitForClusterNode({ ...target, serverName: this.serverName }, this.placement.peerMonitorPorts, CLUSTER_READY_TIMEOUT_MS, abort.signal);
    let earlyExit: ExitInfo | undefined;
    try {
      earlyExit = await Promise.race([ready.then(() => undefined), child.exited]);
    } catch (err) {
      await child.killNow();
      this.child = undefined;
      throw this.startupError(`did not become ready: ${err instanceof Error ? err.message : String(err)}`, logOffset, err);
    } finally {
      abort.abort();
    }
    if (earlyExit !== undefined) {
      this.child = undefined;
      throw this.startupError(`exited (code ${earlyExit.code}, signal ${earlyExit.signal}) before JetStream was ready`, logOffset);
    }
  }

  private startupError(what: string, logOffset: number, cause?: unknown): StartupError {
    const tail = readLogTail(this.logPath, logOffset);
    // A failed first start disposes the handle, log included, so only name the file when it survives.
    const where = this.startedOnce ? ` (${this.logPath})` : "";
    return new StartupError(
      `nats-server for domain "${this.domain}" on ${this.url} ${what}\n--- nats-server log tail${where} ---\n${tail}`,
      /address already in use/i.test(tail),
      { cause },
    );
  }

  /** Lifecycle calls must not interleave (e.g. restart() racing dispose()). */
  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const result = this.queue.then(op);
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

async function pickDistinctPorts(): Promise<{ port: number; monitorPort: number }> {
  const port = await freePort();
  let monitorPort = await freePort();
  while (monitorPort === port) monitorPort = await freePort();
  return { port, monitorPort };
}
