import { createServer } from "node:net";

/**
 * A free TCP port on 127.0.0.1.
 *
 * The kernel picks it (bind to port 0); we release it right away, so another
 * process can in principle grab it before the caller binds. Callers that spawn
 * servers should therefore be prepared to retry on "address already in use".
 */
export function freePort(): Promise<number> {
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
