import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface TraceSink {
  readonly url: string;
  /** Export requests and bytes received so far: proof that spans were really exported. */
  readonly received: { requests: number; bytes: number };
  close(): Promise<void>;
}

/** An OTLP/HTTP endpoint that accepts every export and discards it, so tracing costs what the exporter costs. */
export async function startTraceSink(): Promise<TraceSink> {
  const received = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on("data", (chunk: Buffer) => {
      received.bytes += chunk.byteLength;
    });
    req.on("end", () => {
      received.requests++;
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
