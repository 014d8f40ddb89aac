import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** Ports this process handed out lately: a released port must not go to two of our servers. */
const issued = new Set<number>();
const REMEMBERED = 4_096;
/** The lowest port we pick from (below it: well-known and commonly configured services). */
const LOWEST = 20_000;

/**
 * A free TCP port on 127.0.0.1, for a server to listen on.
 *
 * Picked at random *below* the kernel's ephemeral range (ip_local_port_range,
 * usually 32768–60999), where outgoing connections take their local ports: a
 * server that is stopped and restarted on the same port (a killed nats-server
 * node) would otherwise sometimes find its port taken by a client connection in
 * the meantime — typically one of its own clients, reconnecting every 250 ms to
 * the port nothing listens on, which the kernel connects to itself. Without
 * room below that range, the kernel picks (bind to port 0).
 *
 * The port is released right away, so another process can in principle grab it
 * before the caller binds; callers that spawn servers should be prepared to
 * retry on "address already in use". Within this process a port is not handed
 * out twice (among the last 4,096): a harness that picks ports for several
 * servers before starting them (a cluster, replicas of a service) would
 * otherwise sometimes give two of them the same one.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  for (let attempt = 0; attempt < 50 && low - LOWEST >= 1_000; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (low - LOWEST));
    if (issued.has(port)) continue;
    // Taken before the probe: concurrent calls must not both probe, and hand out, one port.
    remember(port);
    if (await canListen(port)) return port;
  }
  for (let attempt = 0; ; attempt++) {
    const port = await kernelPort();
    if (issued.has(port) && attempt < 50) continue;
    return remember(port);
  }
}

function remember(port: number): number {
  issued.add(port);
  if (issued.size > REMEMBERED) issued.delete(issued.values().next().value!);
  return port;
}

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // Not Linux: the usual range.
  }
  return [32_768, 60_999];
}

function canListen(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function kernelPort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`freePort: unexpected listen address ${String(address)}`));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
