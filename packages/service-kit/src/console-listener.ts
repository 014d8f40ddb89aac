import type { AddressInfo } from "node:net";
import type { Server } from "node:https";
import type { TLSSocket } from "node:tls";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { parseListen, urlFor } from "./listen-address.js";
import { identityOfSocket, type PeerIdentity } from "./peer-identity.js";
import type { TlsPems } from "./tls-reload.js";

export interface ConsoleListenerOptions {
  /** "host:port" (listen.console). */
  readonly listen: string;
  /** The zone's server certificate, and the CA whose client certificates it accepts. */
  readonly tls: TlsPems;
  readonly log: FastifyBaseLogger;
  /** The console's routes; each request's viewer is `viewerOf(request.raw.socket)`. */
  readonly routes: (app: FastifyInstance) => void;
}

export interface ConsoleListener {
  readonly url: string;
  /** Serves new connections with this certificate set. */
  reloadTls(pems: TlsPems): void;
  close(): Promise<void>;
}

/**
 * Where people reach the zone console from beyond loopback: HTTPS (HTTP/1.1, what any
 * browser speaks) that completes a handshake only with a client certificate the zone's CA
 * signed. Who may see or act is the policy's business (routes); here, nobody unknown to the
 * CA gets as far as a request.
 */
export async function startConsoleListener(opts: ConsoleListenerOptions): Promise<ConsoleListener> {
  const app = Fastify({
    https: { key: opts.tls.key, cert: opts.tls.cert, ca: opts.tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
    // Browsers keep connections open; without this close() waits for them.
    forceCloseConnections: true,
    loggerInstance: opts.log,
    logController: new LogController({ disableRequestLogging: true }),
    // Action bodies are an id or a link name and a note.
    bodyLimit: 16 * 1024,
  });
  opts.routes(app);
  const { host, port } = parseListen(opts.listen);
  await app.listen({ host, port });
  const server = app.server as unknown as Server;
  return {
    url: urlFor("https", host, (server.address() as AddressInfo).port),
    reloadTls: (pems) => server.setSecureContext({ key: pems.key, cert: pems.cert, ca: pems.ca }),
    close: () => app.close(),
  };
}

/** The viewer of a console request: the names its verified client certificate carries. */
export function viewerOf(socket: unknown): PeerIdentity | undefined {
  return identityOfSocket(socket as TLSSocket);
}
