import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, type TLSSocket } from "node:tls";
import { afterEach } from "vitest";

/** What the server saw of one inbound handshake. */
export type ServerHandshake =
  | { ok: true; peerCN: string; protocol: string | null }
  // Node's server verifies the client certificate after OpenSSL finished the handshake and,
  // on failure, just destroys the socket: the error is a bland ECONNRESET and the reason
  // (e.g. CERT_HAS_EXPIRED) is only on the socket's authorizationError.
  | { ok: false; error: Error & { code?: string }; authorizationError: string | undefined };

export interface MtlsServer {
  readonly port: number;
  /** The outcome of the next handshake (in arrival order). */
  nextHandshake(): Promise<ServerHandshake>;
  close(): Promise<void>;
}

/**
 * A mutual-TLS 1.3 server on 127.0.0.1 configured as the BSFG gateways will be. Each
 * accepted client is greeted with "hello <CN>\n" and disconnected.
 */
export async function startMtlsServer(opts: { key: string; cert: string; ca: string }): Promise<MtlsServer> {
  const outcomes: ServerHandshake[] = [];
  const waiters: Array<(h: ServerHandshake) => void> = [];
  const sockets = new Set<TLSSocket>();
  const record = (h: ServerHandshake): void => {
    const waiter = waiters.shift();
    if (waiter) waiter(h);
    else outcomes.push(h);
  };

  const server = createServer(
    { key: opts.key, cert: opts.cert, ca: [opts.ca], requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" },
    (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {}); // the client may vanish first; nothing to report
      const peerCN = String(socket.getPeerCertificate().subject.CN);
      record({ ok: true, peerCN, protocol: socket.getProtocol() });
      socket.end(`hello ${peerCN}\n`);
    },
  );
  server.on("tlsClientError", (error, socket) => {
    // Typed as Error, but at runtime Node stores the OpenSSL verify code string.
    const reason = socket.authorizationError as unknown;
    record({ ok: false, error, authorizationError: reason == null ? undefined : String(reason) });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });

  return {
    port: (server.address() as AddressInfo).port,
    nextHandshake() {
      const ready = outcomes.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiters.push(resolve));
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

export interface ClientResult {
  /** The client finished its side of the handshake (in TLS 1.3 this happens before the server has judged the client certificate). */
  secureConnect: boolean;
  authorized: boolean;
  /** Everything the server sent before the connection closed. */
  received: string;
  error: (Error & { code?: string }) | undefined;
}

/** Connects, collects whatever the server says, and resolves when the connection is closed. */
export function connectClient(opts: {
  port: number;
  host?: string;
  servername?: string;
  ca: string;
  key?: string;
  cert?: string;
}): Promise<ClientResult> {
  return new Promise((resolve) => {
    const result: ClientResult = { secureConnect: false, authorized: false, received: "", error: undefined };
    const socket = connect({
      host: opts.host ?? "127.0.0.1",
      port: opts.port,
      ...(opts.servername === undefined ? {} : { servername: opts.servername }),
      ca: [opts.ca],
      ...(opts.key === undefined ? {} : { key: opts.key }),
      ...(opts.cert === undefined ? {} : { cert: opts.cert }),
      minVersion: "TLSv1.3",
    });
    socket.setEncoding("utf8");
    socket.on("secureConnect", () => {
      result.secureConnect = true;
      result.authorized = socket.authorized;
    });
    socket.on("data", (chunk: string) => {
      result.received += chunk;
    });
    socket.on("error", (err) => {
      result.error ??= err;
    });
    socket.on("close", () => resolve(result));
  });
}

/** A fresh temporary directory per test, removed afterwards. */
export function useTempDirs(): () => Promise<string> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  return async () => {
    const dir = await mkdtemp(join(tmpdir(), "bsfg-pki-"));
    dirs.push(dir);
    return dir;
  };
}

export const DAY_MS = 24 * 60 * 60 * 1000;
