import { createServer } from "node:net";
import { expect, test } from "vitest";
import { freePort } from "./ports.js";

test("freePort returns a port that can be bound on 127.0.0.1", async () => {
  const port = await freePort();
  expect(port).toBeGreaterThan(0);
  expect(port).toBeLessThan(65536);
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port, exclusive: true }, resolve);
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

test("freePort does not hand out the same port twice in a process", async () => {
  const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
  expect(new Set(ports).size).toBe(200);
});
